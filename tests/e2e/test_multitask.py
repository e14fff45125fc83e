"""End-to-end: multitask strategies, admission races and the scheduler's limits.

Second run B on a thread whose run A (echo "first", ``delay`` 1.5 s) is running, for every
strategy and every way of creating B (``runs.create``, ``runs.stream``, ``runs.wait``), against
the reference outcomes of protocol.md section 7 and the invariants of design.md section 4:
at most one running run per thread, the thread ``busy`` while any run is active and never left
``busy`` afterwards (protocol.md 10.5), rollback restoring the exact checkpoint history, and
runs on other threads running concurrently up to ``max_concurrent_runs`` (protocol.md 10.6).

A background watcher polls the thread and its runs while a scenario runs; it reads the thread
first and the runs second, so "some run is active in the list" implies "the thread was busy".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError

from tests.server import GatewayProcess

pytestmark = pytest.mark.anyio

THREAD_BUSY = ("Thread is already running a task. Wait for it to finish or choose a different "
               "multitask strategy.")
A_DELAY_S = 1.5
ACTIVE = ("pending", "running")
VARIANTS = ["create", "stream", "wait"]


# ---- helpers -------------------------------------------------------------------------------


def human(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def delay(seconds: float) -> dict[str, Any]:
    return {"configurable": {"delay": seconds}}


def contents(values: dict[str, Any] | None) -> list[str]:
    return [m["content"] for m in (values or {}).get("messages", [])]


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def poll(
    fetch: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool], timeout_s: float = 10.0
) -> Any:
    """``fetch()`` until ``ok(value)``; fails the test after ``timeout_s``."""
    with anyio.fail_after(timeout_s):
        while True:
            value = await fetch()
            if ok(value):
                return value
            await anyio.sleep(0.02)


async def new_thread(client: LangGraphClient) -> str:
    return str((await client.threads.create())["thread_id"])


async def run_status(client: LangGraphClient, thread_id: str, run_id: str) -> str:
    return str((await client.runs.get(thread_id, run_id))["status"])


async def thread_status(client: LangGraphClient, thread_id: str) -> str:
    return str((await client.threads.get(thread_id))["status"])


async def history(client: LangGraphClient, thread_id: str) -> list[dict[str, Any]]:
    return list(await client.threads.get_history(thread_id, limit=500))


def checkpoints_of(hist: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """The run's checkpoints, oldest first."""
    return [h for h in reversed(hist) if h["metadata"].get("run_id") == run_id]


