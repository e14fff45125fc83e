"""Unit tests of the in-memory StreamBridge (runtime/bridge/memory.py): ids, cursors, fan-out, gaps,
retention. Contract: design.md 4.4 (no event lost, none twice) and 4.5 (the producer never waits).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace

import anyio
import pytest

import runtime.bridge.memory as bridge_mod
from runtime.bridge.memory import MemoryStreamBridge
from runtime.bridge.protocol import (
    FROM_START,
    LIVE,
    REPLAY,
    BridgeLimits,
    Cursor,
    parse_last_event_id,
)
from runtime.types import StreamEvent, StreamGap

Item = StreamEvent | StreamGap


def key(item: StreamEvent) -> tuple[int, int]:
    return (item.ms, item.seq)


def cursor_of(event: StreamEvent) -> tuple[int, int]:
    return parse_last_event_id(event.id)  # type: ignore[return-value]


async def collect(
    bridge: MemoryStreamBridge, run_id: str, cursor: Cursor = FROM_START
) -> list[Item]:
    with anyio.fail_after(5):
        return [item async for item in bridge.subscribe(run_id, cursor)]


def publish_n(
    bridge: MemoryStreamBridge, run_id: str, n: int, prefix: str = "e"
) -> list[StreamEvent]:
    out = []
    for i in range(n):
        event = bridge.publish(run_id, "custom", f'{{"{prefix}":{i}}}'.encode())
        assert event is not None
        out.append(event)
    return out


def fake_clock(monkeypatch: pytest.MonkeyPatch, ms_values: list[int]) -> None:
    """Make the bridge read its wall clock from ``ms_values`` (then repeat the last one).

    The first value is read when the log is opened (its creation time), the rest by publish.
    """
    values = iter([ms_values[0], *ms_values])
    last = [ms_values[0]]

    def time_ns() -> int:
        last[0] = next(values, last[0])
        return last[0] * 1_000_000

    monkeypatch.setattr(bridge_mod, "time", SimpleNamespace(time_ns=time_ns))


class Consumer:
    """A subscription driven from a task, pausable at will via a gate."""

    def __init__(self, stream: AsyncIterator[Item]) -> None:
        self.stream = stream
        self.items: list[Item] = []
        self.done = anyio.Event()

    async def run(self, after_each: Callable[[Item], object] | None = None) -> None:
        async for item in self.stream:
            self.items.append(item)
            if after_each is not None:
                after_each(item)
        self.done.set()


# ---- parse_last_event_id ----------------------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, LIVE),
        ("", LIVE),
        ("   ", LIVE),
        ("-1", REPLAY),
        ("0", REPLAY),
        (f"{2**63 - 1}-{2**63 - 1}", (2**63 - 1, 2**63 - 1)),
        ("123-4", (123, 4)),
        (" 123-4 ", (123, 4)),
        ("123", (123, -1)),
    ],
)
def test_parse_last_event_id(value: str | None, expected: Cursor) -> None:
    assert parse_last_event_id(value) == expected


@pytest.mark.timeout(10)
@pytest.mark.parametrize("value", ["abc", "12-x", "-", "-5", "1-2-3", "12-", "1.5", "x-1",
                                   f"{2**63}-0", f"1-{2**63}", "\u00b2-1", "1-\u0663"])
def test_parse_last_event_id_rejects_garbage(value: str) -> None:
    with pytest.raises(ValueError):
        parse_last_event_id(value)


# ---- ids ----------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_ids_unique_and_strictly_increasing_within_each_run() -> None:
    """Ids are "<ms>-<seq>" with a per-run seq (protocol.md 10.1): unique and strictly
    increasing within a run, and seq is the event's 1-based position in its run."""
    bridge = MemoryStreamBridge()
    bridge.open("a")
    bridge.open("b")
    events: list[StreamEvent] = []
    for i in range(500):
        run = "a" if i % 3 else "b"
        event = bridge.publish(run, "values", b"{}")
        assert event is not None
        events.append(event)
    for run in ("a", "b"):
        mine = [e for i, e in enumerate(events) if (run == "b") == (i % 3 == 0)]
        ids = [e.id for e in mine]
        assert len(set(ids)) == len(ids)
        keys = [key(e) for e in mine]
        assert all(x < y for x, y in zip(keys, keys[1:], strict=False))
        assert [e.seq for e in mine] == list(range(1, len(mine) + 1))
    # the id text is "<ms>-<seq>" and parses back to the same key
    for e in events:
        ms, _, seq = e.id.partition("-")
        assert (int(ms), int(seq)) == key(e) == parse_last_event_id(e.id)
        assert abs(e.ms - time.time_ns() // 1_000_000) < 60_000
    # each run replays exactly its own events, in publish order
    for run in ("a", "b"):
        bridge.close(run)
        mine = [e for i, e in enumerate(events) if (run == "b") == (i % 3 == 0)]
        assert await collect(bridge, run) == mine


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_ids_increase_when_clock_goes_backwards(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_clock(monkeypatch, [5000, 5000, 4000, 4999, 5001, 5001])
    bridge = MemoryStreamBridge()
    bridge.open("r")
    events = publish_n(bridge, "r", 6)
    keys = [key(e) for e in events]
    assert all(x < y for x, y in zip(keys, keys[1:], strict=False)), keys
    assert [e.ms for e in events] == [5000, 5000, 5000, 5000, 5001, 5001]


# ---- fan-out ------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_two_concurrent_subscribers_get_every_event_in_order() -> None:
    bridge = MemoryStreamBridge()
    bridge.open("r")
    early = publish_n(bridge, "r", 3, "early")
    one = Consumer(bridge.subscribe("r", FROM_START))
    two = Consumer(bridge.subscribe("r", FROM_START))
    published = list(early)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(one.run)
            tg.start_soon(two.run)
            await anyio.wait_all_tasks_blocked()
            for i in range(200):
                event = bridge.publish("r", "values", f'{{"i":{i}}}'.encode())
                assert event is not None
                published.append(event)
                if i % 7 == 0:
                    await anyio.lowlevel.checkpoint()  # let readers interleave with the producer
            bridge.close("r")
    assert one.items == published
    assert two.items == published


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_subscriber_after_close_replays_all_and_ends() -> None:
    bridge = MemoryStreamBridge()
    bridge.open("r")
    published = publish_n(bridge, "r", 10)
    bridge.close("r")
    assert bridge.is_closed("r") and bridge.has("r")
    assert await collect(bridge, "r", FROM_START) == published
    assert await collect(bridge, "r", parse_last_event_id("-1")) == published
    assert await collect(bridge, "r", LIVE) == []


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_live_cursor_gets_only_later_events() -> None:
    bridge = MemoryStreamBridge()
    bridge.open("r")
    publish_n(bridge, "r", 5, "before")
    consumer = Consumer(bridge.subscribe("r", LIVE))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer.run)
            await anyio.wait_all_tasks_blocked()  # the subscription is waiting on the log
            later = publish_n(bridge, "r", 4, "after")
            bridge.close("r")
    assert consumer.items == later


# ---- resume -------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_resume_after_id_returns_exactly_the_rest() -> None:
    bridge = MemoryStreamBridge()
    bridge.open("r")
    published = publish_n(bridge, "r", 50)
    bridge.close("r")
    for i in (0, 1, 24, 48, 49):
        got = await collect(bridge, "r", parse_last_event_id(published[i].id))
        assert got == published[i + 1:], i


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_resume_when_many_events_share_one_ms(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_clock(monkeypatch, [1000] * 5 + [1001] * 5 + [1002] * 5)
    bridge = MemoryStreamBridge()
    bridge.open("r")
    published = publish_n(bridge, "r", 15)
    assert len({e.ms for e in published}) == 3
    assert len({e.id for e in published}) == 15
    bridge.close("r")
    for i in range(15):
        got = await collect(bridge, "r", parse_last_event_id(published[i].id))
        assert got == published[i + 1:], i
    # a bare "<ms>" id resumes before every event of that millisecond
    assert await collect(bridge, "r", parse_last_event_id("1001")) == published[5:]
    # an id between two retained ones (another run's seq) resumes right after it
    between = (published[7].ms, published[7].seq)
    assert await collect(bridge, "r", between) == published[8:]


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_resume_with_live_producer_no_loss_no_duplicate() -> None:
    """A reconnecting reader resumes from the last id it saw while the producer keeps going."""
    bridge = MemoryStreamBridge()
    bridge.open("r")
    first = publish_n(bridge, "r", 20, "a")
    got: list[Item] = []
    with anyio.fail_after(5):
        async for item in bridge.subscribe("r", FROM_START):
            got.append(item)
            if len(got) == 10:
                break  # the client disconnects
    last = got[-1]
    assert isinstance(last, StreamEvent)
    more = publish_n(bridge, "r", 20, "b")
    consumer = Consumer(bridge.subscribe("r", cursor_of(last)))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer.run)
            await anyio.wait_all_tasks_blocked()
            tail = publish_n(bridge, "r", 5, "c")
            bridge.close("r")
    assert got + consumer.items == first + more + tail


# ---- bounded log, slow readers, gaps ------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_slow_subscriber_never_blocks_publish_and_gets_gap_then_tail() -> None:
    limit = 100
    bridge = MemoryStreamBridge(BridgeLimits(max_events_per_run=limit))
    bridge.open("r")
    first = bridge.publish("r", "metadata", b"{}")
    assert first is not None
    stream = bridge.subscribe("r", FROM_START)
    with anyio.fail_after(5):
        assert await stream.__anext__() == first  # the reader has seen event 0, then pauses
        started = time.monotonic()
        published = publish_n(bridge, "r", 10_000)  # sync: cannot wait on the paused reader
        assert time.monotonic() - started < 2.0
        bridge.close("r")
        rest = [item async for item in stream]
    assert rest, "the paused subscriber got nothing"
    gap = rest[0]
    assert isinstance(gap, StreamGap), rest[0]
    tail = rest[1:]
    assert all(isinstance(e, StreamEvent) for e in tail)
    assert 0 < len(tail) <= len(published)
    # the tail is exactly the newest events, contiguous, and nothing else follows
    assert tail == published[-len(tail):]
    assert gap.dropped == len(published) - len(tail)
    assert gap.first_id == tail[0].id
    # the same holds for a fresh reader from the start
    fresh = await collect(bridge, "r", FROM_START)
    assert isinstance(fresh[0], StreamGap)
    assert fresh[0].dropped == 1 + len(published) - len(tail)
    assert fresh[1:] == tail


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_retained_log_respects_max_events_per_run() -> None:
    """``max_events_per_run`` bounds what is retained (and so what a late reader replays)."""
    limit = 100
    bridge = MemoryStreamBridge(BridgeLimits(max_events_per_run=limit))
    bridge.open("r")
    published = publish_n(bridge, "r", 10_000)
    bridge.close("r")
    replay = await collect(bridge, "r", FROM_START)
    assert isinstance(replay[0], StreamGap)
    tail = replay[1:]
    assert tail == published[-len(tail):]
    assert len(tail) <= limit, f"{len(tail)} events retained with max_events_per_run={limit}"


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_resume_older_than_window_yields_gap_first() -> None:
    bridge = MemoryStreamBridge(BridgeLimits(max_events_per_run=10))
    bridge.open("r")
    published = publish_n(bridge, "r", 500)
    bridge.close("r")
    requested = published[3].id
    got = await collect(bridge, "r", parse_last_event_id(requested))
    gap = got[0]
    assert isinstance(gap, StreamGap)
    assert gap.requested_id == requested
    tail = got[1:]
    assert tail and tail == published[-len(tail):]
    assert gap.first_id == tail[0].id
    assert gap.dropped > 0
    # a resume inside the retained window gets no gap
    inside = published[-3]
    assert await collect(bridge, "r", cursor_of(inside)) == published[-2:]


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_gap_count_on_resume_counts_only_events_after_the_cursor() -> None:
    """``dropped`` is the number of events between the requested id and ``first_id``."""
    bridge = MemoryStreamBridge(BridgeLimits(max_events_per_run=10))
    bridge.open("r")
    published = publish_n(bridge, "r", 500)
    bridge.close("r")
    got = await collect(bridge, "r", cursor_of(published[3]))
    gap, tail = got[0], got[1:]
    assert isinstance(gap, StreamGap)
    first_index = published.index(tail[0])  # type: ignore[arg-type]
    assert gap.dropped == first_index - 4  # events 4 .. first_index-1 are the lost ones


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_resume_at_the_edge_of_the_log_has_no_gap() -> None:
    """Resuming from the newest dropped event loses nothing: no gap, the whole retained log."""
    bridge = MemoryStreamBridge(BridgeLimits(max_events_per_run=10))
    bridge.open("r")
    published = publish_n(bridge, "r", 500)
    bridge.close("r")
    retained = [e for e in await collect(bridge, "r", FROM_START) if isinstance(e, StreamEvent)]
    first_index = published.index(retained[0])
    assert first_index > 0
    # cursor == the first retained event: exactly the rest
    assert await collect(bridge, "r", cursor_of(published[first_index])) == retained[1:]
    # cursor == the last dropped event: every event after it is still retained
    got = await collect(bridge, "r", cursor_of(published[first_index - 1]))
    assert got == retained, f"spurious {got[0]!r} when nothing after the cursor was dropped"


# ---- end of stream, retention, discard ----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_subscriptions_end_when_the_log_closes() -> None:
    bridge = MemoryStreamBridge()
    bridge.open("r")
    consumers = [Consumer(bridge.subscribe("r", c)) for c in (FROM_START, LIVE, FROM_START)]
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for c in consumers:
                tg.start_soon(c.run)
            await anyio.wait_all_tasks_blocked()
            event = bridge.publish("r", "values", b"{}")
            await anyio.wait_all_tasks_blocked()
            assert not any(c.done.is_set() for c in consumers)
            bridge.close("r")
            for c in consumers:
                await c.done.wait()
    assert [c.items for c in consumers] == [[event]] * 3


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_retention_drops_the_log_after_retention_s() -> None:
    bridge = MemoryStreamBridge(BridgeLimits(retention_s=0.05))
    bridge.open("r")
    published = publish_n(bridge, "r", 3)
    bridge.close("r")
    assert bridge.has("r")  # kept for late joiners right after close
    assert await collect(bridge, "r", FROM_START) == published
    with anyio.fail_after(2):  # time is the subject here: poll until the timer has fired
        while True:
            if not bridge.has("r"):
                break
            await anyio.sleep(0.01)
    assert len(bridge) == 0
    assert not bridge.is_closed("r")
    assert await collect(bridge, "r", FROM_START) == []


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_discard_ends_subscribers_at_once() -> None:
    bridge = MemoryStreamBridge()
    bridge.open("r")
    event = bridge.publish("r", "values", b"{}")
    consumer = Consumer(bridge.subscribe("r", FROM_START))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer.run)
            await anyio.wait_all_tasks_blocked()
            assert consumer.items == [event] and not consumer.done.is_set()
            bridge.discard("r")
            assert not bridge.has("r")
            await consumer.done.wait()
    assert consumer.items == [event]
    assert bridge.publish("r", "values", b"{}") is None
    assert await collect(bridge, "r", FROM_START) == []
    bridge.discard("r")  # idempotent
    bridge.discard("unknown")


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_publish_after_close_returns_none_and_is_not_replayed() -> None:
    bridge = MemoryStreamBridge()
    bridge.open("r")
    published = publish_n(bridge, "r", 2)
    bridge.close("r")
    bridge.close("r")  # idempotent
    assert bridge.publish("r", "values", b"{}") is None
    bridge.open("r")  # reopening a retained log does not reopen it
    assert bridge.publish("r", "values", b"{}") is None
    assert await collect(bridge, "r", FROM_START) == published


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_unknown_run_yields_nothing() -> None:
    bridge = MemoryStreamBridge()
    assert not bridge.has("nope")
    assert not bridge.is_closed("nope")
    assert bridge.publish("nope", "values", b"{}") is None
    assert not bridge.has("nope")  # publish does not create a log
    bridge.close("nope")
    for cursor in (FROM_START, LIVE, (1, 1)):
        assert await collect(bridge, "nope", cursor) == []


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_open_is_idempotent() -> None:
    bridge = MemoryStreamBridge()
    bridge.open("r")
    published = publish_n(bridge, "r", 3)
    bridge.open("r")
    bridge.close("r")
    assert await collect(bridge, "r") == published


