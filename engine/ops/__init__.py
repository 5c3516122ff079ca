"""Operational tools around the engine: ``segflow bench`` (``engine.ops.bench``)."""
