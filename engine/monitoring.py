"""Worker metrics (Prometheus text format) and health, served by the Faust web server.

Endpoints on the worker's web port (``SEGFLOW_WEB_PORT``):
  GET /segflow/metrics   counters and gauges in Prometheus exposition format
  GET /segflow/health    JSON: ok, and the last batch's wall-clock time
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

COUNTER_HELP: dict[str, str] = {
    "segflow_events_applied_total": "Events applied to customer state.",
    "segflow_events_duplicate_total": "Redelivered events skipped because already applied.",
    "segflow_events_dead_lettered_total": "Events sent to the dead-letter topic (invalid or too late).",
    "segflow_events_too_late_total": "Events older than the allowed lateness: not applied, dead-lettered.",
    "segflow_segment_changes_sent_total": "Segment-change events delivered (re-sends included).",
    "segflow_batches_total": "Batches processed.",
    "segflow_batches_held_total": (
        "Batches whose rest waits for other partitions in event time (a population snapshot not sealed yet)."
    ),
    "segflow_customers_expired_total": "Customers removed from the ranking sets after their TTL.",
    "segflow_batch_retries_total": "Batches retried after a Redis or Kafka error.",
    "segflow_labels_sent_total": "Resolved labels delivered to the labels topic (re-sends included).",
    "segflow_action_decisions_sent_total": (
        "Action decisions (sent or withheld) delivered to the actions topic (re-sends included)."
    ),
    "segflow_outcomes_sent_total": "Decision outcomes delivered to the outcomes topic (re-sends included).",
    "segflow_customers_ticked_total": "Customers moved on by event time alone (labels, timed segments).",
    "segflow_rules_reloads_total": "Rules files reloaded after a change.",
}


@dataclass(slots=True)
class WorkerMetrics:
    """In-process counters of one worker."""

    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_HELP, 0))
    last_batch_wall_ts: float | None = None
    last_batch_seconds: float = 0.0
    started_wall_ts: float = field(default_factory=time.time)
    rules_version: str = ""
    rules_reload_errors: int = 0
    model_lines: list[str] = field(default_factory=list)
    """Extra exposition lines (model quality, ownership), rendered by ``engine.pages``."""

    def add(self, name: str, amount: int = 1) -> None:
        """Increase counter ``name`` (must be one of COUNTER_HELP)."""
        if name not in self.counters:
            raise KeyError(f"unknown metric {name}")
        self.counters[name] += amount

    def render(self) -> str:
        """Prometheus exposition text."""
        lines: list[str] = []
        for name, value in self.counters.items():
            lines += [f"# HELP {name} {COUNTER_HELP[name]}", f"# TYPE {name} counter", f"{name} {value}"]
        lines += [
            "# HELP segflow_last_batch_seconds Wall-clock seconds the last batch took.",
            "# TYPE segflow_last_batch_seconds gauge",
            f"segflow_last_batch_seconds {self.last_batch_seconds:.6f}",
            "# HELP segflow_rules_reload_errors Rules files rejected since start (old rules kept).",
            "# TYPE segflow_rules_reload_errors gauge",
            f"segflow_rules_reload_errors {self.rules_reload_errors}",
            *self.model_lines,
        ]
        return "\n".join(lines) + "\n"

    def health(self) -> dict[str, object]:
        """Liveness summary for the health endpoint."""
        return {
            "ok": True,
            "uptime_seconds": round(time.time() - self.started_wall_ts, 3),
            "last_batch_wall_ts": self.last_batch_wall_ts,
            "events_applied": self.counters["segflow_events_applied_total"],
            "rules_version": self.rules_version,
        }
