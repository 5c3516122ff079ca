"""Experiments and lift: pure functions over plain data (no Kafka, no Redis, no clock).

* ``assignment``: deterministic hash buckets: the global control group, per-experiment holdouts
  and sticky weighted A/B/n variants, each with the probability of what was chosen;
* ``bandits``: Thompson sampling, epsilon-greedy and KL-UCB over an experiment's variants, drawn
  per decision id and logging the exact probability of the chosen arm; the state (counts and
  the outcome ledger that applies each decision's reward once) serialises to msgpack bytes;
* ``lift``: Wilson and Newcombe intervals, an always-valid sequential interval, incremental
  conversions and revenue, and the sample-ratio-mismatch check;
* ``simulation``: a seeded experiment with known true response rates, for tests.

Each module's docstring states its formulas and defaults.
"""
