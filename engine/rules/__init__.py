"""Rule families that map a customer's features to segments."""
