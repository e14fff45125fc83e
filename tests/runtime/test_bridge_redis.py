"""Unit tests of the cross-process StreamBridge (runtime/bridge/redis.py): two
``RedisStreamBridge`` instances on one key prefix are two gateway processes. What every bridge
does is in tests/contract/test_bridge.py; here: the key layout, joins on another process, a
re-executed run, TTLs, trimming, a stream that vanishes mid-run, Redis unreachable.
"""

from __future__ import annotations

import logging
import time
import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import pytest
import redis.asyncio as aioredis

import runtime.bridge.memory as memory_mod
from runtime.bridge.protocol import FROM_START, LIVE, REPLAY, BridgeLimits
from runtime.bridge.redis import RedisStreamBridge
from runtime.types import StreamEvent, StreamGap
from tests.contract.bridges import Consumer, collect, cursor_of, publish_n, within

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]
FAST: dict[str, Any] = {"block_ms": 200, "gone_grace_s": 0.5}


@asynccontextmanager
async def processes(
    redis_prefix: tuple[str, str], n: int = 2, limits: BridgeLimits | None = None,
    **options: Any,
) -> AsyncIterator[list[RedisStreamBridge]]:
    """``n`` bridges on one prefix, each with its flusher running."""
    url, prefix = redis_prefix
    limits = limits or BridgeLimits()
    opts = {**FAST, **options}
    async with (
        RedisStreamBridge.connect(url, limits, key_prefix=prefix, **opts) as a,
        RedisStreamBridge.connect(url, limits, key_prefix=prefix, **opts) as b,
        RedisStreamBridge.connect(url, limits, key_prefix=prefix, **opts) as c,
        anyio.create_task_group() as tg,
    ):
        bridges = [a, b, c][:n]
        for bridge in bridges:
            tg.start_soon(bridge.run)
        yield bridges
        tg.cancel_scope.cancel()


@asynccontextmanager
async def raw(redis_prefix: tuple[str, str]) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_prefix[0])
    try:
        yield client
    finally:
        await client.aclose()


async def test_key_layout_ids_markers_and_fields(redis_prefix: tuple[str, str]) -> None:
    """``<prefix>run:<run_id>``: a start marker, one entry per event with the event's own id
    and fields ``event`` / ``data``, an end marker."""
    async with processes(redis_prefix, 1) as [a], raw(redis_prefix) as r:
        a.open("r")  # on an instance, ``open`` is the StreamBridge method
        published = [a.publish("r", "metadata", b'{"run_id":"r"}'),
                     a.publish("r", "values", b'{"x":1}')]
        a.close("r")
        await a.flush()
        key = redis_prefix[1] + "run:r"
        assert a.key("r") == key
        entries: Any = await r.xrange(key)
        assert [e.id for e in published if e is not None] == [i.decode() for i, _ in entries[1:3]]
        assert entries[0][0].endswith(b"-0") and entries[0][1] == {b"start": b"1"}
        assert entries[1][1] == {b"event": b"metadata", b"data": b'{"run_id":"r"}'}
        assert entries[2][1] == {b"event": b"values", b"data": b'{"x":1}'}
        assert entries[3][1] == {b"end": b"closed"}
        assert len(entries) == 4


async def test_publish_on_a_join_on_b_from_the_start_and_from_an_id(
    redis_prefix: tuple[str, str],
) -> None:
    async with processes(redis_prefix) as [a, b]:
        a.open("r")
        published = publish_n(a, "r", 10)
        await a.flush()
        assert not b.has("r")
        joins = [Consumer(b.subscribe("r", FROM_START)),
                 Consumer(b.subscribe("r", cursor_of(published[3]))),
                 Consumer(b.subscribe("r", REPLAY))]
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for join in joins:
                    tg.start_soon(join.run)
                await joins[0].wait_for(10)
                await joins[1].wait_for(6)
                await joins[2].wait_for(10)
                assert not any(join.done.is_set() for join in joins)  # live, waiting
                published += publish_n(a, "r", 5, "live")
                a.close("r")  # the end marker reaches B: every join ends
                for join in joins:
                    await within(5, join.done)
        assert joins[0].items == published
        assert joins[1].items == published[4:]
        assert joins[2].items == published


