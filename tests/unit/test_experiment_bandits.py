"""Bandit policies (engine.activation.experiments.bandits): the state round-trips through bytes,
a reward is applied once per decision id, the logged probability is the frequency the arm is drawn
with, and each policy's probabilities equal an independent computation. The simulated acceptance
(share to the best arm, regret) is in test_experiment_simulation.py."""

from __future__ import annotations

import math

import pytest
from scipy import integrate, optimize, special, stats

from engine.activation.experiments import bandits
from engine.activation.experiments.bandits import (
    EPSILON_GREEDY,
    THOMPSON,
    UCB,
    ArmStats,
    BanditConfig,
    BanditState,
    PolicySnapshot,
    apply_reward,
    choose,
    decision_point,
    decode_state,
    encode_state,
    new_state,
    policy_probabilities,
    prune,
    state_from_wire,
    state_to_wire,
)

ARMS = ("A", "B", "C")
# (rewards, successes) per arm, past exploration (min_rewards 100)
COUNTS = {"A": (100, 10.0), "B": (100, 20.0), "C": (120, 15.0)}


def _state(counts: dict[str, tuple[int, float]] = COUNTS) -> BanditState:
    return BanditState({arm: ArmStats(n, s) for arm, (n, s) in counts.items()})


def _rewarded(rewards: list[tuple[str, str, float, int]]) -> BanditState:
    state = new_state(ARMS)
    for decision_id, arm, reward, ts in rewards:
        state = apply_reward(state, decision_id, arm, reward, ts)
    return state


def test_state_round_trips_through_bytes_with_its_ledger() -> None:
    state = prune(
        _rewarded([("d1", "A", 1.0, 1_000), ("d2", "B", 0.25, 2_000), ("d3", "B", 0.0, 3_000)]), 1_500
    )
    assert state.arms == {"A": ArmStats(1, 1.0), "B": ArmStats(2, 0.25), "C": ArmStats()}
    assert state.settled == {"d2": 2_000, "d3": 3_000} and state.horizon_ms == 1_500
    raw = encode_state(state)
    assert isinstance(raw, bytes)
    assert decode_state(raw) == state
    assert state_from_wire(state_to_wire(state)) == state
    # the ledger survives the trip: a redelivery after a reload changes nothing
    assert apply_reward(decode_state(raw), "d2", "B", 1.0, 2_000) == state