def shape(hist: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a history looks like independently of ids and times."""
    return [(h["metadata"]["step"], h["metadata"]["source"], tuple(h["next"]),
             tuple(contents(h["values"]))) for h in hist]


async def start_a(client: LangGraphClient, thread_id: str, seconds: float = A_DELAY_S) -> str:
    """Run A (echo "first") and return once it is inside ``prepare``'s sleep."""
    run = await client.runs.create(thread_id, "echo", input=human("first"),
                                   config=delay(seconds), stream_mode=["values", "custom"])
    run_id = str(run["run_id"])
    with anyio.fail_after(10):
        async with aclosing(client.runs.join_stream(thread_id, run_id,
                                                    last_event_id="-1")) as parts:
            async for part in parts:
                if part.event == "custom":
                    return run_id
    raise AssertionError("run A ended before prepare's custom event")


async def start_b(
    client: LangGraphClient, variant: str, thread_id: str, strategy: str, text: str = "second"
) -> tuple[str, dict[str, Any]]:
    """Create B with ``strategy`` the ``variant`` way; returns (run_id, final values)."""
    created: list[str] = []

    def on_created(meta: Any) -> None:
        created.append(str(meta["run_id"]))

    with anyio.fail_after(15):
        if variant == "create":
            run = await client.runs.create(thread_id, "echo", input=human(text),
                                           multitask_strategy=strategy)  # type: ignore[arg-type]
            assert run["status"] == "pending"
            assert run["multitask_strategy"] == strategy
            created.append(str(run["run_id"]))
            final = await client.runs.join(thread_id, created[0])
        elif variant == "stream":
            events = [(p.event, p.data) async for p in client.runs.stream(
                thread_id, "echo", input=human(text), stream_mode="values",
                multitask_strategy=strategy,  # type: ignore[arg-type]
                on_run_created=on_created)]
            assert events[0][0] == "metadata", events
            assert events[0][1]["run_id"] == created[0]
            assert "error" not in [e[0] for e in events], events
            assert events[-1][0] == "values", events
            final = events[-1][1]
        else:
            final = await client.runs.wait(thread_id, "echo", input=human(text),
                                           multitask_strategy=strategy,  # type: ignore[arg-type]
                                           on_run_created=on_created)
    assert len(created) == 1
    assert isinstance(final, dict)
    return created[0], final


@dataclass
class Snapshot:
    thread_status: str
    runs: dict[str, str]  # run_id -> status


async def _snapshot(client: LangGraphClient, thread_id: str) -> Snapshot:
    status = await thread_status(client, thread_id)  # thread first, runs second (see docstring)
    runs = await client.runs.list(thread_id, limit=100)
    return Snapshot(status, {str(r["run_id"]): str(r["status"]) for r in runs})


@asynccontextmanager
async def watching(client: LangGraphClient, thread_id: str) -> AsyncIterator[list[Snapshot]]:
    """Snapshots of the thread and its runs, taken every ~10 ms while the block runs."""
    snaps = [await _snapshot(client, thread_id)]
    stop = anyio.Event()

    async def watch() -> None:
        while not stop.is_set():
            snaps.append(await _snapshot(client, thread_id))
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        try:
            yield snaps
        finally:
            stop.set()
    snaps.append(await _snapshot(client, thread_id))


def check_snapshots(snaps: list[Snapshot]) -> None:
    """At most one running run per thread; an active run means a busy thread; ends idle."""
    assert len(snaps) >= 3
    for prev, snap in zip(snaps, snaps[1:], strict=False):
        running = [r for r, s in snap.runs.items() if s == "running"]
        assert len(running) <= 1, snap
        # a run listed by the previous snapshot and still active now was active when this
        # snapshot read the thread (a run never becomes active again)
        if any(snap.runs.get(r) in ACTIVE for r in prev.runs):
            assert snap.thread_status == "busy", (prev, snap)
    last = snaps[-1]
    assert not any(s in ACTIVE for s in last.runs.values()), last
    assert last.thread_status == "idle", last


# ---- reject ----------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("variant", VARIANTS)
async def test_reject_on_busy_thread(gateway_url: str, variant: str) -> None:
    """409 with the reference detail, nothing created, A undisturbed (protocol.md 7)."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    async with watching(client, thread_id) as snaps:
        a = await start_a(client, thread_id)
        before = await client.runs.list(thread_id)
        # the SDK's runs.wait raises a plain HTTPStatusError, the others a ConflictError
        error = httpx.HTTPStatusError if variant == "wait" else ConflictError
        with anyio.fail_after(5), pytest.raises(error) as info:
            await start_b(client, variant, thread_id, "reject")
        assert info.value.response.status_code == 409
        assert info.value.response.json() == {"detail": THREAD_BUSY}
        after = await client.runs.list(thread_id)
        assert after == before  # nothing created, nothing changed
        assert [r["run_id"] for r in after] == [a]
        assert await run_status(client, thread_id, a) == "running"
        assert await thread_status(client, thread_id) == "busy"
        final = await client.runs.join(thread_id, a)
    check_snapshots(snaps)
    assert contents(final) == ["first", "echo: first"]
    assert await run_status(client, thread_id, a) == "success"
    assert [r["run_id"] for r in await client.runs.list(thread_id)] == [a]


# ---- interrupt -------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("variant", VARIANTS)
async def test_interrupt_on_busy_thread(gateway_url: str, variant: str) -> None:
    """A ``interrupted`` with its checkpoints kept; B starts after A stopped, on A's input."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    async with watching(client, thread_id) as snaps:
        a = await start_a(client, thread_id)
        started = time.monotonic()
        b, final = await start_b(client, variant, thread_id, "interrupt")
    assert time.monotonic() - started < 1.0, "B waited for A to finish instead"
    check_snapshots(snaps)
    assert contents(final) == ["first", "second", "echo: second"]
    run_a = await client.runs.get(thread_id, a)
    assert run_a["status"] == "interrupted"
    assert await run_status(client, thread_id, b) == "success"
    assert [r["run_id"] for r in await client.runs.list(thread_id)] == [b, a]
    for snap in snaps:  # B never ran while A was still active
        if snap.runs.get(b) == "running":
            assert snap.runs.get(a) not in ACTIVE, snap

    hist = await history(client, thread_id)
    a_points, b_points = checkpoints_of(hist, a), checkpoints_of(hist, b)
    assert [(p["metadata"]["step"], p["next"]) for p in a_points][:2] == [
        (-1, ["__start__"]), (0, ["prepare"])]
    assert [contents(p["values"]) for p in a_points] == [[]] + [["first"]] * (len(a_points) - 1)
    assert b_points, "B wrote no checkpoint"
    assert {p["metadata"]["run_id"] for p in hist} == {a, b}
    # B continues from A's last checkpoint and started after A's final status was stored
    assert b_points[0]["parent_checkpoint"]["checkpoint_id"] == a_points[-1]["checkpoint_id"]
    assert ts(b_points[0]["created_at"]) >= ts(run_a["updated_at"])
    assert (await client.threads.get(thread_id))["status"] == "idle"


# ---- rollback --------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("variant", VARIANTS)
async def test_rollback_on_busy_thread(gateway_url: str, variant: str) -> None:
    """A deleted with its checkpoints; the thread looks as if B had run alone."""
    client = get_client(url=gateway_url)
    reference_thread = await new_thread(client)
    await client.runs.wait(reference_thread, "echo", input=human("second"))
    reference = await history(client, reference_thread)

    thread_id = await new_thread(client)
    async with watching(client, thread_id) as snaps:
        a = await start_a(client, thread_id)
        b, final = await start_b(client, variant, thread_id, "rollback")
    check_snapshots(snaps)
    for snap in snaps:  # A goes from running straight to gone, never a finished run
        assert snap.runs.get(a) in (None, "running"), snap
    assert contents(final) == ["second", "echo: second"]
    with pytest.raises(NotFoundError):
        await client.runs.get(thread_id, a)
    runs = await client.runs.list(thread_id)
    assert [r["run_id"] for r in runs] == [b]
    assert runs[0]["status"] == "success"
    thread = await client.threads.get(thread_id)
    assert thread["status"] == "idle"
    assert contents(thread["values"]) == ["second", "echo: second"]

    hist = await history(client, thread_id)
    assert shape(hist) == shape(reference)
    assert {h["metadata"]["run_id"] for h in hist} == {b}
    assert hist[-1]["parent_checkpoint"] is None  # B starts from an empty thread


@pytest.mark.timeout(30)
async def test_rollback_restores_exact_history_before_the_rolled_back_run(
    gateway_url: str,
) -> None:
    """After a rollback the pre-A history is intact, checkpoint for checkpoint, under B's."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    await client.runs.wait(thread_id, "echo", input=human("kept"))
    before = await history(client, thread_id)
    assert len(before) == 4

    async with watching(client, thread_id) as snaps:
        a = await start_a(client, thread_id)
        during = await history(client, thread_id)
        assert checkpoints_of(during, a), "A wrote no checkpoint before being rolled back"
        b, final = await start_b(client, "create", thread_id, "rollback")
    check_snapshots(snaps)
    for snap in snaps:
        assert snap.runs.get(a) in (None, "running"), snap
    assert contents(final) == ["kept", "echo: kept", "second", "echo: second"]

    after = await history(client, thread_id)
    b_points = checkpoints_of(after, b)
    assert [p["checkpoint_id"] for p in after] == (
        [p["checkpoint_id"] for p in reversed(b_points)] + [p["checkpoint_id"] for p in before])
    assert after[len(b_points):] == before  # snapshot for snapshot, not only the ids
    assert b_points[0]["parent_checkpoint"]["checkpoint_id"] == before[0]["checkpoint_id"]
    assert all(h["metadata"].get("run_id") != a for h in after)
    with pytest.raises(NotFoundError):
        await client.runs.get(thread_id, a)


# ---- enqueue ---------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("variant", VARIANTS)
async def test_enqueue_on_busy_thread(gateway_url: str, variant: str) -> None:
    """B stays ``pending`` until A has finished, then runs on A's result."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    async with watching(client, thread_id) as snaps:
        a = await start_a(client, thread_id)
        b, final = await start_b(client, variant, thread_id, "enqueue")
    check_snapshots(snaps)
    assert contents(final) == ["first", "echo: first", "second", "echo: second"]
    run_a = await client.runs.get(thread_id, a)
    assert run_a["status"] == "success"
    assert await run_status(client, thread_id, b) == "success"
    saw_b_pending = False
    for snap in snaps:
        if snap.runs.get(a) in ACTIVE and b in snap.runs:
            assert snap.runs[b] == "pending", snap
            saw_b_pending = True
    assert saw_b_pending, "no snapshot showed B queued behind A"
    hist = await history(client, thread_id)
    b_points = checkpoints_of(hist, b)
    assert ts(b_points[0]["created_at"]) >= ts(run_a["updated_at"])
    assert b_points[0]["parent_checkpoint"]["checkpoint_id"] == (
        checkpoints_of(hist, a)[-1]["checkpoint_id"])


# ---- a streamed A cut short by B -------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("strategy", ["interrupt", "rollback"])
async def test_streamed_run_closes_cleanly_when_interrupted_by_next_run(
    gateway_url: str, strategy: str
) -> None:
    """protocol.md 5.3/7 + design.md 4.7: A's SSE closes without an error event, and only once
    A's final status is stored."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http, http.stream(
        "POST", f"/threads/{thread_id}/runs/stream",
        json={"assistant_id": "echo", "input": human("first"), "config": delay(A_DELAY_S),
              "stream_mode": ["values", "custom"]},
    ) as res:
        assert res.status_code == 200
        a = res.headers["content-location"].rsplit("/", 1)[1]
        body = b""
        with anyio.fail_after(5):
            chunks = res.aiter_raw()
            async for chunk in chunks:
                body += chunk
                if b"event: custom" in body:
                    break
            b = await client.runs.create(thread_id, "echo", input=human("second"),
                                         multitask_strategy=strategy)  # type: ignore[arg-type]
            async for chunk in chunks:
                body += chunk
        # the very first look after the close must already see A's final status
        got = await http.get(f"/threads/{thread_id}/runs/{a}")
    if strategy == "interrupt":
        assert got.status_code == 200
        assert got.json()["status"] == "interrupted"
    else:
        assert got.status_code == 404
    events = [frame.split(b"\r\n", 1)[0] for frame in body.split(b"\r\n\r\n")
              if frame.startswith(b"event: ")]
    assert events == [b"event: metadata", b"event: values", b"event: custom"], body
    assert b"echo: first" not in body
    final = await client.runs.join(thread_id, b["run_id"])
    expected = ["first", "second", "echo: second"] if strategy == "interrupt" else [
        "second", "echo: second"]
    assert contents(final) == expected
    assert await thread_status(client, thread_id) == "idle"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("strategy", ["interrupt", "rollback"])
async def test_sdk_stream_of_interrupted_run_ends_without_error(
    gateway_url: str, strategy: str
) -> None:
    """The SDK sees a clean end (no error event, no reconnect warning) when B stops A."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    events: list[tuple[str, Any]] = []
    created: list[str] = []
    in_prepare = anyio.Event()

    async def consume() -> None:
        async for part in client.runs.stream(
            thread_id, "echo", input=human("first"), config=delay(A_DELAY_S),
            stream_mode=["values", "custom"],
            on_run_created=lambda meta: created.append(str(meta["run_id"])),
        ):
            events.append((part.event, part.data))
            if part.event == "custom":
                in_prepare.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await in_prepare.wait()
            b = await client.runs.create(thread_id, "echo", input=human("second"),
                                         multitask_strategy=strategy)  # type: ignore[arg-type]
    assert [e[0] for e in events] == ["metadata", "values", "custom"], events
    a = created[0]
    if strategy == "interrupt":
        assert await run_status(client, thread_id, a) == "interrupted"
    else:
        with pytest.raises(NotFoundError):
            await client.runs.get(thread_id, a)
    await client.runs.join(thread_id, b["run_id"])
    assert await thread_status(client, thread_id) == "idle"


# ---- admission races -------------------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_concurrent_reject_creations_admit_exactly_one(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        responses = await asyncio.gather(*[
            http.post(f"/threads/{thread_id}/runs", json={
                "assistant_id": "echo", "input": human(f"r{i}"), "config": delay(0.5),
                "multitask_strategy": "reject"})
            for i in range(20)])
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 19, codes
    for res in responses:
        if res.status_code == 409:
            assert res.json() == {"detail": THREAD_BUSY}
    (winner,) = [r.json() for r in responses if r.status_code == 200]
    runs = await client.runs.list(thread_id, limit=100)
    assert [r["run_id"] for r in runs] == [winner["run_id"]]
    final = await client.runs.join(thread_id, winner["run_id"])
    assert contents(final) == [winner["kwargs"]["input"]["messages"][0]["content"],
                               "echo: " + winner["kwargs"]["input"]["messages"][0]["content"]]
    assert len(await client.runs.list(thread_id, limit=100)) == 1
    assert await thread_status(client, thread_id) == "idle"


