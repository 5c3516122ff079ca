"""``segflow lift``: treated vs control conversion per experiment, variant and segment."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from engine.activation.experiments.assignment import ExperimentSpec
from engine.activation.lift_table import LiftRow, LiftTable, lift_table
from engine.activation.outcomes import Outcome
from engine.app import load_rule_set
from engine.cli.io import Record, read_to_end
from engine.codecs import decode_msgpack
from engine.settings import Settings


async def read_outcomes(settings: Settings) -> list[Outcome]:
    """Every outcome record on the outcomes topic, read from the beginning to its current end."""
    found: list[Outcome] = []

    def add(record: Record) -> None:
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        found.append(_parse(decode_msgpack(record.value), where))

    await read_to_end(settings, settings.outcomes_topic, on_record=add, missing_ok=True)
    return found


def _parse(data: Any, where: str) -> Outcome:
    try:
        return Outcome.from_wire(data)
    except ValueError as exc:
        raise click.ClickException(f"{where}: {exc}") from None


def read_file(path: Path) -> list[Outcome]:
    """Outcome records from a JSON-lines file (one schema v1 map per line)."""
    found = []
    with path.open() as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise click.ClickException(f"{path}:{number}: not JSON ({exc.msg})") from None
            found.append(_parse(data, f"{path}:{number}"))
    return found


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _row_text(row: LiftRow) -> str:
    lift = row.lift
    head = f"  {row.segment:<24} {row.arm:<14} n={lift.exposures:<6} {_pct(lift.rate):>7}"
    if not row.control_exposures:  # no holdout: rates only (the global control group measures it)
        return f"{head} (no holdout: no lift)"
    interval = f"[{_pct(lift.interval.lower)}, {_pct(lift.interval.upper)}]"
    relative = "-" if lift.relative_lift is None else f"{100 * lift.relative_lift:+.1f}%"
    revenue = "-" if lift.incremental_revenue is None else f"{lift.incremental_revenue:,.2f}"
    conversions = "-" if lift.incremental_conversions is None else f"{lift.incremental_conversions:+.1f}"
    return (
        f"{head} vs {_pct(lift.control_rate):>7} (n={row.control_exposures}) lift {_pct(lift.absolute_lift)}"
        f" {interval} rel {relative} incr. conv {conversions} revenue {revenue}"
    )


def render(table: LiftTable) -> str:
    """The table as text: one block per comparison, then the sample-ratio checks."""
    lines = [f"{table.outcomes} outcomes ({table.duplicates} repeated ids ignored)"]
    comparison = None
    for row in table.rows:
        if row.comparison != comparison:
            comparison = row.comparison
            lines.append(f"{comparison}: rate vs control, absolute lift [95% Newcombe interval]")
        lines.append(_row_text(row))
    for name, check in table.ratio_checks.items():
        verdict = "MISMATCH (p < 0.001)" if check.flagged else "ok"
        lines.append(f"sample ratio {name}: chi2 {check.statistic:.2f}, p {check.p_value:.3g}: {verdict}")
    if not table.rows:
        lines.append("no measured decisions yet")
    return "\n".join(lines)


def as_json(table: LiftTable) -> dict[str, Any]:
    """The table as a JSON-ready document."""
    rows = []
    for row in table.rows:
        lift = row.lift
        rows.append(
            {
                "comparison": row.comparison,
                "segment": row.segment,
                "arm": row.arm,
                "exposures": lift.exposures,
                "conversions": lift.conversions,
                "rate": lift.rate,
                "control_exposures": row.control_exposures,
                "control_rate": lift.control_rate,
                "absolute_lift": lift.absolute_lift,
                "interval": [lift.interval.lower, lift.interval.upper],
                "sequential": None
                if lift.sequential is None
                else [lift.sequential.lower, lift.sequential.upper],
                "relative_lift": lift.relative_lift,
                "incremental_conversions": lift.incremental_conversions,
                "incremental_revenue": lift.incremental_revenue,
            }
        )
    checks = {
        name: {"statistic": c.statistic, "p_value": c.p_value, "flagged": c.flagged, "expected": c.expected}
        for name, c in table.ratio_checks.items()
    }
    return {"outcomes": table.outcomes, "duplicates": table.duplicates, "rows": rows, "sample_ratio": checks}


def experiments_of(settings: Settings) -> tuple[dict[str, ExperimentSpec], frozenset[str]]:
    """The experiments the rules in force declare, by name, and those a bandit allocates."""
    actions = load_rule_set(settings).activation.actions.values()
    specs = {a.experiment.name: a.experiment for a in actions if a.experiment is not None}
    bandits = frozenset(
        a.experiment.name for a in actions if a.experiment is not None and a.bandit is not None
    )
    return specs, bandits


@click.command()
@click.option("--experiment", default=None, help="Only this experiment.")
@click.option("--segment", default=None, help="Only decisions caused by entering this segment.")
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Outcome records as JSON lines instead of the outcomes topic.",
)
@click.option("--sequential", is_flag=True, help="Add the always-valid (sequential) interval.")
@click.option("--json", "as_json_flag", is_flag=True, help="Print a JSON document.")
@click.pass_obj
def lift(
    settings: Settings,
    experiment: str | None,
    segment: str | None,
    path: Path | None,
    sequential: bool,
    as_json_flag: bool,
) -> None:
    """Treated vs control conversion per experiment, variant and segment, from the outcomes.

    Each experiment's variants are compared with its holdout, each action's treated decisions
    with the global control group; outcomes are deduplicated by id.
    """
    outcomes = read_file(path) if path is not None else asyncio.run(read_outcomes(settings))
    specs, bandits = experiments_of(settings)
    table = lift_table(outcomes, specs, experiment, segment, sequential, bandits)
    if as_json_flag:
        click.echo(json.dumps(as_json(table), indent=2))
    else:
        click.echo(render(table))
