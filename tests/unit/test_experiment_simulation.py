"""The seeded experiment with ground truth (engine.activation.experiments.simulation): each bandit
finds the known best arm and beats uniform allocation, holdout customers are never treated nor
fed to the bandit, redelivered rewards count once, and the sample-ratio check flags an injected
mismatch but not an honest split."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

import msgpack
import pytest

from engine.activation.experiments.assignment import CONTROL, EXPERIMENT_SALT
from engine.activation.experiments.bandits import EPSILON_GREEDY, THOMPSON, UCB
from engine.activation.experiments.lift import sample_ratio_mismatch, wilson_interval
from engine.activation.experiments.simulation import SimulationConfig, SimulationResult, simulate

# The scenario the bandits module docstring documents: B is the best arm.
BEST = "B"
OUTCOMES_BEFORE_80_PERCENT = 300  # the end of exploration: 100 rewards per arm
BANDIT = SimulationConfig(
    true_rates={"all": {"control": 0.05, "A": 0.05, "B": 0.15, "C": 0.08}},
    customers=6_000,
    holdout_percent=10.0,
    policy=THOMPSON,
    update_every=10,
)
SEED = 7


def _in_holdout(customer_id: str, experiment: str = "sim", fraction: float = 0.10) -> bool:
    """The documented holdout bucket, computed here from its definition."""
    parts = ["holdout", EXPERIMENT_SALT, experiment, customer_id]
    digest = hashlib.sha256(msgpack.packb(parts, use_bin_type=True)).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _share_to_best(result: SimulationResult, outcomes: int) -> tuple[float, int]:
    treated = [d for d in result.decisions if d.variant != CONTROL and d.rewards_seen >= outcomes]
    return sum(d.variant == BEST for d in treated) / len(treated), len(treated)


@pytest.mark.parametrize("policy", [THOMPSON, EPSILON_GREEDY, UCB])
def test_the_bandit_finds_the_best_arm_and_beats_uniform(policy: str) -> None:
    result = simulate(replace(BANDIT, policy=policy), SEED)
    share, decisions = _share_to_best(result, OUTCOMES_BEFORE_80_PERCENT)
    assert decisions > 4_000
    assert share >= 0.80, (policy, share)
    early, _ = _share_to_best(result, 0)
    assert early < share  # the uniform exploration came first
    assert result.regret < result.uniform_regret, (result.regret, result.uniform_regret)
    # uniform regret is the per-decision gap (0.15 - mean(0.05, 0.15, 0.08) = 0.0567) per treated decision
    treated = sum(d.variant != CONTROL for d in result.decisions)
    assert result.uniform_regret == pytest.approx(treated * (0.15 - (0.05 + 0.15 + 0.08) / 3))


@pytest.mark.parametrize("policy", ["ab", THOMPSON])
def test_holdout_customers_receive_no_action(policy: str) -> None:
    result = simulate(replace(BANDIT, policy=policy), SEED)
    control = [d for d in result.decisions if d.variant == CONTROL]
    for decision in result.decisions:
        assert (decision.variant == CONTROL) == _in_holdout(decision.customer_id)
    assert all(d.probability == pytest.approx(0.10) and d.rewards_seen == 0 for d in control)
    assert len(control) / len(result.decisions) == pytest.approx(0.10, abs=0.015)
    # untreated: they convert at the control rate
    conversions = sum(d.converted for d in control)
    assert wilson_interval(conversions, len(control)).covers(0.05)
    if policy == "ab":
        return
    # and the bandit never learnt from them: its rewards are exactly the treated decisions whose
    # reward (conversion, or the window's close) fell before the last arrival
    last = (BANDIT.customers - 1) * BANDIT.arrival_interval_ms
    converted_at = {o.decision_id: o.event_ts_ms for o in result.outcomes}
    due = sum(
        converted_at.get(d.decision_id, d.event_ts_ms + BANDIT.attribution_window_ms) <= last
        for d in result.decisions
        if d.variant != CONTROL
    )
    assert result.bandit_states["all"].total_rewards == due


def test_redelivered_rewards_count_once() -> None:
    honest = simulate(BANDIT, SEED)
    redelivered = simulate(replace(BANDIT, redeliver_rewards=0.5), SEED)
    assert redelivered.decisions == honest.decisions
    assert redelivered.bandit_states == honest.bandit_states


@pytest.mark.parametrize("policy", ["ab", THOMPSON])
def test_an_injected_sample_ratio_mismatch_is_flagged_and_an_honest_split_is_not(policy: str) -> None:
    config = replace(BANDIT, policy=policy, customers=10_000)
    for dropped, flagged in ((0.0, False), (0.2, True)):
        result = simulate(replace(config, drop_control_exposures=dropped), SEED)
        counts = result.counts()
        if policy == "ab":
            observed = {arm: c.exposures for arm, c in counts.items()}
        else:
            treated = sum(c.exposures for arm, c in counts.items() if arm != CONTROL)
            observed = {CONTROL: counts[CONTROL].exposures, "treated": treated}
        check = sample_ratio_mismatch(observed, result.allocation)
        total = sum(observed.values())
        share = sum(result.allocation.values())
        statistic = sum(
            (observed[arm] - total * a / share) ** 2 / (total * a / share)
            for arm, a in result.allocation.items()
        )
        assert check.statistic == pytest.approx(statistic)
        if len(observed) == 2:  # chi-squared survival with one degree of freedom
            assert check.p_value == pytest.approx(math.erfc(math.sqrt(statistic / 2)), rel=1e-9)
        assert check.flagged is flagged, (policy, dropped, check.p_value)


def test_one_seed_gives_one_result() -> None:
    config = replace(BANDIT, customers=1_500)
    first, again, other = simulate(config, 3), simulate(config, 3), simulate(config, 4)
    assert first.decisions == again.decisions and first.bandit_states == again.bandit_states
    assert first.decisions != other.decisions
    assert first.true_lift == pytest.approx({"A": 0.0, "B": 0.10, "C": 0.03})


def test_invalid_simulations_are_refused() -> None:
    with pytest.raises(ValueError, match="control"):
        SimulationConfig(true_rates={"all": {"A": 0.1}})
    with pytest.raises(ValueError, match="same arms"):
        SimulationConfig(true_rates={"x": {"control": 0.1, "A": 0.1}, "y": {"control": 0.1, "B": 0.1}})
    with pytest.raises(ValueError, match="probabilities"):
        SimulationConfig(true_rates={"all": {"control": 0.1, "A": 1.1}})