@pytest.mark.timeout(40)
async def test_concurrent_enqueue_creations_run_one_at_a_time_in_admission_order(
    gateway_url: str,
) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    texts = [f"m{i:02d}" for i in range(20)]
    async with watching(client, thread_id) as snaps:
        created = await asyncio.gather(*[
            client.runs.create(thread_id, "echo", input=human(text), config=delay(0.04),
                               multitask_strategy="enqueue")
            for text in texts])

        async def all_done() -> list[dict[str, Any]]:
            return list(await client.runs.list(thread_id, limit=100))

        runs = await poll(all_done, lambda rs: all(r["status"] not in ACTIVE for r in rs),
                          timeout_s=20)
    check_snapshots(snaps)
    assert len(runs) == 20
    assert all(r["status"] == "success" for r in runs), [r["status"] for r in runs]
    text_of = {str(r["run_id"]): r["kwargs"]["input"]["messages"][0]["content"] for r in created}
    order = sorted(text_of)  # UUIDv7: creation order
    assert [str(r["run_id"]) for r in reversed(runs)] == order  # the list is newest first
    expected: list[str] = []
    for run_id in order:
        expected += [text_of[run_id], "echo: " + text_of[run_id]]
    assert contents((await client.threads.get(thread_id))["values"]) == expected

    hist = await history(client, thread_id)
    assert len(hist) == 80
    created_at = {str(r["run_id"]): ts(r["created_at"]) for r in runs}
    spans = []
    for run_id in order:
        points = checkpoints_of(hist, run_id)
        assert len(points) == 4, run_id
        spans.append((ts(points[0]["created_at"]), ts(points[-1]["created_at"]), run_id))
    for (_, end, prev_id), (start, _, next_id) in zip(spans, spans[1:], strict=False):
        assert end < start, f"{prev_id} still wrote checkpoints when {next_id} started"
        assert created_at[prev_id] < start
    assert await thread_status(client, thread_id) == "idle"


