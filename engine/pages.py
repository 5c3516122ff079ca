"""The worker's web pages (Faust's web server, ``SEGFLOW_WEB_PORT``).

GET  /segflow/metrics         Prometheus text: counters, model quality, ownership
GET  /segflow/health          JSON liveness
GET  /segflow/models          JSON: the partitions whose models this worker owns, with their
                              owner generation, labels learned, and merged quality reports
POST /segflow/models/predict  JSON {"partition": p, "features": {catalogue feature: value}}
                              -> {"partition", "scores": {model: score}}; the owned bank's
                              current models, for operators and for the restart test
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp.web import Response
from faust.web import View

from engine.app import Runtime
from models.inputs import to_model_input
from models.report import merged_reports, prometheus_lines


def models_status(runtime: Runtime) -> dict[str, Any]:
    """What the models page shows."""
    banks = runtime.pipeline.banks
    return {
        "owned_partitions": banks.owned,
        "generations": {str(p): banks.generations.get(p) for p in banks.owned},
        "labels_learned": {str(p): banks.get(p).labels_learned for p in banks.owned},
        "replayed_labels": banks.replayed_labels,
        "reports": merged_reports(banks.get(p).evaluations for p in banks.owned),
    }


def predict(runtime: Runtime, body: dict[str, Any]) -> dict[str, Any]:
    """Scores of the owned bank of ``body["partition"]`` for ``body["features"]``."""
    banks = runtime.pipeline.banks
    partition = int(body["partition"])
    if partition not in banks.banks:
        raise KeyError(f"partition {partition} is not owned by this worker (owned: {banks.owned})")
    x = to_model_input(body["features"], runtime.pipeline.step.config.input_names)
    return {"partition": partition, "scores": banks.get(partition).score_all(x)}


def attach_pages(runtime: Runtime) -> None:
    """Register the pages on the runtime's app."""
    app = runtime.app

    @app.page("/segflow/metrics")
    async def metrics_page(web, request):  # type: ignore[no-untyped-def]
        banks = runtime.pipeline.banks
        reports = merged_reports(banks.get(p).evaluations for p in banks.owned)
        runtime.metrics.model_lines = [
            "# HELP segflow_model_partitions_owned Partitions whose models this worker owns.",
            "# TYPE segflow_model_partitions_owned gauge",
            f"segflow_model_partitions_owned {len(banks.owned)}",
            *prometheus_lines(reports),
        ]
        return Response(text=runtime.metrics.render(), content_type="text/plain")

    @app.page("/segflow/health")
    async def health_page(web, request):  # type: ignore[no-untyped-def]
        return web.json(runtime.metrics.health())

    @app.page("/segflow/models")
    async def models_page(web, request):  # type: ignore[no-untyped-def]
        return web.json(models_status(runtime))

    @app.page("/segflow/models/predict")
    class PredictView(View):
        async def post(self, request):  # type: ignore[no-untyped-def]
            try:
                body = json.loads(await request.text())
                return self.json(predict(runtime, body))
            except (ValueError, KeyError, TypeError) as exc:
                return self.json({"error": str(exc).strip("'\"")}, status=400)
