"""The segflow models package: predictions that feed segmentation, learnt online.

* Online River models (churn, customer lifetime value, product propensity) that learn one event
  at a time from the feature store's view of a customer, in event time.
* Label resolution: turning later behaviour (silence after churn, purchases within a horizon)
  into labels for earlier predictions, without peeking into the future.
* Evaluation: progressive (predict-then-learn) metrics over the stream.
* Checkpoints: saving and restoring model state so a restarted worker resumes where it left off.
* The population simulator (``models.simulate``, ``models.population``): a seeded synthetic
  customer population with known behavioural drivers, whose event stream feeds the demo, the
  tests and the benchmarks.

Dependency rule: ``engine`` uses ``models`` and ``features``; ``models`` may use ``features``
but never imports ``engine``.
"""
