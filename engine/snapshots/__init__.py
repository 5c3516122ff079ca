"""Sealed, event-time-versioned population snapshots: per-day RFM quintile cuts fixed forever.

``cuts`` holds the pure part (placements, histograms, the cut rule), ``population`` the Redis
part (per-partition histograms, contributions per day, sealing). Everything public is
re-exported here.
"""

from engine.snapshots.population import (
    Histogram,
    Placement,
    PopulationSnapshots,
    SealedCuts,
    cuts_of,
    merge,
    metric_cuts,
    pack_placement,
    placement_of,
    quintile_of,
)

__all__ = [
    "Histogram",
    "Placement",
    "PopulationSnapshots",
    "SealedCuts",
    "cuts_of",
    "merge",
    "metric_cuts",
    "pack_placement",
    "placement_of",
    "quintile_of",
]
