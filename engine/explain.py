"""``segflow explain``: one customer's features, scores, segments and the reasons, from Redis."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.app import build_pipeline
from engine.redis_clients import redis_client
from engine.rules.evaluate import explain_membership
from engine.settings import Settings
from engine.snapshots.lifetime import LifetimeFit
from engine.stream.customer_step import CustomerStep
from engine.stream.external_scores import EXTERNAL_SOURCE, score_entry
from engine.stream.lifetime_inputs import model_row, reads_lifetime
from engine.stream.model_gate import VersionModels
from engine.stream.rule_scores import lifetime_scores
from features.redis_store import CustomerRecord


@dataclass(slots=True)
class Explanation:
    """What segflow knows and decided about one customer."""

    customer_id: str
    as_of: float
    features: dict[str, Any]
    scores: dict[str, Any]
    segments: dict[str, dict[str, Any]]
    pending: dict[str, dict[str, Any]]
    applied_offsets: dict[int, int]
    pending_outbox: int
    rules_version: str
    models: dict[str, str] = field(default_factory=dict)
    """Per model, "ready" or "warming up: <reason>" in the snapshot the last judgement read
    (a warming-up model's score is None to the rules, so it is not among ``scores``)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "customer_id": self.customer_id,
            "as_of": _iso(self.as_of),
            "features": self.features,
            "scores": self.scores,
            "segments": self.segments,
            "pending_predictions": self.pending,
            "applied_offsets": {str(k): v for k, v in self.applied_offsets.items()},
            "pending_outbox": self.pending_outbox,
            "rules_version": self.rules_version,
            "models": self.models,
            **self.extra,
        }

    def render(self) -> str:
        """Readable text for a terminal."""
        lines = [
            f"customer {self.customer_id} (as of {_iso(self.as_of)}; rules {self.rules_version})",
            "features:",
        ]
        lines += [f"  {name:28} {value}" for name, value in self.features.items()]
        lines.append("scores (top contributions; an external score's version and as-of time):")
        for name, row in self.scores.items():
            top = ", ".join(f"{f} {c:+.3f}" for f, c in row.get("top", []))
            if row.get("source") == EXTERNAL_SOURCE:
                top = f"external: version {row['version']}, as of {_iso(row['as_of'] / 1000)}"
            lines.append(f"  {name:28} {row['score']:<10.4f} {top}")
        if self.models:
            lines.append("models (a warming-up model's score is None to the rules):")
            lines += [f"  {name:28} {readiness}" for name, readiness in self.models.items()]
        lines.append("segments:")
        for family, row in self.segments.items():
            since = _iso(row["since"]) if row.get("since") else "-"
            lines.append(f"  {family:18} {row['segment'] or '-':28} since {since}")
            lines.append(f"  {'':18} label: {row.get('label') or '-'}; why: {row['reason']['text']}")
        for name, row in self.pending.items():
            lines.append(f"  pending {name}: made {_iso(row['made'])}, due {_iso(row['due'])}")
        offsets = ", ".join(f"p{p}@{o}" for p, o in sorted(self.applied_offsets.items()))
        lines.append(f"applied offsets: {offsets}; pending outbox entries: {self.pending_outbox}")
        if "population_version" in self.extra:
            population = self.extra["population_version"] or "none sealed yet (no quintiles)"
            lines.append(
                f"population snapshot: {population}; models: {self.extra.get('model_version') or '-'}"
            )
        if "btyd_fit" in self.extra:
            fit = self.extra["btyd_fit"]
            lines.append(
                "BTYD fit: none yet (no p_alive / expected purchases / clv scores)"
                if fit is None
                else "BTYD fit of {day}: BG/NBD r={r:.4g} alpha={alpha:.4g} a={a:.4g} b={b:.4g}; "
                "Gamma-Gamma {spend}".format(**fit)
            )
        return "\n".join(lines)