@pytest.mark.parametrize(
    "wire",
    [
        {"v": 2, "arms": {}, "settled": {}},
        {"v": 1, "settled": {}},
        {"v": 1, "arms": {"A": [1]}, "settled": {}},
        {"v": 1, "arms": {"A": "12"}, "settled": {}},
        {"v": 1, "arms": {"A": [1, 2.0]}, "settled": {}},
        {"v": 1, "arms": {"A": [1, 1.0]}, "settled": {"d": "soon"}},
    ],
)
def test_malformed_state_is_refused(wire: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        state_from_wire(wire)


def test_the_same_reward_applied_twice_changes_nothing() -> None:
    once = apply_reward(new_state(ARMS), "d1", "A", 1.0, 10)
    assert once.arms["A"] == ArmStats(1, 1.0)
    assert apply_reward(once, "d1", "A", 1.0, 10) is once
    # a late "window closed" 0 for a decision already rewarded is a redelivery too
    assert apply_reward(once, "d1", "A", 0.0, 10) is once
    assert apply_reward(once, "d2", "A", 0.0, 20).arms["A"] == ArmStats(2, 1.0)


def test_pruning_bounds_the_ledger_and_refuses_older_decisions() -> None:
    state = _rewarded([(f"d{ts}", "A", 0.0, ts) for ts in range(0, 100, 10)])
    pruned = prune(state, 50)
    assert set(pruned.settled) == {"d50", "d60", "d70", "d80", "d90"}
    assert pruned.arms == state.arms
    assert apply_reward(pruned, "d10", "A", 1.0, 10) is pruned  # before the horizon: settled long ago
    assert apply_reward(pruned, "late", "A", 1.0, 49) is pruned
    assert apply_reward(pruned, "new", "A", 1.0, 50).arms["A"] == ArmStats(11, 1.0)
    assert prune(pruned, 20) is pruned  # the horizon never moves back


@pytest.mark.parametrize("reward", [-0.1, 1.5, math.nan])
def test_rewards_outside_zero_one_are_refused(reward: float) -> None:
    with pytest.raises(ValueError, match="reward"):
        apply_reward(new_state(ARMS), "d", "A", reward, 0)


@pytest.mark.parametrize("policy", [THOMPSON, EPSILON_GREEDY, UCB])
def test_the_logged_probability_is_the_frequency_the_arm_is_drawn_with(policy: str) -> None:
    config = BanditConfig(policy=policy)
    probabilities, exploring = policy_probabilities(_state(), ARMS, config)
    assert not exploring
    assert math.fsum(probabilities.values()) == pytest.approx(1.0)
    assert min(probabilities.values()) >= config.floor - 1e-12
    draws = 20_000
    chosen = {arm: 0 for arm in ARMS}
    for i in range(draws):
        choice = choose(_state(), ARMS, config, decision_point(f"{policy}-{i}"))
        assert choice.probability == probabilities[choice.arm]
        chosen[choice.arm] += 1
    expected = [draws * probabilities[arm] for arm in ARMS]
    p_value = stats.chisquare([chosen[arm] for arm in ARMS], expected).pvalue
    assert p_value > 0.001, (chosen, probabilities)


def test_a_redelivered_decision_draws_the_same_arm() -> None:
    config = BanditConfig()
    picks = {choose(_state(), ARMS, config, decision_point("d-42")).arm for _ in range(5)}
    assert len(picks) == 1
    assert decision_point("d-42") != decision_point("d-43")


def test_thompson_probabilities_match_numerical_integration() -> None:
    """P(arm a has the largest draw) = integral of f_a(x) * prod over b != a of F_b(x) dx."""
    posteriors = {arm: stats.beta(1 + s, 1 + n - s) for arm, (n, s) in COUNTS.items()}

    def wins(arm: str) -> float:
        others = [p for other, p in posteriors.items() if other != arm]
        integrand = lambda x: posteriors[arm].pdf(x) * math.prod(o.cdf(x) for o in others)  # noqa: E731
        return integrate.quad(integrand, 0.0, 1.0, points=[0.1, 0.2], limit=200)[0]

    exact = {arm: wins(arm) for arm in ARMS}
    assert math.fsum(exact.values()) == pytest.approx(1.0, abs=1e-6)
    config = BanditConfig(floor=0.0, thompson_draws=10_000)
    estimated, _ = policy_probabilities(_state(), ARMS, config)
    for arm in ARMS:
        se = math.sqrt(exact[arm] * (1 - exact[arm]) / config.thompson_draws)
        assert estimated[arm] == pytest.approx(exact[arm], abs=4 * se + 1e-4), (arm, estimated, exact)


def test_epsilon_greedy_probabilities_by_hand() -> None:
    """Greedy B (21/102 > 16/122 > 11/102): q = 0.1/3 + 0.9 for B, 0.1/3 else; p = 0.01 + 0.97 q."""
    probabilities, _ = policy_probabilities(_state(), ARMS, BanditConfig(policy=EPSILON_GREEDY))
    assert probabilities["B"] == pytest.approx(0.01 + 0.97 * (0.1 / 3 + 0.9))
    assert probabilities["A"] == probabilities["C"] == pytest.approx(0.01 + 0.97 * 0.1 / 3)


def test_kl_ucb_indices_solve_the_divergence_bound() -> None:
    """index_a = the q >= mean_a with n_a kl(mean_a, q) = ln N, solved here with scipy."""
    total = sum(n for n, _ in COUNTS.values())

    def solved(n: int, successes: float) -> float:
        mean = successes / n
        kl = lambda q: special.rel_entr(mean, q) + special.rel_entr(1 - mean, 1 - q)  # noqa: E731
        return optimize.brentq(lambda q: n * kl(q) - math.log(total), mean, 1 - 1e-12)

    indices = bandits.kl_ucb_indices(list(COUNTS.values()))
    assert indices == pytest.approx([solved(*counts) for counts in COUNTS.values()], abs=1e-8)
    assert bandits.kl_ucb_indices([(0, 0.0), (5, 1.0)])[0] == math.inf
    probabilities, _ = policy_probabilities(_state(), ARMS, BanditConfig(policy=UCB))
    best = ARMS[indices.index(max(indices))]
    assert probabilities[best] == pytest.approx(1 - 2 * 0.01)


def test_exploration_is_uniform_until_every_arm_has_min_rewards() -> None:
    short = _state({"A": (100, 10.0), "B": (99, 50.0), "C": (150, 1.0)})
    probabilities, exploring = policy_probabilities(short, ARMS, BanditConfig())
    assert exploring and probabilities == dict.fromkeys(ARMS, 1 / 3)
    _, exploring = policy_probabilities(apply_reward(short, "d", "B", 1.0, 0), ARMS, BanditConfig())
    assert not exploring


def test_decisions_reuse_the_policy_until_the_snapshot_refreshes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thompson's Monte Carlo runs once per state the policy reads, never once per decision."""
    runs: list[object] = []
    monte_carlo = bandits.thompson_probabilities

    def counted(posterior: tuple[tuple[float, float], ...], draws: int) -> tuple[float, ...]:
        runs.append(posterior)
        return monte_carlo(posterior, draws)

    monkeypatch.setattr(bandits, "thompson_probabilities", counted)
    config = BanditConfig(thompson_draws=1_001)  # a configuration no other test has cached
    live = _state()
    snapshot = PolicySnapshot(live, update_every=10)
    for i in range(500):
        snapshot.choose(ARMS, config, decision_point(f"d{i}"))
    assert len(runs) == 1
    for i in range(9):
        live = apply_reward(live, f"r{i}", "A", 0.0, i)
        snapshot = snapshot.refreshed(live)
        snapshot.choose(ARMS, config, decision_point(f"e{i}"))
    assert len(runs) == 1 and snapshot.state.total_rewards == 320
    snapshot = snapshot.refreshed(apply_reward(live, "r9", "A", 0.0, 9))
    snapshot.choose(ARMS, config, decision_point("f"))
    assert len(runs) == 2 and snapshot.state.total_rewards == 330


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"policy": "softmax"}, "unknown bandit policy"),
        ({"floor": 1.0}, "floor"),
        ({"epsilon": 1.5}, "epsilon"),
        ({"min_rewards": -1}, "min_rewards"),
        ({"thompson_draws": 0}, "thompson_draws"),
    ],
)
def test_invalid_configurations_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BanditConfig(**kwargs)  # type: ignore[arg-type]


def test_a_floor_too_large_for_the_arms_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds 1"):
        policy_probabilities(_state(), ARMS, BanditConfig(floor=0.4))
