"""The worker's SIGUSR1 task dump shows what each task awaits, down to the innermost frame."""

from __future__ import annotations

import asyncio
import io

from engine.ops.task_dump import dump_task_stacks, task_stacks


async def _inner_wait(gate: asyncio.Event) -> None:
    await gate.wait()


async def _outer_wait(gate: asyncio.Event) -> None:
    await _inner_wait(gate)


def test_a_waiting_task_shows_its_awaited_frames_outermost_first() -> None:
    async def scenario() -> str:
        gate = asyncio.Event()
        task = asyncio.create_task(_outer_wait(gate), name="waiter")
        await asyncio.sleep(0)
        text = task_stacks()
        gate.set()
        await task
        return text

    text = asyncio.run(scenario())
    block = text.split("--- task waiter\n", 1)[1].split("--- task", 1)[0]
    assert block.index("in _outer_wait") < block.index("in _inner_wait")
    assert "await gate.wait()" in block
    assert "segflow: 2 asyncio tasks" in text  # the waiter and the scenario itself


def test_the_dump_goes_to_the_given_file() -> None:
    async def scenario() -> str:
        out = io.StringIO()
        dump_task_stacks(out)
        return out.getvalue()

    text = asyncio.run(scenario())
    assert text.startswith("segflow: 1 asyncio tasks\n--- task ")
    assert "in scenario" in text