async def test_live_join_on_b_gets_only_later_events(redis_prefix: tuple[str, str]) -> None:
    async with processes(redis_prefix) as [a, b]:
        a.open("r")
        before = publish_n(a, "r", 5, "before")
        await a.flush()
        live = Consumer(b.subscribe("r", LIVE))
        later: list[StreamEvent] = []
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(live.run)
                while not live.items:  # B's start is its first read: publish until it sees one
                    later += publish_n(a, "r", 1, "after")
                    await anyio.sleep(0.01)
                a.close("r")
                await within(5, live.done)
        assert live.items and live.items == later[-len(live.items):]
        assert not {e.id for e in before} & {e.id for e in later}


async def test_reopened_run_replaces_its_old_stream(redis_prefix: tuple[str, str]) -> None:
    """A run re-executed after its owner died: the new owner's ``open`` deletes the old
    attempt's stream. A reader that was following the old attempt is cut (StreamAborted, as
    by a restart); its reconnect with its Last-Event-ID replays the new attempt, as does a
    fresh join."""
    async with processes(redis_prefix, 3) as [a, b, c]:
        a.open("r")
        old = publish_n(a, "r", 5, "attempt1")
        await a.flush()
        follower = Consumer(b.subscribe("r", FROM_START))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follower.run)
                await follower.wait_for(5)
                # A dies here (never closes). The takeover comes a lease later: a later ms.
                while True:  # poll: the clock is the subject
                    if time.time_ns() // 1_000_000 > old[-1].ms:
                        break
                    await anyio.sleep(0.001)
                c.open("r")
                new = publish_n(c, "r", 3, "attempt2")
                c.close("r")
                await within(5, follower.done)
        assert follower.items == old
        assert follower.aborted
        await c.flush()
        assert await collect(b, "r", cursor_of(old[-1])) == new
        assert await collect(b, "r", FROM_START) == new


async def test_ttl_rolls_while_live_then_retention_after_the_end(
    redis_prefix: tuple[str, str],
) -> None:
    limits = BridgeLimits(retention_s=30)
    async with processes(redis_prefix, 1, limits, live_ttl_s=300) as [a], raw(redis_prefix) as r:
        a.open("r")
        publish_n(a, "r", 3)
        await a.flush()
        key = a.key("r")
        assert 30_000 < await r.pttl(key) <= 300_000
        a.close("r")
        await a.flush()
        assert 0 < await r.pttl(key) <= 30_000


async def test_live_stream_outlives_its_ttl_while_the_owner_lives_then_expires(
    redis_prefix: tuple[str, str],
) -> None:
    """The owner refreshes the TTL of its open runs every ``live_ttl_s / 4``; a dead owner's
    stream expires ``live_ttl_s`` after its last refresh."""
    url, prefix = redis_prefix
    async with (
        RedisStreamBridge.connect(url, BridgeLimits(), key_prefix=prefix, live_ttl_s=1.0) as a,
        raw(redis_prefix) as r,
    ):
        a.open("r")
        publish_n(a, "r", 1)
        await a.flush()
        key = a.key("r")
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(a.run)
                deadline = time.monotonic() + 2.5  # time is the subject: 2.5 TTLs
                while time.monotonic() < deadline:
                    assert await r.exists(key), "the live stream expired under its owner"
                    await anyio.sleep(0.1)
                tg.cancel_scope.cancel()  # the owner dies
            while True:  # poll until Redis expires it
                if not await r.exists(key):
                    break
                await anyio.sleep(0.05)


async def test_trimmed_stream_gives_b_a_gap(redis_prefix: tuple[str, str]) -> None:
    async with processes(redis_prefix, limits=BridgeLimits(max_events_per_run=10)) as [a, b], \
            raw(redis_prefix) as r:
        a.open("r")
        published = publish_n(a, "r", 40)
        await a.flush()
        assert await r.xlen(a.key("r")) == 10  # trimmed while live, exactly to the local log
        published += publish_n(a, "r", 60, "more")
        a.close("r")
        await a.flush()
        assert await r.xlen(a.key("r")) == 11  # + the end marker
        got = await collect(b, "r", cursor_of(published[4]))
        assert got[0] == StreamGap(published[4].id, published[-10].id, 100 - 10 - 5)
        assert got[1:] == published[-10:]
        assert await collect(b, "r", cursor_of(published[-11])) == published[-10:]


