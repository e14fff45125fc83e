"""Harness of the bridge contract suite (tests/contract/test_bridge.py): one ``Bridges`` per
implementation of ``runtime.bridge.protocol.StreamBridge``.

A ``Bridges`` has a ``writer`` (the process that executes the run: ``open``, ``publish``,
``close``...) and a ``reader`` (where subscriptions are made). For ``memory``, ``sqlite`` and
``redis-local`` they are the same object; for ``redis`` they are two ``RedisStreamBridge``
instances on one key prefix (two processes), so every contract test also checks the
cross-process path. ``settle()`` waits until what the writer queued for its store is written
(a no-op in memory), the only difference a test needs to know about.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from runtime.bridge.memory import MemoryStreamBridge
from runtime.bridge.protocol import FROM_START, BridgeLimits, Cursor, StreamAborted
from runtime.bridge.redis import RedisStreamBridge
from runtime.bridge.sqlite import SqliteStreamBridge
from runtime.types import StreamEvent, StreamGap

KINDS = ["memory", "sqlite", "redis", "redis-local"]
Item = StreamEvent | StreamGap
# short waits so that a vanished Redis stream ends its readers fast in tests
REDIS_OPTIONS: dict[str, Any] = {"block_ms": 200, "gone_grace_s": 0.5}


@dataclass
class Bridges:
    kind: str
    writer: MemoryStreamBridge
    reader: MemoryStreamBridge

    async def settle(self) -> None:
        """Wait until the writer's queued events reached its store."""
        if isinstance(self.writer, SqliteStreamBridge | RedisStreamBridge):
            await self.writer.flush()
        await anyio.lowlevel.checkpoint()


MakeBridges = Callable[..., AbstractAsyncContextManager[Bridges]]


def bridges_factory(
    kind: str, tmp_path: Path, redis: tuple[str, str] | None = None
) -> MakeBridges:
    """``make(limits=None)``: an async context manager yielding ``Bridges`` of ``kind``."""

    @asynccontextmanager
    async def make(limits: BridgeLimits | None = None) -> AsyncIterator[Bridges]:
        limits = limits or BridgeLimits()
        if kind == "memory":
            memory = MemoryStreamBridge(limits)
            yield Bridges(kind, memory, memory)
        elif kind == "sqlite":
            lite = await SqliteStreamBridge.connect(tmp_path / "events.sqlite", limits)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(lite.run_flusher)
                    yield Bridges(kind, lite, lite)
                    tg.cancel_scope.cancel()
            finally:
                await lite.aclose()
        else:
            assert redis is not None
            url, prefix = redis
            async with (
                RedisStreamBridge.connect(url, limits, key_prefix=prefix, **REDIS_OPTIONS) as a,
                RedisStreamBridge.connect(url, limits, key_prefix=prefix, **REDIS_OPTIONS) as b,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(a.run)
                tg.start_soon(b.run)
                yield Bridges(kind, a, b if kind == "redis" else a)
                tg.cancel_scope.cancel()

    return make


def publish_n(
    bridge: MemoryStreamBridge, run_id: str, n: int, prefix: str = "e"
) -> list[StreamEvent]:
    out = []
    for i in range(n):
        event = bridge.publish(run_id, "custom", f'{{"{prefix}":{i}}}'.encode())
        assert event is not None
        out.append(event)
    return out


def cursor_of(event: StreamEvent) -> tuple[int, int]:
    return (event.ms, event.seq)


async def collect(
    bridge: MemoryStreamBridge, run_id: str, cursor: Cursor = FROM_START, timeout_s: float = 5
) -> list[Item]:
    with anyio.fail_after(timeout_s):
        return [item async for item in bridge.subscribe(run_id, cursor)]


class Consumer:
    """A subscription driven from a task; records what it got and how it ended."""

    def __init__(self, stream: AsyncIterator[Item]) -> None:
        self.stream = stream
        self.items: list[Item] = []
        self.done = anyio.Event()
        self.aborted = False
        self._arrived = anyio.Event()

    async def run(self) -> None:
        try:
            async for item in self.stream:
                self.items.append(item)
                self._arrived.set()
                self._arrived = anyio.Event()
        except StreamAborted:
            self.aborted = True
        finally:
            self.done.set()
            self._arrived.set()

    async def wait_for(self, n: int, timeout_s: float = 5) -> None:
        """Wait until ``n`` items arrived."""
        with anyio.fail_after(timeout_s):
            while len(self.items) < n:
                assert not self.done.is_set(), f"ended after {len(self.items)} items"
                await self._arrived.wait()


def assert_gaps_then_tail(items: list[Item], published: list[StreamEvent]) -> list[StreamEvent]:
    """``items`` (what a reader got after event 0 of ``published``, or from the start) are
    gaps and events of ``published`` in order, with every skipped event counted by the gap
    just before the jump, ending with the newest event; the events delivered."""
    assert items and isinstance(items[0], StreamGap), items[:2]
    seqs = {e.seq: i for i, e in enumerate(published)}
    events: list[StreamEvent] = []
    pending: StreamGap | None = None
    for item in items:
        if isinstance(item, StreamGap):
            assert pending is None, "two gaps in a row"
            pending = item
            continue
        assert item.seq in seqs and published[seqs[item.seq]] == item
        expected = events[-1].seq + 1 if events else None
        if pending is not None:
            assert pending.first_id == item.id
            if expected is not None:
                assert pending.dropped == item.seq - expected
            pending = None
        else:
            assert expected is None or item.seq == expected, (expected, item)
        events.append(item)
    assert pending is None and events and events[-1] == published[-1]
    return events


async def within(seconds: float, done: anyio.Event) -> float:
    """Wait for ``done`` at most ``seconds``; the time it took."""
    started = time.monotonic()
    with anyio.fail_after(seconds):
        await done.wait()
    return time.monotonic() - started
