"""A seeded experiment with known truth: true response rates per (segment, arm), known lift.

Customers arrive one every ``arrival_interval_ms`` of event time, each in a segment drawn with
``segment_weights``. Each is assigned as the pipeline would: the experiment's holdout by hash
(``assignment.in_holdout``), then either the sticky weighted variant (policy "ab") or a bandit
choice (drawn with the decision id's hash, reading a ``PolicySnapshot``). The customer converts
with the true probability of (segment, arm), at a uniform time within the attribution window.
Bandits learn with the delay a real stream has: reward 1 at the conversion's event time, reward 0
when the window closes without one, each applied once through the state's outcome ledger (an
injected fault, ``redeliver_rewards``, delivers a share of the rewards a second time, later).

Everything random comes from ``numpy.random.Generator(PCG64(seed))`` (arrivals, responses) and
from hashes of the seed-specific customer and decision ids (assignment, bandit choices), so one
seed gives one result.

Ground truth returned with the decisions and outcomes:

* ``true_lift[arm]`` = sum over segments of w_s (p[s, arm] - p[s, control]): what a fixed-split
  comparison of ``arm`` against control estimates;
* ``regret``: sum over treated decisions of (p[s, best arm of s] - p[s, chosen]) (expected, not
  realised), and ``uniform_regret``: the same for a uniform choice among the variants.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from engine.activation.experiments.assignment import (
    CONTROL,
    ExperimentSpec,
    assign,
    in_holdout,
    treated_probability,
    variant_probabilities,
    variants_from_weights,
)
from engine.activation.experiments.bandits import (
    BANDIT_POLICIES,
    BanditConfig,
    BanditState,
    PolicySnapshot,
    apply_reward,
    decision_point,
    new_state,
    prune,
)
from engine.activation.experiments.lift import ArmCounts

AB = "ab"
HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """The experiment simulated; ``true_rates[segment][arm]`` includes the "control" arm."""

    true_rates: Mapping[str, Mapping[str, float]]
    customers: int = 5_000
    segment_weights: Mapping[str, float] | None = None  # None: equal
    holdout_percent: float = 10.0
    weights: Mapping[str, float] | None = None  # the "ab" split; None: equal
    policy: str = AB  # "ab" or a bandit policy name
    bandit: BanditConfig | None = None  # None: BanditConfig(policy=policy)
    per_segment: bool = True  # one bandit state per segment (else one for everyone)
    update_every: int = 1  # the bandit's PolicySnapshot refresh, in rewards
    arrival_interval_ms: int = 60_000
    attribution_window_ms: int = 6 * HOUR_MS
    drop_control_exposures: float = 0.0  # injected fault: this share of control exposures is lost
    redeliver_rewards: float = 0.0  # injected fault: this share of rewards is delivered twice
    experiment: str = "sim"

    def __post_init__(self) -> None:
        if not self.true_rates:
            raise ValueError("true_rates needs at least one segment")
        arm_sets = {tuple(rates) for rates in self.true_rates.values()}
        if len(arm_sets) != 1:
            raise ValueError("every segment needs the same arms, in the same order")
        if CONTROL not in next(iter(arm_sets)):
            raise ValueError(f"true_rates needs a {CONTROL!r} arm in every segment")
        if self.policy != AB and self.policy not in BANDIT_POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}")
        for rates in self.true_rates.values():
            if any(not 0.0 <= p <= 1.0 for p in rates.values()):
                raise ValueError("true rates must be probabilities")

    @property
    def variants(self) -> tuple[str, ...]:
        """The treated arms, in order."""
        return tuple(arm for arm in next(iter(self.true_rates.values())) if arm != CONTROL)

    @property
    def segments(self) -> tuple[str, ...]:
        """The segments, in order."""
        return tuple(self.true_rates)

    def segment_shares(self) -> dict[str, float]:
        """Normalised segment weights."""
        weights = self.segment_weights or dict.fromkeys(self.segments, 1.0)
        total = math.fsum(weights[segment] for segment in self.segments)
        return {segment: weights[segment] / total for segment in self.segments}

    def spec(self) -> ExperimentSpec:
        """The experiment the assignment reads."""
        weights = self.weights or dict.fromkeys(self.variants, 1.0)
        return ExperimentSpec(self.experiment, variants_from_weights(weights), self.holdout_percent)


@dataclass(frozen=True, slots=True)
class SimDecision:
    """One decision as the actions topic would log it, with the simulated response."""

    decision_id: str
    customer_id: str
    segment: str
    event_ts_ms: int
    variant: str  # an arm or "control"
    probability: float
    policy: str
    converted: bool
    rewards_seen: int  # rewards in the state the policy read (0 for control and "ab")


@dataclass(frozen=True, slots=True)
class SimOutcome:
    """A conversion credited to a decision (within its attribution window)."""

    decision_id: str
    event_ts_ms: int
    variant: str


@dataclass(slots=True)
class SimulationResult:
    """Decisions, outcomes and the truth they were drawn from."""

    decisions: list[SimDecision]
    outcomes: list[SimOutcome]
    true_lift: dict[str, float]
    regret: float
    uniform_regret: float
    allocation: dict[str, float]  # the fixed allocation of "ab"; control vs treated under a bandit
    bandit_states: dict[str, BanditState] = field(default_factory=dict)

    def counts(self, segment: str | None = None) -> dict[str, ArmCounts]:
        """Exposures and conversions per arm (control first) of one segment or all, for ``lift``."""
        exposures: dict[str, int] = {}
        conversions: dict[str, int] = {}
        for decision in self.decisions:
            if segment is not None and decision.segment != segment:
                continue
            exposures[decision.variant] = exposures.get(decision.variant, 0) + 1
            conversions[decision.variant] = conversions.get(decision.variant, 0) + decision.converted
        ordered = sorted(exposures, key=lambda arm: arm != CONTROL)
        return {arm: ArmCounts(exposures[arm], conversions[arm]) for arm in ordered}


def simulate(config: SimulationConfig, seed: int) -> SimulationResult:
    """Run one seeded experiment."""
    rng = np.random.Generator(np.random.PCG64(seed))
    n = config.customers
    window = config.attribution_window_ms
    segments = config.segments
    shares = config.segment_shares()
    segment_index = rng.choice(len(segments), size=n, p=[shares[s] for s in segments])
    response_draws = rng.random(n)
    delay_draws = rng.integers(0, window, size=n)
    drop_draws = rng.random(n)
    redeliver_draws = rng.random(n)
    redelivery_delays = rng.integers(0, window, size=n)

    spec = config.spec()
    arms = config.variants
    bandit = config.policy != AB
    bandit_config = (config.bandit or BanditConfig(policy=config.policy)) if bandit else None
    policy = bandit_config.policy if bandit_config else AB
    keys = segments if config.per_segment else ("all",)
    live = {key: new_state(arms) for key in keys}
    snapshots = {key: PolicySnapshot(live[key], config.update_every) for key in keys}
    # (reward ts, order, state key, decision id, arm, reward, decision ts)
    pending: list[tuple[int, int, str, str, str, float, int]] = []

    best = {s: max(config.true_rates[s][a] for a in arms) for s in segments}
    mean = {s: math.fsum(config.true_rates[s][a] for a in arms) / len(arms) for s in segments}
    decisions: list[SimDecision] = []
    outcomes: list[SimOutcome] = []
    regret = uniform_regret = 0.0
    pruned_at = 0

    for i in range(n):
        ts = i * config.arrival_interval_ms
        while pending and pending[0][0] <= ts:
            _, _, held, decided_id, arm, reward, decided_ts = heapq.heappop(pending)
            live[held] = apply_reward(live[held], decided_id, arm, reward, decided_ts)
            snapshots[held] = snapshots[held].refreshed(live[held])
        if ts - pruned_at >= window:
            # Every decision made a window (and one arrival of lateness) ago has had its reward.
            live = {
                key: prune(state, ts - window - config.arrival_interval_ms) for key, state in live.items()
            }
            pruned_at = ts
        segment = segments[segment_index[i]]
        customer_id = f"sim-{seed}-{i}"
        decision_id = f"{config.experiment}:{seed}:{i}"
        key = segment if config.per_segment else "all"
        rewards_seen = 0
        if bandit_config is not None and not in_holdout(spec, customer_id):
            snapshot = snapshots[key]
            choice = snapshot.choose(arms, bandit_config, decision_point(decision_id))
            variant, probability = choice.arm, treated_probability(spec, choice.probability)
            rewards_seen = snapshot.state.total_rewards
        elif bandit:
            variant, probability = CONTROL, spec.holdout_fraction
        else:
            assignment = assign(spec, customer_id)
            variant, probability = assignment.variant, assignment.probability
        rates = config.true_rates[segment]
        if variant != CONTROL:
            regret += best[segment] - rates[variant]
            uniform_regret += best[segment] - mean[segment]
        converted = bool(response_draws[i] < rates[variant])
        if variant == CONTROL and drop_draws[i] < config.drop_control_exposures:
            continue  # the injected fault: this control exposure never reaches the log
        decisions.append(
            SimDecision(
                decision_id, customer_id, segment, ts, variant, probability, policy, converted, rewards_seen
            )
        )
        if converted:
            outcomes.append(SimOutcome(decision_id, ts + int(delay_draws[i]), variant))
        if bandit and variant != CONTROL:
            reward_ts = ts + int(delay_draws[i]) if converted else ts + window
            payload = (key, decision_id, variant, 1.0 if converted else 0.0, ts)
            heapq.heappush(pending, (reward_ts, 2 * i, *payload))
            if redeliver_draws[i] < config.redeliver_rewards:
                heapq.heappush(pending, (reward_ts + int(redelivery_delays[i]), 2 * i + 1, *payload))

    true_lift = {
        arm: math.fsum(
            shares[s] * (config.true_rates[s][arm] - config.true_rates[s][CONTROL]) for s in segments
        )
        for arm in arms
    }
    h = spec.holdout_fraction
    allocation = {CONTROL: h, "treated": 1.0 - h} if bandit else variant_probabilities(spec)
    return SimulationResult(
        decisions, outcomes, true_lift, regret, uniform_regret, allocation, live if bandit else {}
    )
