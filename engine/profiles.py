"""Profiles: files of ``SEGFLOW_*=value`` lines that ``load_settings`` reads (``engine.settings``).

``segflow demo`` writes one for its run (``.segflow.env`` in the current directory), so that
``segflow tail``, ``explain``, ``segments``, ``models`` and ``lift`` afterwards read that run's
topics and keys with no variable to copy. A profile holds only the settings that differ from
the defaults, and never a secret (a password or token: its ``_FILE`` setting is written when
that is how it was given); the first line says who wrote it, so the demo replaces its own
profile but never one a person wrote.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from engine.settings import Settings

DEMO_MARK = "# Written by `segflow demo`"
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@,+=-]*$")


def _default(name: str) -> Any:
    return Settings.model_fields[name].get_default(call_default_factory=True)


def _text(value: Any) -> str:
    text = str(value)
    return text if _PLAIN.match(text) else json.dumps(text)


def profile_lines(settings: Settings) -> list[str]:
    """``SEGFLOW_<NAME>=value`` for every setting of ``settings`` that is not its default,
    secrets left out."""
    lines = []
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):
            continue
        if value is not None and value != _default(name):
            lines.append(f"SEGFLOW_{name.upper()}={_text(value)}")
    return lines


def written_by_demo(path: Path) -> bool:
    """True when ``path`` is a profile ``segflow demo`` wrote (so it may replace it)."""
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.readline().startswith(DEMO_MARK)
    except OSError:
        return False


def write_profile(settings: Settings, path: Path, about: str) -> None:
    """Write ``settings`` as a demo profile to ``path`` (``about``: one line on what it is for)."""
    header = [
        f"{DEMO_MARK}: {about}",
        "# segflow reads this file in this directory (or where SEGFLOW_PROFILE / --profile point);",
        "# environment variables win over it. Delete it, or set SEGFLOW_PROFILE=none, for the defaults.",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("\n".join([*header, *profile_lines(settings)]) + "\n", encoding="utf-8")
    temporary.replace(path)
