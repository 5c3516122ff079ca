"""Progress of a bench run: plain lines (tests, logs) or a rich progress bar on stderr."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Reporter(Protocol):
    """Where a bench run tells what it is doing."""

    def begin(self, steps: int) -> None:
        """The run has ``steps`` steps in all."""

    def step(self, text: str) -> None:
        """A step starts (the previous one is done)."""

    def note(self, text: str) -> None:
        """A result worth a line of its own."""

    def end(self) -> None:
        """The run is over (successfully or not)."""


class LineReporter:
    """Every step and note as one line to ``write``."""

    def __init__(self, write: Callable[[str], None] = lambda _: None) -> None:
        self._write = write

    def begin(self, steps: int) -> None:
        """Nothing to draw."""

    def step(self, text: str) -> None:
        """One line per step."""
        self._write(f"[bench] {text}")

    def note(self, text: str) -> None:
        """One line per note."""
        self._write(f"[bench] {text}")

    def end(self) -> None:
        """Nothing to close."""


class RichReporter:
    """A rich progress bar on stderr: steps done of all, the current step, elapsed time."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]bench[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=self._console,
            transient=False,
        )
        self._task: Any = None
        self._started = False

    def begin(self, steps: int) -> None:
        """Draw the bar."""
        self._progress.start()
        self._task = self._progress.add_task("starting", total=steps)

    def step(self, text: str) -> None:
        """Advance past the previous step and show this one."""
        if self._started:
            self._progress.advance(self._task)
        self._started = True
        self._progress.update(self._task, description=text)

    def note(self, text: str) -> None:
        """A line above the bar."""
        self._progress.console.print(text, highlight=False, markup=False)

    def end(self) -> None:
        """Complete the bar and stop drawing."""
        if self._task is not None and self._started:
            self._progress.advance(self._task)
            self._progress.update(self._task, description="done")
        self._progress.stop()
