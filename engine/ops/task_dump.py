"""Every asyncio task's stack, written to stderr: what a stuck worker is waiting on.

``segflow worker`` writes it on SIGUSR1 (``kill -USR1 <pid>``). mode's own SIGUSR1 handler
prints the tasks' local variables too, and a ``repr`` of some aiokafka objects raises while a
fetch is in flight, which crashed the worker: this one prints each awaited frame's file, line
and code only.
"""

from __future__ import annotations

import asyncio
import linecache
import sys
from collections.abc import Iterator
from types import FrameType
from typing import IO, Any

MAX_DEPTH = 60


def awaited_frames(coro: Any) -> Iterator[FrameType]:
    """The frames of ``coro`` and of what it awaits, outermost first (coroutines, generators)."""
    for _ in range(MAX_DEPTH):
        if coro is None:
            return
        frame = (
            getattr(coro, "cr_frame", None)
            or getattr(coro, "gi_frame", None)
            or getattr(coro, "ag_frame", None)
        )
        if frame is not None:
            yield frame
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )


def task_stacks(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """The awaited stack of every pending task of ``loop`` (default: the running one), as text."""
    tasks = sorted(asyncio.all_tasks(loop), key=lambda task: task.get_name())
    lines = [f"segflow: {len(tasks)} asyncio tasks"]
    for task in tasks:
        lines.append(f"--- task {task.get_name()}")
        for frame in awaited_frames(task.get_coro()):
            code = frame.f_code
            source = linecache.getline(code.co_filename, frame.f_lineno).strip()
            lines.append(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}')
            lines.append(f"    {source}")
    return "\n".join(lines) + "\n"


def dump_task_stacks(file: IO[str] | None = None) -> None:
    """Write :func:`task_stacks` of the running loop to ``file`` (default stderr) and flush."""
    target = file or sys.stderr
    target.write(task_stacks())
    target.flush()
