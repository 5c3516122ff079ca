"""The learner: one model per kind for the whole population, published as sealed snapshots."""