# ---- scheduler limits ------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_max_concurrent_runs_limits_runs_across_threads(
    make_gateway: Callable[..., GatewayProcess],
) -> None:
    server = make_gateway(max_concurrent_runs=2).start()
    client = get_client(url=server.url)
    threads = [await new_thread(client) for _ in range(4)]
    runs = [await client.runs.create(t, "echo", input=human(f"c{i}"), config=delay(0.8))
            for i, t in enumerate(threads)]
    pairs = [(t, str(r["run_id"])) for t, r in zip(threads, runs, strict=True)]

    # The reads of one pass are not simultaneous, but a run seen ``running`` in two passes
    # was running during the whole gap between them: those runs ran at the same moment.
    seen_running: list[int] = []
    previous = ["pending"] * 4
    with anyio.fail_after(20):
        while True:
            statuses = [await run_status(client, t, r) for t, r in pairs]
            both = sum(p == s == "running" for p, s in zip(previous, statuses, strict=True))
            seen_running.append(both)
            assert both <= 2, (previous, statuses)
            if all(s not in ACTIVE for s in statuses):
                break
            previous = statuses
            await anyio.sleep(0.02)
    assert statuses == ["success"] * 4
    assert max(seen_running) == 2, seen_running  # runs of different threads do overlap

    spans = []
    for t, r in pairs:
        points = checkpoints_of(await history(client, t), r)
        spans.append((ts(points[0]["created_at"]), ts(points[-1]["created_at"])))
    for start, _ in spans:  # sweep: how many runs were executing when each one started
        overlapping = [s for s in spans if s[0] <= start <= s[1]]
        assert len(overlapping) <= 2, spans
    for t, r in pairs:
        final = await client.runs.join(t, r)
        assert contents(final)[-1].startswith("echo: c")
        assert await thread_status(client, t) == "idle"


@pytest.mark.timeout(30)
async def test_after_seconds_delays_the_start(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    sent = time.monotonic()
    run = await client.runs.create(thread_id, "echo", input=human("later"), after_seconds=1)
    run_id = str(run["run_id"])
    assert run["status"] == "pending"
    assert await thread_status(client, thread_id) == "busy"

    async def fetch() -> str:
        return await run_status(client, thread_id, run_id)

    await poll(fetch, lambda s: s != "pending", timeout_s=5)
    assert time.monotonic() - sent >= 0.8, "the run started before after_seconds"
    final = await client.runs.join(thread_id, run_id)
    assert contents(final) == ["later", "echo: later"]
    got = await client.runs.get(thread_id, run_id)
    assert got["status"] == "success"
    points = checkpoints_of(await history(client, thread_id), run_id)
    waited_s = (ts(points[0]["created_at"]) - ts(got["created_at"])).total_seconds()
    assert 0.8 <= waited_s < 2.5, waited_s
    assert await thread_status(client, thread_id) == "idle"
