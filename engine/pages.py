"""The worker's web pages (Faust's web server, ``SEGFLOW_WEB_PORT``).

GET  /segflow/metrics         Prometheus text (``engine.monitoring``): counters, histograms, lag and
                              segment-size gauges, model quality (the learner's report), lift from
                              the latest sealed snapshot (``engine.activation.lift_metrics``);
                              rendered at most every SCRAPE_CACHE_SECONDS
GET  /segflow/health          JSON liveness
GET  /segflow/ready           JSON readiness (``engine.ops.worker_status``): 200 {"ready": true, ...}
                              when Redis, the broker and a partition assignment are there, else
                              503 {"ready": false, "reasons": [...]}
GET  /segflow/models          JSON: the sealed model version, per model "ready" or "warming up:
                              <reason>" (``models``, the learner's latest decision) and the
                              learner's report (labels consumed, learned, duplicates, late, lag;
                              prequential and holdout quality and readiness per model)
POST /segflow/models/predict  JSON {"features": {catalogue feature: value}, "version": k (optional)}
                              -> {"version", "scores": {model: score}, "ready": [model],
                              "readiness": {model: "ready" | "warming up: <reason>"}}: the sealed
                              snapshot's models (the latest by default), as the worker scores
                              with them (the rules read the scores of the ready ones only)

With ``SEGFLOW_WEB_TOKEN`` set, every page but health and ready needs it (``engine.web_auth``,
an aiohttp middleware ``engine.app.faust_app`` installs on the whole web app).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp.web import Response
from faust.web import View
from redis.exceptions import RedisError

from engine.activation.lift_metrics import lift_lines
from engine.app import Runtime
from models.inputs import input_row
from models.report import prometheus_lines
from models.snapshots import DecodedSnapshot

log = logging.getLogger(__name__)
MODEL_LINES_TIMEOUT_SECONDS = 1.0
"""The longest a scrape waits for Redis (the model and lift lines); a scrape must not hang on it."""
SCRAPE_CACHE_SECONDS = 0.5
"""A scrape this soon after the last one gets the same text. prometheus-client renders the ~350
lines in ~4.5 ms of CPU (measured on the 2-core machine at load 7; the hand-written text took
0.015 ms) and the model lines cost Redis reads: a poller such as ``segflow bench`` (20 scrapes a
second) would cost the worker ~90 ms of CPU a second. Prometheus scrapes every 15 s or so."""


async def models_status(runtime: Runtime) -> dict[str, Any]:
    """What the models page shows."""
    store = runtime.pipeline.models.store
    learner = await store.report()
    return {
        "sealed_version": await store.sealed_version(),
        "period_seconds": runtime.settings.model_period_seconds,
        "models": {name: r["text"] for name, r in (learner.get("readiness") or {}).items()},
        "learner": learner,
    }


async def predict(runtime: Runtime, body: dict[str, Any]) -> dict[str, Any]:
    """Scores of ``body["features"]`` with a sealed snapshot (``body["version"]``, default the latest)."""
    gate = runtime.pipeline.models
    version = body.get("version")
    if version is None:
        version = await gate.store.sealed_version()
        if version is None:
            raise KeyError("no model snapshot is sealed yet")
    version = int(version)
    if not await gate.ensure(version, version):
        raise KeyError(f"model snapshot {version} is not sealed yet")
    models = gate.loaded(version)
    row = input_row(body["features"], runtime.pipeline.step.config.input_names)
    [scores] = models.score_rows([row])
    return {
        "version": version,
        "scores": scores,
        "ready": sorted(models.ready),
        "readiness": models.readiness(),
    }


async def _latest_snapshot(runtime: Runtime, sealed: int | None) -> DecodedSnapshot | None:
    """The latest sealed snapshot with outcome tallies (None before the first one)."""
    if sealed is None:
        return None
    return await runtime.pipeline.models.store.load(sealed)


async def _model_lines(runtime: Runtime) -> list[str]:
    """The sealed model version, model quality and lift lines of the metrics page (Redis reads)."""
    status = await models_status(runtime)
    sealed = status["sealed_version"]
    return [
        "# HELP segflow_model_sealed_version The highest sealed model snapshot version.",
        "# TYPE segflow_model_sealed_version gauge",
        f"segflow_model_sealed_version {-1 if sealed is None else sealed}",
        *prometheus_lines(status["learner"].get("reports") or {}, status["learner"].get("readiness") or {}),
        *lift_lines(await _latest_snapshot(runtime, sealed), runtime.pipeline.rules),
    ]


def attach_pages(runtime: Runtime) -> None:
    """Register the pages on the runtime's app."""
    app = runtime.app

    last: list[Any] = [float("-inf"), ""]  # when the text below was rendered (monotonic), the text

    @app.page("/segflow/metrics")
    async def metrics_page(web, request):  # type: ignore[no-untyped-def]
        if time.monotonic() - last[0] >= SCRAPE_CACHE_SECONDS:
            try:
                lines = await asyncio.wait_for(_model_lines(runtime), MODEL_LINES_TIMEOUT_SECONDS)
                runtime.metrics.model_lines = lines
            except (RedisError, OSError, TimeoutError) as exc:  # the rest answers, with the last lines
                log.warning("model and lift lines not refreshed (%s: %s)", type(exc).__name__, exc)
            last[:] = [time.monotonic(), runtime.metrics.render()]
        return Response(text=last[1], content_type="text/plain")

    @app.page("/segflow/health")
    async def health_page(web, request):  # type: ignore[no-untyped-def]
        return web.json(runtime.metrics.health())

    @app.page("/segflow/ready")
    async def ready_page(web, request):  # type: ignore[no-untyped-def]
        if runtime.status is None:
            return web.json({"ready": False, "reasons": ["worker: not started"]}, status=503)
        body = await runtime.status.readiness()
        return web.json(body, status=200 if body["ready"] else 503)

    @app.page("/segflow/models")
    async def models_page(web, request):  # type: ignore[no-untyped-def]
        return web.json(await models_status(runtime))

    @app.page("/segflow/models/predict")
    class PredictView(View):
        async def post(self, request):  # type: ignore[no-untyped-def]
            try:
                body = json.loads(await request.text())
                return self.json(await predict(runtime, body))
            except (ValueError, KeyError, TypeError) as exc:
                return self.json({"error": str(exc).strip("'\"")}, status=400)
