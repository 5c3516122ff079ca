"""``segflow segments`` and ``segflow models``: what the analysts and operators read."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from engine.settings import Settings


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def segments(settings: Settings, as_json: bool) -> None:
    """Segment sizes and revenue per segment, per family (kept incrementally; no scan)."""
    from engine.reports import segment_sizes

    report = asyncio.run(segment_sizes(settings))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"rules {report['rules_version']}")
    for family, rows in report["families"].items():
        click.echo(f"{family}:")
        total = sum(row["customers"] for row in rows.values()) or 1
        for segment, row in rows.items():
            share = 100 * row["customers"] / total
            click.echo(
                f"  {segment:32} {row['customers']:>8} {share:5.1f}%  revenue {row['revenue']:>14,.2f}"
            )


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """Model quality from the learner: one model per kind over every label (prequential, holdout)."""
    if ctx.invoked_subcommand is not None:
        return
    from engine.reports import model_report

    report = asyncio.run(model_report(ctx.obj))
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    learner = report["learner"]
    if report["sealed_version"] is None:
        click.echo("no model snapshot sealed yet (is a worker or `segflow learner` running?)")
    click.echo(
        f"sealed version {report['sealed_version']}; labels consumed {learner.get('labels_consumed', 0)}, "
        f"learned {learner.get('labels_learned', 0)}, duplicates {learner.get('duplicates', 0)}, "
        f"late {learner.get('late', 0)}, lag {learner.get('lag', '-')}"
    )
    click.echo(
        f"{'model':28} {'group':12} {'labels':>7} {'pos':>6} {'roc_auc':>8} {'log_loss':>9} "
        f"{'ece':>7} {'mae':>9} {'rmse':>9} drift"
    )
    for name, model in report["models"].items():
        for group in ("prequential", "holdout"):
            row = model[group]
            click.echo(
                f"{name:28} {group:12} {row['n']:>7} {_fmt(row.get('positives'), 'd'):>6} "
                f"{_fmt(row.get('roc_auc')):>8} {_fmt(row.get('log_loss')):>9} {_fmt(row.get('ece')):>7} "
                f"{_fmt(row.get('mae')):>9} {_fmt(row.get('rmse')):>9} {model['drift']['detections']}"
            )
        if name in report["readiness"]:
            click.echo(f"{name:28} {report['readiness'][name]}")


@models.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def fairness(settings: Settings, as_json: bool) -> None:
    """Score distributions per value of SEGFLOW_GROUP_ATTRIBUTE (a report: it scans customers)."""
    from engine.reports import score_distribution

    report = asyncio.run(score_distribution(settings))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"scores by {report['attribute']!r} over {report['customers']} customers")
    for model, groups in report["models"].items():
        for group, row in groups.items():
            click.echo(
                f"  {model:28} {group:16} n={row['n']:<7} mean={row['mean']:.4f} "
                f"p10={row['p10']:.4f} p50={row['p50']:.4f} p90={row['p90']:.4f}"
            )


def _fmt(value: Any, kind: str = ".3f") -> str:
    return "-" if value is None else format(value, kind)
