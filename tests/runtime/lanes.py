"""Test helper: hold a SQLite lane busy, so the calls made meanwhile queue up as one batch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup


async def hold_lane(tg: TaskGroup, run: Callable[[Any], Awaitable[Any]]) -> threading.Event:
    """Start, through ``run`` (``lane.run``, ``SqliteDb.read``...), a call that blocks the lane
    until the returned event is set. Returns once that call is running on the lane thread, so
    every call queued from now on waits behind it and they run as one batch."""
    loop = asyncio.get_running_loop()
    started, release = asyncio.Event(), threading.Event()

    def block(*_: Any) -> None:
        loop.call_soon_threadsafe(started.set)
        release.wait(10)

    tg.start_soon(run, block)
    with anyio.fail_after(5):
        await started.wait()
    return release
