"""``segflow rules check|show``: validate and print declarative segment rule files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from engine.settings import Settings

if TYPE_CHECKING:
    from engine.rules.model import RuleSet

_PATH = click.Path(dir_okay=False, path_type=Path)


class RulesCheckFailed(click.ClickException):
    """A rules file is invalid: shown as its one-line ``FILE:LINE: problem``, exit code 1."""

    exit_code = 1

    def show(self, file: object = None) -> None:
        """Print the message alone (no ``Error:`` prefix) to stderr."""
        click.echo(self.message, err=True)


def _load(settings: Settings, path: Path | None) -> RuleSet:
    from engine.app import rule_names, rules_path  # imports Faust; only needed here
    from engine.rules.loader import RulesError, load_rules

    try:
        return load_rules(path or rules_path(settings), rule_names(settings))
    except RulesError as exc:
        raise RulesCheckFailed(str(exc)) from None


@click.group()
def rules() -> None:
    """Check and show declarative segment rules (YAML)."""


@rules.command()
@click.argument("path", type=_PATH)
@click.pass_obj
def check(settings: Settings, path: Path) -> None:
    """Validate a rules file: prints FILE: ok, or FILE:LINE: problem and exits 1."""
    rule_set = _load(settings, path)
    click.echo(
        f"{path}: ok (version {rule_set.version}, {len(rule_set.families)} families, "
        f"{rule_set.segment_count} segments)"
    )


@rules.command()
@click.argument("path", type=_PATH, required=False)
@click.pass_obj
def show(settings: Settings, path: Path | None) -> None:
    """Print the families and segments of a rules file (default: the shipped rules) in priority order."""
    rule_set = _load(settings, path)
    click.echo(f"{rule_set.source}: version {rule_set.version} (fingerprint {rule_set.fingerprint})")
    if rule_set.params:
        click.echo("params: " + ", ".join(f"{k}={v}" for k, v in rule_set.params.items()))
    for family in rule_set.families:
        click.echo("")
        click.echo(f"{family.name}" + (f": {family.description}" if family.description else ""))
        if family.key_features:
            click.echo(f"  key features: {', '.join(family.key_features)}")
        for segment in family.segments:
            click.echo(f"  {segment.priority + 1}. {segment.name}")
            if segment.exit is None:
                click.echo(f"       when: {segment.enter.text}")
            else:
                click.echo(f"       enter: {segment.enter.text}")
                click.echo(f"       exit:  {segment.exit.text}")
            if segment.min_dwell_seconds:
                click.echo(f"       min dwell: {segment.min_dwell_seconds / 86_400:g} days")
            if segment.label != segment.name:
                click.echo(f"       label: {segment.label}")
            for when, text in segment.labels:
                click.echo(f"       label {text!r} when {when.text}")
