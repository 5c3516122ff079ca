"""Hot reload: a changed valid file replaces the rules, a broken one is rejected and the old kept."""

from __future__ import annotations

import os
from pathlib import Path

from engine.rules.loader import load_rules
from engine.rules.model import RuleSet
from engine.rules.reload import RulesReloader

KNOWN = {"recency_days", "frequency"}
GOOD = (
    'version: "{v}"\nfamilies:\n  - name: f\n    segments:\n      - name: s\n'
    '        when: "frequency > {n}"\n'
)


def write(path: Path, text: str, mtime: float) -> None:
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def test_valid_change_is_applied_and_broken_one_rejected(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    write(path, GOOD.format(v="v1", n=1), 1_000)
    in_force: list[RuleSet] = [load_rules(path, KNOWN)]
    clock = [0.0]
    reloader = RulesReloader(path, lambda p: load_rules(p, KNOWN), in_force.append, 5.0, lambda: clock[0])

    assert not reloader.poll()  # unchanged
    write(path, GOOD.format(v="v2", n=3), 2_000)
    clock[0] = 1.0
    assert not reloader.poll()  # checked at most every 5 s
    clock[0] = 6.0
    assert reloader.poll() and in_force[-1].version == "v2" and reloader.reloads == 1

    write(path, GOOD.format(v="v3", n=3).replace("frequency", "frequncy"), 3_000)
    clock[0] = 12.0
    assert not reloader.poll()
    assert in_force[-1].version == "v2"  # the old rules keep running
    assert reloader.errors == 1 and reloader.last_error is not None
    assert reloader.last_error.startswith(f"{path}:6:") and "frequncy" in reloader.last_error

    write(path, GOOD.format(v="v4", n=2), 4_000)
    clock[0] = 18.0
    assert reloader.poll() and in_force[-1].version == "v4" and reloader.last_error is None
