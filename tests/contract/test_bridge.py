"""Contract suite of ``runtime.bridge.protocol.StreamBridge``: one set of tests, every
implementation (``memory``, ``sqlite``, ``redis`` read from a second process, ``redis-local``).

What every bridge must do (protocol.py invariants; design.md 4.4, 4.5): ids unique and
increasing, identical streams for concurrent subscribers, a gap (never a blocked producer) for a
slow one, resume at the edge of the log, ``-1`` replay, the terminal ``error`` rules, the end of
a stream (close, abort, discard). Harness: tests/contract/bridges.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from runtime.bridge.protocol import FROM_START, LIVE, REPLAY, BridgeLimits, parse_last_event_id
from runtime.types import StreamEvent, StreamGap
from tests.contract.bridges import (
    KINDS,
    Consumer,
    MakeBridges,
    assert_gaps_then_tail,
    bridges_factory,
    collect,
    cursor_of,
    publish_n,
    within,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@pytest.fixture(params=KINDS)
def make(request: pytest.FixtureRequest, tmp_path: Path) -> MakeBridges:
    kind: str = request.param
    redis = request.getfixturevalue("redis_prefix") if kind.startswith("redis") else None
    return bridges_factory(kind, tmp_path, redis)


async def test_ids_unique_and_strictly_increasing(make: MakeBridges) -> None:
    async with make() as b:
        b.writer.open("a")
        b.writer.open("b")
        runs: dict[str, list[StreamEvent]] = {"a": [], "b": []}
        for i in range(300):
            run = "a" if i % 3 else "b"
            event = b.writer.publish(run, "values", f'{{"i":{i}}}'.encode())
            assert event is not None
            runs[run].append(event)
        for run, mine in runs.items():
            keys = [cursor_of(e) for e in mine]
            assert len({e.id for e in mine}) == len(mine)
            assert all(x < y for x, y in zip(keys, keys[1:], strict=False))
            assert [e.seq for e in mine] == list(range(1, len(mine) + 1))
            assert all(parse_last_event_id(e.id) == cursor_of(e) for e in mine)
            b.writer.close(run)
        await b.settle()
        for run, mine in runs.items():
            assert await collect(b.reader, run) == mine


async def test_two_concurrent_subscribers_get_identical_streams(make: MakeBridges) -> None:
    async with make() as b:
        b.writer.open("r")
        published = publish_n(b.writer, "r", 3, "early")
        await b.settle()
        one = Consumer(b.reader.subscribe("r", FROM_START))
        two = Consumer(b.reader.subscribe("r", FROM_START))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(one.run)
                tg.start_soon(two.run)
                await one.wait_for(3)
                await two.wait_for(3)
                for i in range(200):
                    event = b.writer.publish("r", "values", f'{{"i":{i}}}'.encode())
                    assert event is not None
                    published.append(event)
                    if i % 7 == 0:
                        await anyio.lowlevel.checkpoint()  # let readers and the flusher run
                b.writer.close("r")
        assert one.items == published
        assert two.items == published


async def test_slow_subscriber_gets_a_gap_and_never_blocks_the_producer(
    make: MakeBridges,
) -> None:
    async with make(BridgeLimits(max_events_per_run=50)) as b:
        b.writer.open("r")
        first = b.writer.publish("r", "metadata", b"{}")
        assert first is not None
        await b.settle()
        stream = b.reader.subscribe("r", FROM_START)
        with anyio.fail_after(10):
            assert await stream.__anext__() == first  # the reader has seen event 1, then pauses
            started = time.monotonic()
            published = publish_n(b.writer, "r", 2000)  # sync: cannot wait on the reader
            assert time.monotonic() - started < 2.0
            b.writer.close("r")
            await b.settle()
            rest = [item async for item in stream]
        # a gap (more than one if the reader's own copy moved on while it read: a remote
        # replica), every drop counted, and the newest events
        got = assert_gaps_then_tail(rest, [first, *published])
        assert isinstance(rest[0], StreamGap) and rest[0].requested_id == first.id
        assert rest[0].dropped == got[0].seq - 2
        tail = published[-50:]  # what is retained at the end
        assert got[-len(tail):] == tail
        fresh = await collect(b.reader, "r", FROM_START)
        assert fresh == [StreamGap("-1", tail[0].id, 1 + len(published) - len(tail)), *tail]


async def test_resume_at_the_edge_of_the_log(make: MakeBridges) -> None:
    async with make(BridgeLimits(max_events_per_run=10)) as b:
        b.writer.open("r")
        published = publish_n(b.writer, "r", 100)
        b.writer.close("r")
        await b.settle()
        replay = await collect(b.reader, "r", FROM_START)
        assert isinstance(replay[0], StreamGap)
        retained = [e for e in replay if isinstance(e, StreamEvent)]
        assert retained == published[-10:]
        first_index = published.index(retained[0])
        # from the last id: nothing repeated
        assert await collect(b.reader, "r", cursor_of(published[-1])) == []
        # from the first retained id: exactly the rest
        assert await collect(b.reader, "r", cursor_of(published[first_index])) == retained[1:]
        # from the newest dropped id: every later event is retained, so no gap
        assert await collect(b.reader, "r", cursor_of(published[first_index - 1])) == retained
        # from an older dropped id: a gap counting exactly the events lost after it
        got = await collect(b.reader, "r", cursor_of(published[3]))
        assert got[0] == StreamGap(published[3].id, retained[0].id, first_index - 4)
        assert got[1:] == retained


async def test_replay_minus_one_replays_from_the_start(make: MakeBridges) -> None:
    async with make() as b:
        b.writer.open("r")
        published = publish_n(b.writer, "r", 5)
        await b.settle()
        live = Consumer(b.reader.subscribe("r", REPLAY))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(live.run)
                await live.wait_for(5)
                published += publish_n(b.writer, "r", 3, "later")
                b.writer.close("r")
        assert live.items == published
        await b.settle()
        assert await collect(b.reader, "r", parse_last_event_id("-1")) == published


async def test_error_rules(make: MakeBridges) -> None:
    """FROM_START and ``(ms, seq)`` get a logged ``error``; REPLAY withholds it."""
    async with make() as b:
        b.writer.open("r")
        meta = b.writer.publish("r", "metadata", b'{"run_id":"r"}')
        values = b.writer.publish("r", "values", b'{"x":1}')
        error = b.writer.publish("r", "error", b'{"error":"ValueError","message":"boom"}')
        assert meta is not None and values is not None and error is not None
        b.writer.close("r")
        await b.settle()
        assert await collect(b.reader, "r", FROM_START) == [meta, values, error]
        assert await collect(b.reader, "r", cursor_of(meta)) == [values, error]
        assert await collect(b.reader, "r", cursor_of(values)) == [error]
        assert await collect(b.reader, "r", REPLAY) == [meta, values]


async def test_error_logged_while_live_is_withheld_from_replay(make: MakeBridges) -> None:
    async with make() as b:
        b.writer.open("r")
        meta = b.writer.publish("r", "metadata", b"{}")
        error = b.writer.publish("r", "error", b'{"error":"E","message":"m"}')
        await b.settle()
        replay = Consumer(b.reader.subscribe("r", REPLAY))
        resume = Consumer(b.reader.subscribe("r", FROM_START))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(replay.run)
                tg.start_soon(resume.run)
                await replay.wait_for(1)
                await resume.wait_for(2)
                b.writer.close("r")
        assert replay.items == [meta]
        assert resume.items == [meta, error]


async def test_replay_gets_an_error_published_later(make: MakeBridges) -> None:
    async with make() as b:
        b.writer.open("r")
        meta = b.writer.publish("r", "metadata", b"{}")
        await b.settle()
        replay = Consumer(b.reader.subscribe("r", REPLAY))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(replay.run)
                await replay.wait_for(1)  # the subscription has started
                error = b.writer.publish("r", "error", b'{"error":"E","message":"m"}')
                b.writer.close("r")
        assert replay.items == [meta, error]


async def test_close_ends_subscribers_after_draining(make: MakeBridges) -> None:
    async with make() as b:
        b.writer.open("r")
        published = publish_n(b.writer, "r", 1)
        await b.settle()
        consumers = [Consumer(b.reader.subscribe("r", FROM_START)) for _ in range(2)]
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for c in consumers:
                    tg.start_soon(c.run)
                for c in consumers:
                    await c.wait_for(1)
                assert not any(c.done.is_set() for c in consumers)
                published += publish_n(b.writer, "r", 20, "tail")
                b.writer.close("r")  # right after: readers still have 20 events to drain
                for c in consumers:
                    await within(5, c.done)
        assert [c.items for c in consumers] == [published] * 2
        assert not any(c.aborted for c in consumers)
        assert b.writer.publish("r", "values", b"{}") is None  # a closed log takes nothing


async def test_abort_raises_stream_aborted_after_draining(make: MakeBridges) -> None:
    async with make() as b:
        b.writer.open("r")
        published = publish_n(b.writer, "r", 1)
        await b.settle()
        consumer = Consumer(b.reader.subscribe("r", FROM_START))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consumer.run)
                await consumer.wait_for(1)
                published += publish_n(b.writer, "r", 5, "tail")
                b.writer.abort("r")
                await within(5, consumer.done)
        assert consumer.items == published
        assert consumer.aborted


async def test_discard_ends_subscribers_and_forgets_the_log(make: MakeBridges) -> None:
    async with make() as b:
        b.writer.open("r")
        published = publish_n(b.writer, "r", 2)
        await b.settle()
        consumer = Consumer(b.reader.subscribe("r", FROM_START))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consumer.run)
                await consumer.wait_for(2)
                b.writer.discard("r")
                await within(5, consumer.done)
        assert consumer.items == published
        assert not consumer.aborted
        assert not b.writer.has("r")
        await b.settle()
        assert await collect(b.reader, "r", FROM_START) == []


async def test_unknown_run_yields_nothing(make: MakeBridges) -> None:
    async with make() as b:
        for cursor in (FROM_START, REPLAY, (1, 1)):
            assert await collect(b.reader, "nope", cursor, timeout_s=2) == []


async def test_live_cursor_gets_only_later_events(make: MakeBridges) -> None:
    async with make() as b:
        b.writer.open("r")
        before = publish_n(b.writer, "r", 5, "before")
        await b.settle()
        live = Consumer(b.reader.subscribe("r", LIVE))
        later: list[StreamEvent] = []
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(live.run)
                while not live.items:  # a remote LIVE starts at its first read: publish on
                    later += publish_n(b.writer, "r", 1, "after")
                    await anyio.sleep(0.01)
                b.writer.close("r")
                await within(5, live.done)
        assert live.items == later[-len(live.items):]
        assert not {e.id for e in before} & {e.id for e in live.items if isinstance(e, StreamEvent)}


async def test_bare_ms_cursor_resumes_before_every_event_of_that_ms(make: MakeBridges) -> None:
    async with make() as b:
        b.writer.open("r")
        published = publish_n(b.writer, "r", 3, "a")
        while True:  # poll: the clock is the subject (a new ms for the next events)
            if time.time_ns() // 1_000_000 > published[-1].ms:
                break
            await anyio.sleep(0.001)
        published += publish_n(b.writer, "r", 3, "b")
        b.writer.close("r")
        await b.settle()
        ms = published[3].ms
        expected = [e for e in published if e.ms >= ms]
        assert await collect(b.reader, "r", parse_last_event_id(str(ms))) == expected


async def test_log_is_bounded_in_bytes(make: MakeBridges) -> None:
    async with make(BridgeLimits(max_bytes_per_run=1000)) as b:
        b.writer.open("r")
        published = publish_n(b.writer, "r", 10, "x" * 390)  # ~400 bytes each
        b.writer.close("r")
        await b.settle()
        kept = published[-2:]
        assert sum(len(e.data) for e in kept) <= 1000 < sum(len(e.data) for e in published[-3:])
        assert await collect(b.reader, "r", FROM_START) == [StreamGap("-1", kept[0].id, 8), *kept]
