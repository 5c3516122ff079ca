"""Activation: segment entries become actions under caps, holdouts and experiments, then delivery."""
