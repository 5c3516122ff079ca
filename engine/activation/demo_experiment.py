"""The demo's experiment: the shipped win-back offer test, on responses whose truth is known.

The event simulator's customers do not react to actions, so a live demo's lift is noise around
zero. Here the shipped experiment (its variants, weights and holdout, from the rules in force)
runs on ``engine.activation.experiments.simulation`` with documented true conversion rates per
segment, and its outcomes go through the same ``lift_table`` that ``segflow lift`` prints, so
the estimate can be read beside the truth it should cover.
"""

from __future__ import annotations

from engine.activation.experiments.assignment import CONTROL, ExperimentSpec
from engine.activation.experiments.simulation import SimulationConfig, simulate
from engine.activation.lift_table import lift_table
from engine.activation.outcomes import Outcome
from engine.rules.model import RuleSet

TRUE_BASE = {"lapsing": 0.04, "Likely to Churn": 0.02}
"""True conversion rate of an untreated customer in the window, per segment."""
TRUE_UPLIFT = (0.005, 0.03)
"""Added by the first and by every later variant (e.g. plain vs a discount)."""


LAPSING_ANCHOR = "      - name: lapsing\n"


def demo_rules_text(shipped: str) -> str | None:
    """The shipped rules with their win-back actions also on entering lifecycle 'lapsing'.

    A demo population is too small and too short for the churn model to become ready, so
    'Likely to Churn' (which reads its score) is never entered; 'lapsing' is, often. None when
    the rules have no such segment, or no such actions (a rules file of the user's own).
    """
    actions = "[churn_winback_email, churn_winback_in_app]"
    if shipped.count(LAPSING_ANCHOR) != 1 or "- name: churn_winback_in_app" not in shipped:
        return None
    return shipped.replace(LAPSING_ANCHOR, f"{LAPSING_ANCHOR}        on_enter: {actions}\n")


def shipped_experiment(rules: RuleSet) -> tuple[str, ExperimentSpec] | None:
    """The first action of the rules with an experiment, and that experiment."""
    for action in rules.activation.actions.values():
        if action.experiment is not None:
            return action.name, action.experiment
    return None


def true_rates(spec: ExperimentSpec) -> dict[str, dict[str, float]]:
    """Per segment, the true rate of control and of every variant."""
    rates = {}
    for segment, base in TRUE_BASE.items():
        arms = {CONTROL: base}
        for index, variant in enumerate(spec.variants):
            arms[variant.name] = base + TRUE_UPLIFT[min(index, 1)]
        rates[segment] = arms
    return rates


def simulated_lift(rules: RuleSet, customers: int = 20_000, seed: int = 7) -> tuple[str, list[str]] | None:
    """(experiment name, lines: lift per variant beside its true lift), or None without one."""
    found = shipped_experiment(rules)
    if found is None:
        return None
    action, spec = found
    weights = {v.name: v.weight for v in spec.variants}
    config = SimulationConfig(
        true_rates(spec), customers, None, spec.holdout_percent, weights, experiment=spec.name
    )
    result = simulate(config, seed)
    outcomes = [
        Outcome(
            outcome_id=d.decision_id,
            customer_id=d.customer_id,
            action=action,
            channel="email",
            group=CONTROL if d.variant == CONTROL else "treated",
            experiment=spec.name,
            variant=d.variant,
            probability=d.probability,
            policy="ab",
            family="demo",
            segment=d.segment,
            window_ms=(d.event_ts_ms, d.event_ts_ms + config.attribution_window_ms),
            converted=d.converted,
            revenue=0.0,
            outcome_ts_ms=d.event_ts_ms,
            reward="purchase",
        )
        for d in result.decisions
    ]
    table = lift_table(outcomes, {spec.name: spec})
    lines = []
    for row in table.rows:
        if row.segment != "*":
            continue
        lift = row.lift
        truth = result.true_lift[row.arm]
        covered = "covers" if lift.interval.covers(truth) else "MISSES"
        lines.append(
            f"{row.arm:<14} n={lift.exposures:<6} lift {100 * (lift.absolute_lift or 0):+.2f} pp"
            f" [{100 * lift.interval.lower:+.2f}, {100 * lift.interval.upper:+.2f}]"
            f" true {100 * truth:+.2f} pp: the interval {covered} it"
        )
    check = table.ratio_checks.get(spec.name)
    if check is not None:
        lines.append(f"sample ratio: p {check.p_value:.3g} ({'MISMATCH' if check.flagged else 'ok'})")
    return spec.name, lines
