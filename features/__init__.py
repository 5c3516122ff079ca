"""The segflow feature store: per-customer behavioural features in Redis, in event time.

This package knows nothing of Kafka, Faust, models or rules. It takes plain ``Event`` records
positioned in a source stream (partition and offset) and keeps each customer's state exactly
once per event, however often a batch is redelivered.
"""