def btyd_summary(fit: LifetimeFit) -> dict[str, Any]:
    """The parameters of a BTYD fit as ``explain`` shows them (time in days)."""
    bg = fit.purchases
    spend = fit.spend
    return {
        "day": datetime.fromtimestamp(fit.day * 86_400, tz=UTC).date().isoformat(),
        "r": bg.r,
        "alpha": bg.alpha,
        "a": bg.a,
        "b": bg.b,
        "spend": "none" if spend is None else f"p={spend.p:.4g} q={spend.q:.4g} v={spend.v:.4g}",
    }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def _round(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def build_explanation(
    record: CustomerRecord, step: CustomerStep, rules: Any, models: VersionModels | None
) -> Explanation | None:
    """Explain a stored record (pure: no I/O; quintiles from the step's population cuts, score
    contributions from ``models``, the snapshot the customer's last judgement read)."""
    state = record.state
    if state is None:
        return None
    work = step.working(record)
    as_of = work.evaluated_at if work.evaluated_at is not None else state.last_ts
    variables = step.variables(record.customer_id, state, work.scores, as_of)
    features = {k: _round(v) for k, v in variables.features.as_dict().items()}
    features |= {k: v for k, v in variables.quintiles().items()}
    features["campaigns"] = variables.features.campaigns
    horizon = step.config.lifetime_horizon_days
    names = step.config.input_names
    lifetime = (
        lifetime_scores(variables.cuts.lifetime, state, as_of, horizon) if reads_lifetime(names) else None
    )
    inputs = model_row(variables.features.raw, names, lifetime, horizon)
    scores: dict[str, Any] = {}
    for name, value in work.scores.items():
        row: dict[str, Any] = score_entry(name, value, state)
        top = None if models is None else models.contributions(name, inputs, 3)
        if top is not None:
            row["top"] = [[f, round(c, 4)] for f, c in top]
        scores[name] = row
    segments: dict[str, dict[str, Any]] = {}
    for family in rules.families:
        membership = work.memberships.get(family.name)
        if membership is None:
            segments[family.name] = {
                "segment": None,
                "since": None,
                "label": None,
                "reason": {"text": "in no segment of this family", "conditions": []},
            }
            continue
        segment = family.segment(membership.segment)
        segments[family.name] = {
            "segment": membership.segment,
            "since": membership.since,
            "label": segment.label_for(variables) if segment else None,
            "reason": explain_membership(family, membership, variables, as_of),
        }
    pending = {
        n: {"made": p.made_ts, "due": p.due_ts, "score": p.y_pred} for n, p in work.book.pending.items()
    }
    return Explanation(
        customer_id=record.customer_id,
        as_of=as_of,
        features=features,
        scores=scores,
        segments=segments,
        pending=pending,
        applied_offsets=dict(record.applied_offsets),
        pending_outbox=len(record.outbox),
        rules_version=rules.version,
        models={} if models is None else models.readiness(),
    )


async def explain_customer(settings: Settings, customer_id: str) -> Explanation | None:
    """Load one customer from Redis and explain it, with the snapshots their last judgement read."""
    client = redis_client(settings)
    try:
        pipeline = build_pipeline(settings, client)
        store = pipeline.store
        record = await store.get(customer_id)
        if record is None or record.state is None:
            return None
        work = pipeline.step.working(record)
        as_of = work.evaluated_at if work.evaluated_at is not None else record.state.last_ts
        day = pipeline.population.version_of(as_of)
        sealed = await pipeline.population.ensure(day, day)
        version = pipeline.models.version_of(as_of)
        models = pipeline.models.loaded(version) if await pipeline.models.ensure(version, version) else None
        quintiles = (await store.population.quintiles([customer_id]))[customer_id]
    finally:
        await client.aclose()
    if not sealed:  # not sealed yet: the quintiles have no value, as for the worker
        pipeline.population.lenient = True
    explanation = build_explanation(record, pipeline.step, pipeline.rules, models)
    if explanation is not None:
        cuts = pipeline.population.cuts_at(explanation.as_of)
        explanation.extra["population_version"] = cuts.version_label
        explanation.extra["model_version"] = None if models is None else models.label
        explanation.extra["btyd_fit"] = None if cuts.lifetime is None else btyd_summary(cuts.lifetime)
    if explanation is not None and quintiles is not None:
        explanation.extra["rfm_rank_quintiles"] = {
            "R": quintiles.recency,
            "F": quintiles.frequency,
            "M": quintiles.monetary,
        }
    return explanation
