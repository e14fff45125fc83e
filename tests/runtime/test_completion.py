"""Completion (runtime/completion.py): the one-shot signal a live run's waiters share."""

from __future__ import annotations

import anyio
import pytest

from runtime.completion import Completion

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


async def test_set_wakes_every_waiter_and_runs_callbacks_once() -> None:
    done = Completion()
    calls: list[str] = []
    done.add_done_callback(lambda: calls.append("a"))
    woken: list[int] = []

    async def waiter(i: int) -> None:
        await done.wait()
        woken.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(waiter, i)
        await anyio.sleep(0.01)
        assert not done.is_set() and woken == []
        done.set()
        done.set()
    assert sorted(woken) == [0, 1, 2]
    assert calls == ["a"]
    done.add_done_callback(lambda: calls.append("late"))  # already done: runs at once
    assert calls == ["a", "late"]
    await done.wait()  # returns at once


async def test_a_cancelled_waiter_leaves_the_others_and_no_callback_behind() -> None:
    done = Completion()
    woken: list[str] = []

    async def waiter(name: str) -> None:
        await done.wait()
        woken.append(name)

    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as scope:
            tg.start_soon(waiter, "stays")
            async with anyio.create_task_group() as inner:
                inner.start_soon(waiter, "cancelled")
                await anyio.sleep(0.01)
                inner.cancel_scope.cancel()
        assert not scope.cancel_called
        assert len(done._callbacks) == 1  # only the waiter that stays
        done.set()
    assert woken == ["stays"]


async def test_a_removed_callback_does_not_run() -> None:
    done = Completion()
    calls: list[int] = []

    def callback() -> None:
        calls.append(1)

    done.add_done_callback(callback)
    done.remove_done_callback(callback)
    done.remove_done_callback(callback)  # twice: no error
    done.set()
    assert calls == []