async def test_stream_is_bounded_in_bytes(redis_prefix: tuple[str, str]) -> None:
    limits = BridgeLimits(max_bytes_per_run=1000)
    async with processes(redis_prefix, limits=limits) as [a, b], raw(redis_prefix) as r:
        a.open("r")
        published = [a.publish("r", "custom", b'"' + b"x" * 398 + b'"') for _ in range(10)]
        a.close("r")
        await a.flush()
        kept = [e for e in published if e is not None][-2:]  # 2 x 400 bytes fit in 1000
        entries: Any = await r.xrange(a.key("r"))
        assert sum(len(fields.get(b"data", b"")) for _, fields in entries) == 800
        assert await collect(b, "r", FROM_START) == [StreamGap("-1", kept[0].id, 8), *kept]


async def test_stream_deleted_mid_run_ends_b_and_never_breaks_a(
    redis_prefix: tuple[str, str],
) -> None:
    """Redis holds nothing that cannot be lost: the keys vanish (a flush of our prefix), the
    owner goes on publishing, an idle owner's readers end with a gap within a bound."""
    async with processes(redis_prefix) as [a, b], raw(redis_prefix) as r:
        a.open("r")
        published = publish_n(a, "r", 3)
        await a.flush()
        reader = Consumer(b.subscribe("r", FROM_START))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader.run)
                await reader.wait_for(3)
                await r.delete(a.key("r"))
                took = await within(5, reader.done)  # block_ms 0.2 + gone_grace_s 0.5
        assert took < 3
        assert reader.items == [*published, StreamGap(published[-1].id, None, None)]
        more = publish_n(a, "r", 3, "after")  # never raises; local readers are unaffected
        a.close("r")
        await a.flush()
        assert await collect(a, "r", FROM_START) == published + more


async def test_entries_lost_before_b_read_them_give_a_gap(
    redis_prefix: tuple[str, str],
) -> None:
    """Events that vanished from Redis before B's reader saw them (the keys deleted, then
    the owner went on): B's subscribers get an exact gap, then the rest."""
    url, prefix = redis_prefix
    async with (
        processes(redis_prefix, 1) as [a],
        RedisStreamBridge.connect(url, BridgeLimits(), key_prefix=prefix, **FAST) as b,
        raw(redis_prefix) as r,
    ):
        a.open("r")
        published = publish_n(a, "r", 3)
        await a.flush()
        stream = b.subscribe("r", FROM_START)
        with anyio.fail_after(10):
            # B's reader task is not running yet: the subscription loads what is there
            assert [await stream.__anext__() for _ in range(3)] == published
            lost = publish_n(a, "r", 2, "lost")
            await a.flush()
            await r.delete(a.key("r"))
            after = publish_n(a, "r", 2, "after")  # recreates the stream
            a.close("r")
            await a.flush()
            async with anyio.create_task_group() as tg:
                tg.start_soon(b.run)
                rest = [item async for item in stream]
                tg.cancel_scope.cancel()
        assert rest == [StreamGap(published[-1].id, after[0].id, len(lost)), *after]


async def test_redis_unreachable_publish_and_local_readers_unaffected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    bridge = RedisStreamBridge(client, BridgeLimits(), max_queued=50)
    try:
        with anyio.fail_after(10), caplog.at_level(logging.WARNING, "runtime.bridge.redis"):
            async with anyio.create_task_group() as tg:
                tg.start_soon(bridge.run)
                bridge.open("r")
                started = time.monotonic()
                published = publish_n(bridge, "r", 100)
                assert time.monotonic() - started < 1
                bridge.close("r")
                assert await collect(bridge, "r", FROM_START) == published
                while True:  # poll the log: the flusher has no other signal
                    if "writing stream events to Redis failed" in caplog.text:
                        break
                    await anyio.sleep(0.01)
                assert len(bridge._ops) <= 50  # bounded while Redis is away
                tg.cancel_scope.cancel()
    finally:
        await client.aclose()


