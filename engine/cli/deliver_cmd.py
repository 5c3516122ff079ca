"""``segflow deliver``: deliver the actions topic's send actions to their destinations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import click

from engine.activation.delivery.config import load_destinations
from engine.activation.delivery.counters import DeliveryCounters
from engine.activation.delivery.service import DeliveryService
from engine.preflight import check_access
from engine.settings import Settings, SettingsError
from engine.topics import ensure_topics


@click.command()
@click.option("--once", is_flag=True, help="Deliver until the actions topic is drained, then exit.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to finish deliveries on stop.",
)
@click.option(
    "--web-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of the metrics and health pages (default: SEGFLOW_DELIVER_WEB_PORT; 0: none).",
)
@click.pass_obj
def deliver(settings: Settings, once: bool, grace: float, web_port: int | None) -> None:
    """Deliver every send action to its channel's destination (SEGFLOW_DESTINATIONS_FILE).

    Withheld decisions are counted, not delivered; an action no destination accepts goes to the
    actions dead-letter topic. Offsets are committed once everything below them is finished.
    Counters: http://127.0.0.1:PORT/segflow/metrics. Stop with SIGTERM or Ctrl-C.
    """
    if web_port is not None:
        settings = settings.model_copy(update={"deliver_web_port": web_port})
    if settings.destinations_file is None:
        raise SettingsError("SEGFLOW_DESTINATIONS_FILE is not set (see deploy/examples/destinations.yaml)")
    destinations = load_destinations(settings.destinations_file)
    # The counters are logged at info level every SEGFLOW_DELIVER_LOG_INTERVAL_SECONDS.
    level = logging.DEBUG if settings.log_level == "debug" else logging.INFO
    logging.getLogger("engine.activation.delivery").setLevel(level)
    service = DeliveryService(settings, destinations, once=once, grace_seconds=grace)
    check_access(settings, group=service.group_id, redis=False)
    asyncio.run(ensure_topics(settings))
    counters = asyncio.run(_run(service))
    click.echo(f"segflow deliver: {counters.summary()}")


async def _run(service: DeliveryService) -> DeliveryCounters:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    return await service.run(stop)
