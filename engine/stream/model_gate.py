"""Which sealed model snapshot a moment reads, and whether it is sealed yet.

The learner (``engine.learner``) publishes one snapshot per event-time period of
``model_period_seconds``: version k holds the models after every label due before the end of
period k, learned in a fixed order. A decision at event time t reads version
``period(t - lateness) - 1``: every partition's labels due before the start of the period of
t's watermark have been delivered once all partitions passed it, so in real time the version is
sealed before it is needed, and a partition that runs ahead in a replay waits for it.

A model that is warming up (too few labels learned, or a holdout AUC interval that still
contains 0.5; ``models.readiness``) has no score the rules may read (``None``), as a model with
no label learned yet. The learner decided it when it sealed the version, so every worker and
replay agrees. Every model is still scored for the prediction book, so that it gets labels.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from models.readiness import Readiness
from models.snapshots import DecodedSnapshot, ModelSnapshotStore

log = logging.getLogger(__name__)


class VersionModels:
    """The models of one sealed snapshot, ready to score rows of model inputs."""

    def __init__(self, snapshot: DecodedSnapshot) -> None:
        self.snapshot = snapshot
        self.version = snapshot.version
        self._scorer = snapshot.scorer()
        self.names = self._scorer.model_names
        self.ready = frozenset(m.name for m in snapshot.models.values() if m.ready)
        """The models the learner found ready when it sealed the version: only their scores
        reach the rules and change events."""
        start = snapshot.version * snapshot.period_seconds
        self.label = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(start))
        """The version as the UTC start of its period."""

    def readiness(self) -> dict[str, str]:
        """Per model, ``"ready"`` or ``"warming up: <reason>"``."""
        return {
            m.name: Readiness(m.ready, m.warming_up_reason).describe() for m in self.snapshot.models.values()
        }

    def score_rows(self, rows: Sequence[Sequence[float]]) -> list[dict[str, float]]:
        """Every model's score of each row (input-name order), ready or not."""
        matrix = self._scorer.score(np.asarray(rows, dtype=np.float64))
        return [dict(zip(self.names, values, strict=True)) for values in matrix.tolist()]

    def contributions(self, model: str, row: Sequence[float], k: int) -> list[tuple[str, float]] | None:
        """The ``k`` largest contributions to ``model``'s score of ``row`` (None: not linear)."""
        if model not in self.snapshot.models:
            return None
        return self.snapshot.contributions(model, np.asarray(row, dtype=np.float64), k)


class ModelGate:
    """Sealed model snapshots by version, loaded from Redis as decisions need them."""

    def __init__(
        self,
        store: ModelSnapshotStore,
        period_seconds: float,
        lateness_seconds: float,
        untrained: Callable[[int], DecodedSnapshot],
    ) -> None:
        """``untrained`` gives the fresh models of a version sealed before any label was learned
        (the learner publishes no snapshot for those)."""
        self.store = store
        self.period = period_seconds
        self.lateness = lateness_seconds
        self._untrained = untrained
        self._versions: dict[int, VersionModels] = {}
        self._sealed: int | None = None
        self._mismatches: set[str] = set()

    def version_of(self, moment: float) -> int:
        """The snapshot version a decision at ``moment`` reads."""
        return math.floor((moment - self.lateness) / self.period) - 1

    def last_moment_of(self, version: int) -> float:
        """The latest moment that reads ``version`` or an earlier one."""
        return (version + 2) * self.period + self.lateness - 0.001

    @property
    def highest(self) -> int | None:
        """The highest version known to be sealed."""
        return self._sealed

    def is_loaded(self, version: int) -> bool:
        """Whether ``version`` is sealed and loaded here."""
        return version in self._versions

    async def ensure(self, first: int, last: int) -> bool:
        """Load every version from ``first`` to ``last``; False if ``last`` is not sealed yet."""
        if self._sealed is None or last > self._sealed:
            self._sealed = await self.store.sealed_version()
            if self._sealed is None or last > self._sealed:
                return False
        for version in range(first, last + 1):
            if version not in self._versions:
                snapshot = await self.store.load(version)
                if snapshot is None:
                    snapshot = self._untrained(version)
                else:
                    self._check_fingerprint(snapshot)
                self._versions[version] = VersionModels(snapshot)
        self._forget_old(first, last)
        return True

    def _check_fingerprint(self, snapshot: DecodedSnapshot) -> None:
        """Warn (once per fingerprint) about a learner configured otherwise than this worker.

        The snapshot's own readiness decisions still apply: they are what every worker reads.
        """
        expected = self._untrained(snapshot.version).fingerprint
        if snapshot.fingerprint != expected and snapshot.fingerprint not in self._mismatches:
            self._mismatches.add(snapshot.fingerprint)
            log.warning(
                "model snapshot %d was sealed by a learner configured otherwise (fingerprint %s, this "
                "worker's %s: model settings or SEGFLOW_MODEL_READY_* differ); its readiness applies",
                snapshot.version,
                snapshot.fingerprint,
                expected,
            )

    def loaded(self, version: int) -> VersionModels:
        """A loaded version's models (``ensure`` it first)."""
        return self._versions[version]

    def at(self, moment: float) -> VersionModels:
        """The models a decision at ``moment`` reads (the caller made sure they are loaded)."""
        version = self.version_of(moment)
        models = self._versions.get(version)
        if models is None:
            raise LookupError(f"model snapshot {version} is not loaded")
        return models

    def _forget_old(self, first: int, last: int, keep: int = 512) -> None:
        """Drop the oldest loaded versions outside ``first..last`` beyond ``keep`` of them."""
        extra = len(self._versions) - keep
        for version in sorted(self._versions):
            if extra <= 0:
                break
            if not first <= version <= last:
                del self._versions[version]
                extra -= 1