async def test_one_reader_connection_serves_every_remote_subscriber(
    redis_prefix: tuple[str, str],
) -> None:
    """B's subscribers to 5 runs x 4 share B's one blocking XREAD: no connection is held per
    subscriber."""
    url, prefix = redis_prefix
    name = "gwtest-" + prefix.split(":")[1]
    async with (
        processes(redis_prefix, 1) as [a],
        RedisStreamBridge.connect(url, BridgeLimits(), key_prefix=prefix, client_name=name,
                               **FAST) as b,
        raw(redis_prefix) as r,
    ):
        runs = [f"r{i}" for i in range(5)]
        for run in runs:
            a.open(run)
            publish_n(a, run, 1)
        await a.flush()
        consumers = [Consumer(b.subscribe(run, FROM_START)) for run in runs for _ in range(4)]
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(b.run)
                for c in consumers:
                    tg.start_soon(c.run)
                for c in consumers:
                    await c.wait_for(1)
                clients: Any = await r.client_list()
                mine = [c for c in clients if c.get("name") == name]
                # one blocked XREAD; the others are the pool's, for the loads and pipelines
                assert sum(c["cmd"] == "xread" for c in mine) == 1, mine
                assert len(mine) <= len(runs) + 1 < len(consumers)
                published = {run: publish_n(a, run, 3, "live") for run in runs}
                for run in runs:
                    a.close(run)
                for c in consumers:
                    await within(5, c.done)
                tg.cancel_scope.cancel()
        for i, c in enumerate(consumers):
            assert c.items[1:] == published[runs[i // 4]]


async def test_a_new_subscription_is_served_at_once_while_the_reader_blocks(
    redis_prefix: tuple[str, str],
) -> None:
    """The reader blocks on the streams it watches; a subscription to another run unblocks it
    (CLIENT UNBLOCK) instead of waiting for the block to time out."""
    async with processes(redis_prefix, 2, block_ms=20_000) as [a, b]:
        for run in ("x", "y"):
            a.open(run)
            publish_n(a, run, 1)
        await a.flush()
        first = Consumer(b.subscribe("x", FROM_START))
        second = Consumer(b.subscribe("y", FROM_START))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(first.run)
                await first.wait_for(1)
                tg.start_soon(second.run)
                await second.wait_for(1)
                for _ in range(3):  # the reader blocks on x, then on x and y
                    started = time.monotonic()
                    publish_n(a, "y", 1)
                    await second.wait_for(len(second.items) + 1, timeout_s=5)
                    assert time.monotonic() - started < 2
                for run in ("x", "y"):
                    a.close(run)
                await within(5, first.done)
                await within(5, second.done)


async def test_announced_run_is_joinable_before_any_process_executes_it(
    redis_prefix: tuple[str, str],
) -> None:
    """Admission on A (``announce``), a join on A and on B wait; C claims and executes the run
    (``open`` replaces the stream): both joins get every event and end, none is cut."""
    async with processes(redis_prefix, 3) as [a, b, c]:
        assert await a.announce("r")
        assert not a.has("r")
        joins = [Consumer(a.subscribe("r", FROM_START)), Consumer(b.subscribe("r", FROM_START))]
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for join in joins:
                    tg.start_soon(join.run)
                await anyio.sleep(0.3)  # the joins are waiting, not ended
                assert not any(join.done.is_set() for join in joins)
                c.open("r")
                published = publish_n(c, "r", 5)
                c.close("r")
                for join in joins:
                    await within(5, join.done)
        assert [join.items for join in joins] == [published, published]
        assert not any(join.aborted for join in joins)
        assert await a.announce("r")  # too late: the stream exists and is left alone
        assert await collect(b, "r", FROM_START) == published


class RedisProxy:
    """A TCP proxy to Redis that the test can cut (every connection) and restore: Redis
    restarting, as far as a client can tell."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._scope: anyio.CancelScope | None = None

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1",
                                                   local_port=self.port)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        with anyio.CancelScope() as self._scope:
            async with listener:
                task_status.started()
                await listener.serve(self._pipe)

    def cut(self) -> None:
        assert self._scope is not None
        self._scope.cancel()

    async def _pipe(self, client: anyio.abc.SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", self.target_port) as server:
            async def copy(src: anyio.abc.SocketStream, dst: anyio.abc.SocketStream) -> None:
                try:
                    async for chunk in src:
                        await dst.send(chunk)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
                finally:
                    tg.cancel_scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(copy, client, server)
                tg.start_soon(copy, server, client)


async def test_redis_gone_mid_run_ends_remote_readers_and_spares_the_owner(
    redis_prefix: tuple[str, str], caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis stops answering (every connection cut, none accepted) while A runs and B's
    subscribers follow: B's subscribers end with a gap within a bound, A publishes on and
    its local subscribers get everything; when Redis is back, A's queued events reach it."""
    url, prefix = redis_prefix
    proxy = RedisProxy(urlsplit(url).port or 6379)
    caplog.set_level(logging.ERROR, "runtime.bridge.redis")
    with anyio.fail_after(20):
        async with anyio.create_task_group() as outer:
            await outer.start(proxy.serve)
            via = f"redis://127.0.0.1:{proxy.port}/0"
            async with (
                RedisStreamBridge.connect(via, BridgeLimits(), key_prefix=prefix, **FAST) as a,
                RedisStreamBridge.connect(via, BridgeLimits(), key_prefix=prefix, **FAST) as b,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(a.run)
                tg.start_soon(b.run)
                a.open("r")
                published = publish_n(a, "r", 3)
                await a.flush()
                remote = Consumer(b.subscribe("r", FROM_START))
                local = Consumer(a.subscribe("r", FROM_START))
                tg.start_soon(remote.run)
                tg.start_soon(local.run)
                await remote.wait_for(3)
                proxy.cut()
                took = await within(5, remote.done)  # block 0.2 s + gone_grace 0.5 s
                assert took < 4
                published += publish_n(a, "r", 3, "after")  # never raises
                a.close("r")
                await within(5, local.done)
                # Redis is back (it kept its data): A's flusher retries what it queued, so a
                # join on B gets the whole run
                await outer.start(proxy.serve)
                with anyio.fail_after(10):
                    while True:  # poll: the flusher retries on its own backoff
                        got = await collect(b, "r", FROM_START)
                        if got == published:
                            break
                        await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
            outer.cancel_scope.cancel()
    assert remote.items == [*published[:3], StreamGap(published[2].id, None, None)]
    assert local.items == published


async def test_a_batch_sent_twice_adds_nothing_twice(redis_prefix: tuple[str, str]) -> None:
    """A batch whose reply was lost is sent again: Redis refuses the ids it already has."""
    async with processes(redis_prefix) as [a, b], raw(redis_prefix) as r:
        a.open("r")
        published = publish_n(a, "r", 5)
        await a.flush()
        a._ops[:0] = [("add", "r", event) for event in published]  # the retry of that batch
        published += publish_n(a, "r", 2, "more")
        a.close("r")
        await a.flush()
        assert await r.xlen(a.key("r")) == 1 + 7 + 1  # start, events, end
        assert await collect(b, "r", FROM_START) == published


async def test_discard_on_any_process_forgets_the_stream(redis_prefix: tuple[str, str]) -> None:
    """A finished run deleted through B (which never held it): joins anywhere get nothing."""
    async with processes(redis_prefix, 3) as [a, b, c]:
        a.open("r")
        publish_n(a, "r", 3)
        a.close("r")
        await a.flush()
        assert len(await collect(c, "r", FROM_START)) == 3
        b.discard("r")
        await b.flush()
        assert await collect(c, "r", FROM_START) == []
        assert await collect(b, "r", REPLAY) == []


async def test_remote_subscribers_share_one_replica_dropped_with_the_last(
    redis_prefix: tuple[str, str],
) -> None:
    async with processes(redis_prefix) as [a, b]:
        a.open("r")
        publish_n(a, "r", 3)
        await a.flush()
        consumers = [Consumer(b.subscribe("r", FROM_START)) for _ in range(10)]
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for c in consumers:
                    tg.start_soon(c.run)
                for c in consumers:
                    await c.wait_for(3)
                assert list(b._replicas) == ["r"] and b._replicas["r"].users == 10
                tg.cancel_scope.cancel()  # every client disconnects
        assert b._replicas == {}
        a.close("r")


async def test_end_stream_of_a_dead_owners_run_ends_its_readers(
    redis_prefix: tuple[str, str],
) -> None:
    """A dies mid-run (no end marker); the sweeper on C ends the stream: B's readers end, a
    later join replays and ends; a missing stream stays missing."""
    async with processes(redis_prefix, 3) as [a, b, c], raw(redis_prefix) as r:
        a.open("r")
        published = publish_n(a, "r", 3)
        await a.flush()
        reader = Consumer(b.subscribe("r", FROM_START))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader.run)
                await reader.wait_for(3)
                await c.end_stream("r")
                await within(5, reader.done)
        assert reader.items == published and not reader.aborted
        assert await collect(b, "r", FROM_START) == published
        assert 0 < await r.pttl(c.key("r")) <= 120_000
        await c.end_stream("gone")
        assert not await r.exists(c.key("gone"))


async def test_a_join_of_an_aborted_run_follows_its_next_attempt(
    redis_prefix: tuple[str, str],
) -> None:
    """A shutdown cut the run on A (abort) and handed it back: a join on B (the client's
    reconnect) waits for C's attempt and follows it; with no next attempt it replays the
    aborted one and raises StreamAborted after ``gone_grace_s``."""
    async with processes(redis_prefix, 3) as [a, b, c]:
        a.open("r")
        old = publish_n(a, "r", 3, "attempt1")
        a.abort("r")
        a.open("s")
        cut = publish_n(a, "s", 2)
        a.abort("s")
        await a.flush()
        rejoin = Consumer(b.subscribe("r", cursor_of(old[-1])))
        alone = Consumer(b.subscribe("s", FROM_START))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(rejoin.run)
                tg.start_soon(alone.run)
                await c.prepare_open("r")
                c.open("r")
                new = publish_n(c, "r", 2, "attempt2")
                c.close("r")
                await within(5, rejoin.done)
                took = await within(5, alone.done)
        assert rejoin.items == new and not rejoin.aborted
        assert alone.items == cut and alone.aborted
        assert took < 2


@pytest.mark.parametrize("prepared", [True, False])
async def test_a_new_owner_with_a_clock_behind(
    redis_prefix: tuple[str, str], monkeypatch: pytest.MonkeyPatch, prepared: bool,
) -> None:
    """C takes the run over with a clock 50 ms behind A's: B's follower of A's attempt is cut
    (the stream was replaced below its position) within a bound; with ``prepare_open`` the
    reconnect with its Last-Event-ID replays C's whole attempt."""
    async with processes(redis_prefix, 3) as [a, b, c]:
        a.open("r")
        old = publish_n(a, "r", 3, "attempt1")
        await a.flush()
        follower = Consumer(b.subscribe("r", FROM_START))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follower.run)
                await follower.wait_for(3)
                behind = types.SimpleNamespace(time_ns=lambda: time.time_ns() - 50_000_000)
                monkeypatch.setattr(memory_mod, "time", behind)  # A dies; C's clock is late
                c._last_ms = 0
                if prepared:
                    await c.prepare_open("r")
                c.open("r")
                new = publish_n(c, "r", 3, "attempt2")
                c.close("r")
                took = await within(5, follower.done)
        assert follower.items == old and follower.aborted
        assert took < 3
        await c.flush()
        assert await collect(b, "r", FROM_START) == new
        if prepared:
            assert new[0].ms > old[-1].ms
            assert await collect(b, "r", cursor_of(old[-1])) == new


async def test_events_still_reach_redis_after_its_scripts_were_flushed(
    redis_prefix: tuple[str, str],
) -> None:
    """Batches send the append script with EVAL (no SCRIPT EXISTS round trip per batch, as a
    pipeline of Script objects costs), so a Redis that lost its scripts (restarted, SCRIPT
    FLUSH) takes the next batch as it is: nothing lost, nothing doubled."""
    async with processes(redis_prefix, 1) as [a], raw(redis_prefix) as r:
        a.open("r")
        published = publish_n(a, "r", 3)
        await a.flush()
        await r.script_flush()
        published += publish_n(a, "r", 3, "after")
        a.close("r")
        key = a.key("r")
        with anyio.fail_after(10):
            while True:
                entries: Any = await r.xrange(key)
                if entries and entries[-1][1] == {b"end": b"closed"}:
                    break
                await anyio.sleep(0.05)
        ids = [i.decode() for i, fields in entries if b"event" in fields]
        assert ids == [e.id for e in published]
