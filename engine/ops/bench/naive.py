"""The naive reference pipeline of ``segflow bench``: what a first implementation would do.

Run it as ``python -m engine.ops.bench.naive`` with ``SEGFLOW_*`` settings in the environment
(the bench starts it like a worker, see ``engine.worker_process.start_worker``). It is a Faust
app with one agent on ``SEGFLOW_EVENTS_TOPIC`` that takes the stream one event at a time
(``async for value in stream``) and, for each event, in order:

1. decodes the value with msgpack and checks it against event schema v1 into an ``Event``
   (``engine.schemas.validate_event``, the same check as the worker's);
2. applies it to the customer's state with ``features.state.apply_event`` and computes the
   catalogue's features with ``features.catalogue.snapshot``, both with the worker's
   ``FeatureConfig`` (``engine.app.feature_config`` of the same settings);
3. keeps every customer's state in a dict of this process (like a Faust in-memory table: the
   state is never read back from Redis);
4. writes the customer's encoded state (``features.redis_store.encode_state``) with one
   ``HSET <prefix>:c:{<customer>} s <bytes>`` and awaits it: one Redis round trip per event;
5. sends one record per event to ``SEGFLOW_CHANGES_TOPIC`` (msgpack of the customer id, event
   id and the snapshot's values, keyed by customer) and awaits the broker's ack (acks=all).

Faust acks each event when the loop moves on and commits offsets every
``SEGFLOW_COMMIT_INTERVAL_SECONDS``. There are no rules, models, duplicate detection, offset
fencing or outbox: it is a yardstick, not a second engine. An invalid event is counted and
skipped. Its web server (``SEGFLOW_WEB_PORT``) serves ``/segflow/metrics`` with
``segflow_events_applied_total`` (events applied, too-late ones included) and
``segflow_events_dead_lettered_total`` (invalid ones), so the bench watches it like a worker.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import faust
import faust.web as faust_web
import msgpack
from aiohttp.web import Response

from engine.app import faust_app, feature_config
from engine.codecs import encode_msgpack
from engine.redis_clients import redis_client
from engine.schemas import InvalidEvent, validate_event
from engine.settings import Settings, load_settings
from engine.topics import ensure_topics
from features.catalogue import snapshot
from features.keys import STATE_FIELD, customer_key
from features.redis_store import encode_state
from features.state import CustomerState, apply_event

APPLIED, INVALID = "segflow_events_applied_total", "segflow_events_dead_lettered_total"


def build_app(settings: Settings) -> faust.App:
    """The naive Faust app for ``settings`` with its agent and metrics page attached."""
    app = faust_app(settings, "naive-data", web_enabled=True)
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    events = app.topic(settings.events_topic, partitions=settings.events_partitions, **raw)
    changes = app.topic(settings.changes_topic, partitions=settings.changes_partitions, **raw)
    config = feature_config(settings)
    states: dict[str, CustomerState] = {}
    counters = {APPLIED: 0, INVALID: 0}
    redis = redis_client(settings)

    @app.agent(events, name="naive")
    async def naive(stream: Any) -> None:
        async for value in stream:
            try:
                event = validate_event(msgpack.unpackb(value, raw=False), currency=settings.currency)
            except (InvalidEvent, ValueError, TypeError):
                counters[INVALID] += 1
                continue
            state, _ = apply_event(states.get(event.customer_id), event, config)
            states[event.customer_id] = state
            features = snapshot(event.customer_id, state, config).as_dict()
            key = customer_key(settings.key_prefix, event.customer_id)
            await redis.hset(key, STATE_FIELD, encode_state(state))
            record = {"customer_id": event.customer_id, "event_id": event.event_id, "features": features}
            sent = await changes.send(key=event.customer_id.encode(), value=encode_msgpack(record))
            await sent
            counters[APPLIED] += 1

    @app.page("/segflow/metrics")
    async def metrics_page(web: Any, request: Any) -> faust_web.Response:
        lines = [f"{name} {value}" for name, value in counters.items()]
        lines.append(f"segflow_naive_customers {len(states)}")
        # Faust's aiohttp driver serves aiohttp responses typed as its own (it casts them too).
        return cast(faust_web.Response, Response(text="\n".join(lines) + "\n", content_type="text/plain"))

    return app


def main() -> None:
    """Create the topics and run the naive app until SIGTERM (settings from the environment)."""
    from engine.cli.worker_cmd import GracefulWorker

    settings = load_settings()
    asyncio.run(ensure_topics(settings))
    app = build_app(settings)
    GracefulWorker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
