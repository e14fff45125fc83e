"""Contract suite of ``runtime.control.protocol.ControlChannel``: one set of tests, every
implementation (``local``; ``redis``, where the publisher and the receiver are two channels
on one key prefix, i.e. two processes; ``pg_notify``, two channels on one fresh database;
``split``, cancels on Redis and wake-ups on PostgreSQL, the scale-out composition).

What every channel must do (protocol.py delivery rules): a cancel reaches every process's
handlers (the publisher's synchronously), wake-ups wake a waiter promptly, they are a level
(kept while nobody waits, coalesced), ``wait_wake`` times out when nothing happens, a failing
handler breaks nothing, ``run`` stops when cancelled.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

from runtime.control.local import LocalControlChannel
from runtime.control.pg_notify import PgNotifyControlChannel
from runtime.control.protocol import ControlChannel
from runtime.control.redis import RedisControlChannel
from runtime.control.split import SplitControlChannel
from runtime.types import CancelAction

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

KINDS = ["local", "redis", "pg_notify", "split"]
WAKE_LATENCY_S = 0.1  # the bound asked of a wake-up crossing processes on this machine

MakePair = Callable[[], AbstractAsyncContextManager[tuple[ControlChannel, ControlChannel]]]


async def _started(tg: Any, channel: Any) -> None:
    tg.start_soon(channel.run)
    if isinstance(channel, RedisControlChannel | PgNotifyControlChannel):
        assert await channel.wait_connected(5), "the channel did not subscribe"


@pytest.fixture(params=KINDS)
def make_pair(request: pytest.FixtureRequest) -> MakePair:
    """``(publisher, receiver)``: two processes' channels (the same one for ``local``), with
    ``run`` started and connected."""
    kind: str = request.param
    redis = request.getfixturevalue("redis_prefix") if kind in ("redis", "split") else None
    pg_url = request.getfixturevalue("pg_url") if kind in ("pg_notify", "split") else None

    @asynccontextmanager
    async def make() -> AsyncIterator[tuple[ControlChannel, ControlChannel]]:
        async with AsyncExitStack() as stack:
            tg = await stack.enter_async_context(anyio.create_task_group())
            if kind == "split":
                assert pg_url is not None and redis is not None
                split = []
                for name in "ab":
                    cancels = await stack.enter_async_context(RedisControlChannel.connect(
                        redis[0], key_prefix=redis[1], client_name=f"{redis[1]}{name}"))
                    wakes = await stack.enter_async_context(
                        PgNotifyControlChannel.connect(pg_url))
                    split.append(SplitControlChannel(cancels, wakes))
                    tg.start_soon(split[-1].run)
                    for part in (cancels, wakes):
                        assert await part.wait_connected(5)
                stack.callback(tg.cancel_scope.cancel)
                yield split[0], split[1]
                return
            if pg_url is not None:
                pa = await stack.enter_async_context(PgNotifyControlChannel.connect(pg_url))
                pb = await stack.enter_async_context(PgNotifyControlChannel.connect(pg_url))
                await _started(tg, pa)
                await _started(tg, pb)
                stack.callback(tg.cancel_scope.cancel)
                yield pa, pb
                return
            if redis is None:  # local
                local = LocalControlChannel()
                await _started(tg, local)
                stack.callback(tg.cancel_scope.cancel)
                yield local, local
                return
            assert redis is not None
            url, prefix = redis
            a = await stack.enter_async_context(
                RedisControlChannel.connect(url, key_prefix=prefix, client_name=f"{prefix}a"))
            b = await stack.enter_async_context(
                RedisControlChannel.connect(url, key_prefix=prefix, client_name=f"{prefix}b"))
            await _started(tg, a)
            await _started(tg, b)
            stack.callback(tg.cancel_scope.cancel)  # first thing on exit: stop the loops
            yield a, b

    return make


class Recorder:
    """A cancel handler that records ``(run_id, action)`` and can be awaited."""

    def __init__(self) -> None:
        self.got: list[tuple[str, CancelAction]] = []
        self._changed = anyio.Event()

    def __call__(self, run_id: str, action: CancelAction) -> None:
        self.got.append((run_id, action))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, n: int, timeout_s: float = 2) -> None:
        with anyio.fail_after(timeout_s):
            while len(self.got) < n:
                await self._changed.wait()


async def test_a_cancel_reaches_the_receiver_and_the_publisher(make_pair: MakePair) -> None:
    async with make_pair() as (pub, sub):
        mine, theirs = Recorder(), Recorder()
        pub.on_cancel(mine)
        sub.on_cancel(theirs)  # (the same channel for local: both get each cancel)
        await pub.publish_cancel("run-1", CancelAction.ROLLBACK)
        # the publisher's own handlers ran before publish_cancel returned
        assert mine.got == [("run-1", CancelAction.ROLLBACK)]
        await theirs.wait_for(1)
        await pub.publish_cancel("run-2", CancelAction.INTERRUPT)
        await theirs.wait_for(2)
        await anyio.sleep(0.1)  # nothing more comes: no echo, no duplicate
        expected = [("run-1", CancelAction.ROLLBACK), ("run-2", CancelAction.INTERRUPT)]
        assert theirs.got == expected
        assert mine.got == expected


async def test_a_failing_handler_breaks_nothing(make_pair: MakePair) -> None:
    async with make_pair() as (pub, sub):
        rec = Recorder()

        def boom(run_id: str, action: CancelAction) -> None:
            raise RuntimeError("handler bug")

        sub.on_cancel(boom)
        sub.on_cancel(rec)
        await pub.publish_cancel("run-1", CancelAction.INTERRUPT)  # does not raise
        await pub.publish_cancel("run-2", CancelAction.INTERRUPT)
        await rec.wait_for(2)
        assert [r for r, _ in rec.got] == ["run-1", "run-2"]


async def test_an_unregistered_handler_gets_nothing(make_pair: MakePair) -> None:
    async with make_pair() as (pub, sub):
        gone, kept = Recorder(), Recorder()
        remove = sub.on_cancel(gone)
        sub.on_cancel(kept)
        remove()
        remove()  # idempotent
        await pub.publish_cancel("run-1", CancelAction.INTERRUPT)
        await kept.wait_for(1)
        assert gone.got == []


async def test_a_wake_up_wakes_a_waiter_promptly(make_pair: MakePair) -> None:
    async with make_pair() as (pub, sub):
        latencies: list[float] = []
        for _ in range(20):
            woken_at: list[float] = []

            async def waiter(woken_at: list[float]) -> None:
                assert await sub.wait_wake(5)
                woken_at.append(time.perf_counter())

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter, woken_at)
                await anyio.sleep(0.01)  # the waiter is waiting
                sent_at = time.perf_counter()
                await pub.publish_wake()
            latencies.append(woken_at[0] - sent_at)
        latencies.sort()
        print(f"wake latency: median {latencies[10] * 1000:.2f} ms, "
              f"p90 {latencies[18] * 1000:.2f} ms, max {latencies[-1] * 1000:.2f} ms")
        assert latencies[10] < WAKE_LATENCY_S / 10
        assert latencies[18] < WAKE_LATENCY_S  # (the max is one sample: a busy machine)


async def test_the_publisher_wakes_itself_at_once(make_pair: MakePair) -> None:
    async with make_pair() as (pub, _sub):
        await pub.publish_wake()
        started = time.monotonic()
        assert await pub.wait_wake(0)  # set before publish_wake returned
        assert time.monotonic() - started < 0.01


async def test_wait_wake_times_out_when_nothing_happens(make_pair: MakePair) -> None:
    async with make_pair() as (_pub, sub):
        started = time.monotonic()
        assert await sub.wait_wake(0.2) is False
        assert 0.19 <= time.monotonic() - started < 1.0
        assert await sub.wait_wake(0) is False


async def test_a_wake_up_while_nobody_waits_is_kept(make_pair: MakePair) -> None:
    async with make_pair() as (pub, sub):
        await pub.publish_wake()
        await anyio.sleep(0.2)  # delivered; nobody was waiting
        started = time.monotonic()
        assert await sub.wait_wake(5)
        assert time.monotonic() - started < 0.05
        assert await sub.wait_wake(0.1) is False  # consumed


async def test_many_wake_ups_coalesce(make_pair: MakePair) -> None:
    async with make_pair() as (pub, sub):
        for _ in range(1000):
            await pub.publish_wake()
        await anyio.sleep(0.3)  # every one delivered
        assert await sub.wait_wake(1)
        assert await sub.wait_wake(0.2) is False  # one claim round, not a thousand


async def test_every_waiter_is_woken(make_pair: MakePair) -> None:
    async with make_pair() as (pub, sub):
        woken: list[bool] = []

        async def waiter() -> None:
            woken.append(await sub.wait_wake(5))

        with anyio.fail_after(2):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(waiter)
                await anyio.sleep(0.02)
                await pub.publish_wake()
        assert woken == [True, True, True]


async def test_a_cancelled_wait_keeps_the_flag(make_pair: MakePair) -> None:
    async with make_pair() as (pub, sub):
        with anyio.move_on_after(0.05):
            await sub.wait_wake(5)
        await pub.publish_wake()
        assert await sub.wait_wake(2)


async def test_run_stops_when_cancelled(make_pair: MakePair) -> None:
    with anyio.fail_after(5):
        async with make_pair() as (pub, _sub):
            await pub.publish_wake()
        # leaving cancelled the task group that runs both channels: they stopped
