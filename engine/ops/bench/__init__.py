"""``segflow bench``: what a user compares engines with.

Real ``segflow worker`` processes (1 and 2 in a group by default) beside a bare consumer and a
naive one-event-at-a-time pipeline on the same broker, round after round, with latency under
paced load. ``run`` orchestrates, ``phases`` runs one round's parts, ``measure`` and ``latency``
take the figures, ``naive`` is the reference pipeline, ``setup`` makes the workload and cleans
up, ``profile`` wraps py-spy, ``report`` renders, ``progress`` shows progress.
"""

from engine.ops.bench.measure import BenchError
from engine.ops.bench.run import BenchParams, run_bench

__all__ = ["BenchError", "BenchParams", "run_bench"]