# ---- the terminal error event (invariant 5) ----------------------------------------------------


def failed_run(bridge: MemoryStreamBridge, run_id: str = "r") -> list[StreamEvent]:
    """A run that published two events, then its terminal ``error``, and ended."""
    bridge.open(run_id)
    events = publish_n(bridge, run_id, 2)
    error = bridge.publish(run_id, "error", b'{"error":"ValueError","message":"boom"}')
    assert error is not None
    bridge.close(run_id)
    return [*events, error]


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_replay_of_a_failed_run_withholds_its_error() -> None:
    """``-1`` (useStream's re-join on mount) gets every event but the stored ``error`` and
    ends cleanly; a fresh joiner and a resume from an id both get the error."""
    bridge = MemoryStreamBridge()
    published = failed_run(bridge)
    assert await collect(bridge, "r", REPLAY) == published[:-1]
    assert await collect(bridge, "r", FROM_START) == published
    assert await collect(bridge, "r", cursor_of(published[0])) == published[1:]
    assert await collect(bridge, "r", cursor_of(published[1])) == published[2:]


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_replay_gets_an_error_published_after_it_subscribed() -> None:
    """A ``-1`` join of a run still going sees the failure live: it was not shown yet."""
    bridge = MemoryStreamBridge()
    bridge.open("r")
    before = publish_n(bridge, "r", 2)
    consumer = Consumer(bridge.subscribe("r", REPLAY))
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        error = bridge.publish("r", "error", b'{"error":"ValueError","message":"late"}')
        bridge.close("r")
        with anyio.fail_after(5):
            await consumer.done.wait()
    assert consumer.items == [*before, error]


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_replay_keeps_errors_on_the_thread_stream() -> None:
    """The thread stream has no withholding: ``-1`` there replays the thread log as it is."""
    bridge = MemoryStreamBridge()
    watcher = bridge.subscribe_thread("t")
    bridge.open("r", "t")
    bridge.publish("r", "error", b'{"error":"E","message":"m"}')
    bridge.close("r")
    names: list[str] = []
    with anyio.fail_after(5):
        async for item in bridge.subscribe_thread("t", REPLAY):
            assert isinstance(item, StreamEvent)
            names.append(item.event)
            if len(names) == 2:
                break
    assert names == ["error", "metadata"]
    await watcher.aclose()  # type: ignore[attr-defined]


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_thread_stream_resumed_from_before_its_log_says_gap() -> None:
    """A thread log is only kept while watched (and ``retention_s`` after): a reconnect with
    an id from before the log (it was dropped, or the process restarted) gets a gap of
    unknown size first, never a silent resume; a reconnect within retention gets no gap."""
    bridge = MemoryStreamBridge()
    stale = bridge.subscribe_thread("t", (1, 1))
    bridge.open("r", "t")
    event = bridge.publish("r", "values", b"{}")
    assert event is not None
    with anyio.fail_after(5):
        first = await stale.__anext__()
        assert first == StreamGap("1-1", f"{event.ms}-1", None)
        assert await stale.__anext__() == StreamEvent(event.ms, 1, "values", b"{}")
        await stale.aclose()  # type: ignore[attr-defined]
        # the log is retained: resuming from its own first id loses nothing and says nothing
        again = bridge.subscribe_thread("t", (event.ms, 1))
        bridge.close("r")
        item = await again.__anext__()
        assert isinstance(item, StreamEvent) and item.event == "metadata"
        await again.aclose()  # type: ignore[attr-defined]


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_retained_log_respects_max_bytes_per_run() -> None:
    """Large events are bounded by bytes too (``messages`` mode re-sends the whole message so
    far with each token); the newest event is always kept, and a replay says what it lost."""
    bridge = MemoryStreamBridge(BridgeLimits(max_bytes_per_run=1000))
    bridge.open("r")
    small = publish_n(bridge, "r", 3)
    big = bridge.publish("r", "messages/partial", b"[" + b"1," * 1000 + b"1]")
    assert big is not None
    bridge.close("r")
    got = await collect(bridge, "r", FROM_START)
    assert got == [StreamGap("-1", big.id, len(small)), big]
