"""Loading what people have: files of purchases or of events, checked whole, made into events.

``transactions``: a CSV or Parquet of purchases with mapped columns (``segflow import
transactions``); ``events_file``: JSON lines or CSV of schema-v1 events (``segflow import
events``); ``tables``: rows with their line numbers and what a file became (``Prepared``);
``dates``: ISO, epoch (by magnitude) or strftime dates as epoch milliseconds.
"""
