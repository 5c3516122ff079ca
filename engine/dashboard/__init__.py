"""``segflow dashboard`` and ``segflow brief``: the analyst's pages on segments, models and lift.

* ``timeline``: the segment-changes, dead-letter and outcomes topics folded by event time;
* ``population``: one scan of the customer records (R x F grid, members, typical features);
* ``data``: the main page's numbers (aggregates, lag, lift, model quality over time);
* ``charts``, ``page``, ``segment_page``: plotly figures and HTML;
* ``server``: the aiohttp routes; ``brief``: the one-page brief and its PDF.
"""

from __future__ import annotations

from typing import Any


async def serve(*args: Any, **kwargs: Any) -> None:
    """``engine.dashboard.server.serve`` (imported when called: the CLI starts faster without it)."""
    from engine.dashboard.server import serve as run

    await run(*args, **kwargs)
