"""Operational tools around the engine: ``segflow bench`` (``engine.ops.bench``) and the list of
metric names the monitoring files may use (``engine.ops.metric_names``)."""
