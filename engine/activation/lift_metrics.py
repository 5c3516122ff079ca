"""Lift as Prometheus gauges, from the decision outcomes a sealed model snapshot tallies.

The learner tallies every decision outcome exactly once by event-time period
(``models.outcome_messages``), so the lift of the latest sealed snapshot is the same on every
worker's ``/segflow/metrics`` (aggregate with ``max``, not ``sum``), is unchanged by redelivery,
and trails the outcomes topic by up to one model period plus the allowed lateness. ``segflow
lift`` reads the outcomes topic itself and is current to the last outcome; both compute with
``engine.activation.lift_table.tallied_lift``.

Gauges (labels ``comparison`` = ``experiment`` | ``global_control``, ``name`` = the experiment
or the action, ``segment`` (``*`` for all), ``arm``): ``segflow_lift_exposures`` and
``segflow_lift_control_exposures``, ``segflow_lift_treated_rate`` and
``segflow_lift_control_rate``, ``segflow_lift_absolute`` with its 95% Newcombe interval
``segflow_lift_absolute_low``/``_high``, ``segflow_lift_relative``,
``segflow_lift_incremental_conversions`` and ``segflow_lift_incremental_revenue``; per experiment
``segflow_lift_sample_ratio_p`` and ``segflow_lift_sample_ratio_flagged`` (1 when p < 0.001);
and ``segflow_lift_snapshot_version``, the snapshot they come from (-1: none sealed yet).
"""

from __future__ import annotations

import math

from engine.activation.lift_table import LiftRow, tallied_lift
from engine.rules.model import RuleSet
from models.snapshots import DecodedSnapshot

_ROW_GAUGES: tuple[tuple[str, str], ...] = (
    ("segflow_lift_exposures", "Treated decisions with an outcome."),
    ("segflow_lift_control_exposures", "Control decisions with an outcome."),
    ("segflow_lift_treated_rate", "Conversion rate of the treated decisions."),
    ("segflow_lift_control_rate", "Conversion rate of the control decisions."),
    ("segflow_lift_absolute", "Treated minus control conversion rate."),
    ("segflow_lift_absolute_low", "Lower end of the 95% Newcombe interval of the absolute lift."),
    ("segflow_lift_absolute_high", "Upper end of the 95% Newcombe interval of the absolute lift."),
    ("segflow_lift_relative", "Absolute lift over the control rate."),
    ("segflow_lift_incremental_conversions", "Treated decisions times the absolute lift."),
    (
        "segflow_lift_incremental_revenue",
        "Treated revenue minus control revenue per decision times treated.",
    ),
)


_NEEDS_CONTROL = 3
"""Gauges from ``segflow_lift_control_rate`` on compare with a control group."""


def lift_lines(snapshot: DecodedSnapshot | None, rules: RuleSet) -> list[str]:
    """Exposition lines of the lift the snapshot's tallies give under the rules' experiments."""
    lines = [
        "# HELP segflow_lift_snapshot_version The model snapshot whose outcome tallies the lift is from.",
        "# TYPE segflow_lift_snapshot_version gauge",
        f"segflow_lift_snapshot_version {-1 if snapshot is None else snapshot.version}",
    ]
    if snapshot is None or not snapshot.outcomes:
        return lines
    actions = rules.activation.actions.values()
    specs = {a.experiment.name: a.experiment for a in actions if a.experiment is not None}
    bandits = {a.experiment.name for a in actions if a.experiment is not None and a.bandit is not None}
    table = tallied_lift(snapshot.outcomes, specs, bandits=bandits)
    values = [(row, _row_values(row)) for row in table.rows]
    for index, (name, text) in enumerate(_ROW_GAUGES):
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
        for row, row_values in values:
            if not row.control_exposures and index >= _NEEDS_CONTROL:
                continue  # an experiment without a holdout has rates, no lift
            value = row_values[index]
            if value is not None and math.isfinite(value):
                lines.append(f"{name}{{{_row_labels(row)}}} {_number(value)}")
    lines += [
        "# HELP segflow_lift_sample_ratio_p Chi-squared p-value of the exposures against the allocation.",
        "# TYPE segflow_lift_sample_ratio_p gauge",
        "# HELP segflow_lift_sample_ratio_flagged 1 when the sample-ratio check flags (p < 0.001).",
        "# TYPE segflow_lift_sample_ratio_flagged gauge",
    ]
    for experiment, check in sorted(table.ratio_checks.items()):
        label = f'experiment="{_escape(experiment)}"'
        lines.append(f"segflow_lift_sample_ratio_p{{{label}}} {_number(check.p_value)}")
        lines.append(f"segflow_lift_sample_ratio_flagged{{{label}}} {int(check.flagged)}")
    return lines


def _row_values(row: LiftRow) -> tuple[float | None, ...]:
    lift = row.lift
    return (
        lift.exposures,
        row.control_exposures,
        lift.rate,
        lift.control_rate,
        lift.absolute_lift,
        lift.interval.lower,
        lift.interval.upper,
        lift.relative_lift,
        lift.incremental_conversions,
        lift.incremental_revenue,
    )


def _row_labels(row: LiftRow) -> str:
    parts = {"comparison": row.kind, "name": row.name, "segment": row.segment, "arm": row.arm}
    return ",".join(f'{key}="{_escape(value)}"' for key, value in parts.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(round(float(value), 9))
