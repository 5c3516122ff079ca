"""Files for other systems: every customer's features, scores and segments (``scores``)."""
