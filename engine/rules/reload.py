"""Hot reload of the rules file: a changed file is validated and swapped in; a broken one is not.

Workers call ``RulesReloader.poll`` from their timer. The file's modification time and size are
checked at most every ``interval_seconds``; when they change the file is loaded and validated
in full, and only a valid file replaces the rules in force (the rules version in change events
changes with it). An invalid file is reported once, as ``file:line: problem``, and the old rules
keep running until the file is fixed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from engine.rules.loader import RulesError
from engine.rules.model import RuleSet

log = logging.getLogger(__name__)


class RulesReloader:
    """Watches one rules file for the rules in force."""

    def __init__(
        self,
        path: Path,
        load: Callable[[Path], RuleSet],
        apply: Callable[[RuleSet], None],
        interval_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._load = load
        self._apply = apply
        self._interval = interval_seconds
        self._clock = clock
        self._last_check = clock()
        self._seen = self._signature()
        self.reloads = 0
        self.errors = 0
        self.last_error: str | None = None

    def _signature(self) -> tuple[float, int] | None:
        try:
            stat = self._path.stat()
        except OSError:
            return None
        return stat.st_mtime, stat.st_size

    def poll(self, force: bool = False) -> bool:
        """Reload if the file changed (checked at most every interval); True when rules changed."""
        if self._interval <= 0 and not force:
            return False
        now = self._clock()
        if not force and now - self._last_check < self._interval:
            return False
        self._last_check = now
        signature = self._signature()
        if signature == self._seen and not force:
            return False
        self._seen = signature
        try:
            rules = self._load(self._path)
        except RulesError as exc:
            self.errors += 1
            self.last_error = str(exc)
            log.error("rules not reloaded, the old rules stay in force: %s", exc)
            return False
        self._apply(rules)
        self.reloads += 1
        self.last_error = None
        log.warning("rules reloaded from %s: version %s", self._path, rules.version)
        return True
