"""The stream path of one batch: ingest fetched records, run the pipeline, commit, deliver.

``ingest`` takes whole fetched batches from Kafka (no per-message Faust path), ``pipeline``
decodes, applies features, scores and rules per batch, ``customer_step`` is one customer's
part of it, ``aggregates`` keeps segment sizes, and ``agents`` is the thin glue that batches,
calls the pipeline, delivers its output and commits offsets.
"""
