"""The dashboard tests' run of a seeded stream, what it left (read without dashboard code), and
small helpers.

The run is ``tests/integration/determinism_runs.py``'s ``worker_run``: it produces the events to
a fresh namespace, runs one real ``segflow worker`` process until the group committed every event
and no change or tick happened for a few seconds, stops it, and reads back every customer's
stored memberships (their records) and every change event and decision outcome (the topics).
``in_thread`` runs asyncio code beside Playwright's sync API, which keeps a loop running in the
test's thread.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import urllib.request
from collections import Counter
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from engine.settings import Settings, load_settings
from engine.web_auth import auth_headers, page_request

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from determinism_outcome import Outcome
from determinism_runs import remove, worker_run

__all__ = ["Outcome", "remove", "worker_run"]
T = TypeVar("T")
CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Run:
    """The stream's namespace, its customers, what the run left and how long it took."""

    settings: Settings
    customers: list[str]
    outcome: Outcome
    seconds: float

    def sizes(self) -> dict[str, Counter[str]]:
        """Customers per family and segment, from the stored records."""
        sizes: dict[str, Counter[str]] = {}
        for families in self.outcome.memberships.values():
            for family, (segment, _since) in families.items():
                if segment is not None:
                    sizes.setdefault(family, Counter())[segment] += 1
        return sizes

    def sizes_from_changes(self) -> dict[str, Counter[str]]:
        """Customers per family and segment, from the change events: entries minus exits."""
        sizes: dict[str, Counter[str]] = {}
        for change in self.outcome.changes.values():
            counts = sizes.setdefault(change.family, Counter())
            if change.to is not None:
                counts[change.to] += 1
            if change.source is not None:
                counts[change.source] -= 1
        return {family: +counts for family, counts in sizes.items()}

    def members(self, family: str, segment: str) -> list[str]:
        """The customers whose record puts them in ``segment``."""
        return sorted(
            cid
            for cid, families in self.outcome.memberships.items()
            if families.get(family, (None,))[0] == segment
        )


def in_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own: Playwright's sync API keeps a loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def keep_artifact(path: Path) -> Path:
    """Copy a test artefact to ``.artifacts/`` at the repository root (gitignored); the copy."""
    target = REPO / ".artifacts" / path.name
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(path, target)
    print(f"artefact: {path} (copy: {target})")
    return target


def chromium_path() -> Path:
    """Debian's Chromium, or a failed test saying how to get it."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (`sudo apt-get install -y chromium`, as "
            "deploy/local/setup.sh does); the dashboard's browser tests need a real browser"
        )
    return CHROMIUM


def token_headers() -> dict[str, str]:
    """What the run's requests to the dashboard carry: the page token of the settings, if any."""
    return auth_headers(load_settings().web_secret)


def get_bytes(url: str) -> tuple[str, bytes]:
    """(Content-Type, body) of a dashboard page, with the page token when one is set."""
    with urllib.request.urlopen(page_request(url, load_settings().web_secret), timeout=60) as response:
        return str(response.headers["Content-Type"]), bytes(response.read())


def get_json(url: str) -> Any:
    """A JSON document over HTTP (with the page token when one is set)."""
    with urllib.request.urlopen(page_request(url, load_settings().web_secret), timeout=30) as response:
        return json.loads(response.read())
