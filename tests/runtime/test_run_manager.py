"""RunManager tests (runtime/runs/manager.py) through ``open_runtime``, graphs of tests/graphs.

Contract: design.md 4.1-4.3, 4.7 (the stream ends after the terminal status is stored), 4.8,
protocol.md 10.5/10.6 (thread status, runs start at once and run concurrently).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from runtime.bridge.protocol import FROM_START
from runtime.core import Runtime, RuntimeConfig, open_runtime
from runtime.errors import NothingToCancel
from runtime.ids import uuid7
from runtime.spec import RunLimits, RunSpec
from runtime.types import CancelAction, Run, RunStatus, StreamEvent, ThreadStatus

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

ROOT = Path(__file__).resolve().parents[2]
GRAPHS = {name: f"./tests/graphs/{name}.py:graph" for name in ("echo", "fail", "hitl")}


@asynccontextmanager
async def runtime(tmp_path: Path, limits: RunLimits | None = None) -> AsyncIterator[Runtime]:
    config = RuntimeConfig(
        graphs=GRAPHS, base_dir=ROOT, data_dir=tmp_path / "data",
        limits=limits or RunLimits(shutdown_timeout_s=2.0),
    )
    async with open_runtime(config) as rt:
        yield rt


def stored_status(tmp_path: Path, run_id: str) -> str:
    """The committed status of a run, read synchronously from the store's file (no await, so
    nothing can happen in the runtime between the caller's observation and this read)."""
    with closing(sqlite3.connect(tmp_path / "data" / "gateway.sqlite")) as conn:
        row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    assert row is not None, run_id
    return str(row[0])


def human(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def new_thread(rt: Runtime) -> str:
    thread_id = uuid7()
    await rt.store.create_thread(thread_id, {})
    return thread_id


async def create(
    rt: Runtime, thread_id: str, text: str = "hi", graph: str = "echo",
    delay: float | None = None, **spec: Any,
) -> Run:
    config = {"configurable": {"delay": delay}} if delay is not None else {}
    return await rt.manager.create(
        RunSpec(assistant_id=graph, thread_id=thread_id, input=human(text), config=config, **spec)
    )


async def events_of(rt: Runtime, run_id: str) -> list[StreamEvent]:
    out: list[StreamEvent] = []
    async for item in rt.manager.subscribe(run_id, FROM_START):
        assert isinstance(item, StreamEvent), item
        out.append(item)
    return out


async def result(rt: Runtime, run: Run, timeout_s: float = 10.0) -> Any:
    body = await rt.manager.wait_result(run.thread_id, run.run_id, timeout_s)
    assert body is not None, f"run {run.run_id} did not end within {timeout_s} s"
    return orjson.loads(body)


async def wait_started(rt: Runtime, run_id: str) -> None:
    """Return once the run has published its ``metadata`` event (it is executing)."""
    async for item in rt.manager.subscribe(run_id, FROM_START):
        assert isinstance(item, StreamEvent)
        assert item.event == "metadata"
        return
    raise AssertionError(f"run {run_id} ended without starting")


def last_ai_text(values: dict[str, Any]) -> str:
    messages = [m for m in values["messages"] if m["type"] == "ai"]
    return str(messages[-1]["content"])


def texts(values: dict[str, Any] | None) -> list[str]:
    assert values is not None
    return [str(m["content"]) for m in values["messages"]]


# ---- one run ------------------------------------------------------------------------------------


async def test_run_succeeds_and_wait_result_returns_the_values(tmp_path: Path) -> None:
    async with runtime(tmp_path) as rt:
        thread_id = await new_thread(rt)
        run = await create(rt, thread_id, "hello")
        assert run.status == RunStatus.PENDING
        assert run.thread_id == thread_id and run.graph_id == "echo"
        with anyio.fail_after(10):
            body = await result(rt, run)
        assert texts(body) == ["hello", "echo: hello"]
        assert last_ai_text(body) == "echo: hello"
        stored = await rt.store.get_run(run.run_id)
        assert stored is not None and stored.status == RunStatus.SUCCESS
        assert (await rt.manager.get(thread_id, run.run_id)).status == RunStatus.SUCCESS
        thread = await rt.store.get_thread(thread_id)
        assert thread.status == ThreadStatus.IDLE
        assert texts(thread.values) == ["hello", "echo: hello"]
        # waiting again on a finished run returns the same body at once
        with anyio.fail_after(2):
            assert await result(rt, run) == body


async def test_subscription_starts_with_metadata_and_ends_after_terminal_status(
    tmp_path: Path,
) -> None:
    async with runtime(tmp_path) as rt:
        thread_id = await new_thread(rt)
        run = await create(rt, thread_id, delay=0.2, stream_mode=("values", "custom"))
        seen: list[StreamEvent] = []
        with anyio.fail_after(10):
            async for item in rt.manager.subscribe(run.run_id, FROM_START):
                assert isinstance(item, StreamEvent)
                seen.append(item)
            status_at_end = stored_status(tmp_path, run.run_id)  # no await since the end
        assert status_at_end == "success"
        assert seen[0].event == "metadata"
        assert orjson.loads(seen[0].data) == {"run_id": run.run_id, "attempt": 1}
        assert [e.event for e in seen].count("metadata") == 1
        custom = [orjson.loads(e.data) for e in seen if e.event == "custom"]
        assert custom == [{"progress": "prepare", "step": 1}, {"progress": "respond", "step": 2}]
        assert seen[-1].event == "values"
        assert last_ai_text(orjson.loads(seen[-1].data)) == "echo: hi"
        keys = [(e.ms, e.seq) for e in seen]
        assert keys == sorted(set(keys))


async def test_hitl_run_succeeds_with_thread_interrupted_and_resumes(tmp_path: Path) -> None:
    async with runtime(tmp_path) as rt:
        thread_id = await new_thread(rt)
        run = await create(rt, thread_id, "draft me", graph="hitl")
        with anyio.fail_after(10):
            body = await result(rt, run)
        assert [i["value"] for i in body["__interrupt__"]] == [
            {"question": "approve?", "draft": "draft me"}
        ]
        assert (await rt.store.get_run(run.run_id)).status == RunStatus.SUCCESS  # type: ignore[union-attr]
        thread = await rt.store.get_thread(thread_id)
        assert thread.status == ThreadStatus.INTERRUPTED
        assert thread.interrupts and len(thread.interrupts) == 1
        resume = await rt.manager.create(
            RunSpec(assistant_id="hitl", thread_id=thread_id, command={"resume": "yes"})
        )
        with anyio.fail_after(10):
            body = await result(rt, resume)
        assert last_ai_text(body) == "approved: yes"
        thread = await rt.store.get_thread(thread_id)
        assert thread.status == ThreadStatus.IDLE and thread.interrupts == {}


async def test_failing_graph_ends_error_and_leaves_others_alone(tmp_path: Path) -> None:
    async with runtime(tmp_path) as rt:
        bad_thread, good_thread = await new_thread(rt), await new_thread(rt)
        bad = await create(rt, bad_thread, "hi", graph="fail")
        good = await create(rt, good_thread, "ok", delay=0.1)
        with anyio.fail_after(10):
            body = await result(rt, bad)
            events = await events_of(rt, bad.run_id)
            good_body = await result(rt, good)
        error = {"error": "ValueError", "message": "deliberate failure: hi"}
        assert body == {"__error__": error}
        assert events[0].event == "metadata"
        assert events[-1].event == "error" and orjson.loads(events[-1].data) == error
        assert (await rt.store.get_run(bad.run_id)).status == RunStatus.ERROR  # type: ignore[union-attr]
        thread = await rt.store.get_thread(bad_thread)
        assert thread.status == ThreadStatus.ERROR
        assert thread.error == error
        assert last_ai_text(good_body) == "echo: ok"
        # the thread is usable again after the failure
        again = await create(rt, bad_thread, "again")
        with anyio.fail_after(10):
            assert last_ai_text(await result(rt, again)) == "echo: again"
        assert (await rt.store.get_thread(bad_thread)).status == ThreadStatus.IDLE


# ---- scheduling ---------------------------------------------------------------------------------


async def test_runs_on_different_threads_run_concurrently(tmp_path: Path) -> None:
    async with runtime(tmp_path) as rt:
        warm = await create(rt, await new_thread(rt))  # first-use costs out of the measurement
        with anyio.fail_after(10):
            await result(rt, warm)
        t1, t2 = await new_thread(rt), await new_thread(rt)
        started = time.monotonic()
        a = await create(rt, t1, "a", delay=0.5)
        b = await create(rt, t2, "b", delay=0.5)
        with anyio.fail_after(10):
            bodies = [await result(rt, a), await result(rt, b)]
        elapsed = time.monotonic() - started
        assert [last_ai_text(x) for x in bodies] == ["echo: a", "echo: b"]
        assert 0.5 <= elapsed < 0.9, f"two 0.5 s runs on two threads took {elapsed:.2f} s"


async def test_runs_on_one_thread_run_one_after_another_in_creation_order(
    tmp_path: Path,
) -> None:
    async with runtime(tmp_path) as rt:
        thread_id = await new_thread(rt)
        runs = [
            await create(rt, thread_id, "first", delay=0.2),
            await create(rt, thread_id, "second", delay=0.1),
            await create(rt, thread_id, "third"),
        ]
        predecessor_at_start: dict[str, str] = {}

        async def watch(run: Run, before: Run) -> None:
            await wait_started(rt, run.run_id)
            predecessor_at_start[run.run_id] = stored_status(tmp_path, before.run_id)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch, runs[1], runs[0])
                tg.start_soon(watch, runs[2], runs[1])
            bodies = [await result(rt, r) for r in runs]
        assert predecessor_at_start == {runs[1].run_id: "success", runs[2].run_id: "success"}
        assert texts(bodies[-1]) == [
            "first", "echo: first", "second", "echo: second", "third", "echo: third",
        ]
        assert [last_ai_text(b) for b in bodies] == ["echo: first", "echo: second", "echo: third"]
        thread = await rt.store.get_thread(thread_id)
        assert thread.status == ThreadStatus.IDLE


async def test_max_concurrent_runs_serializes_runs_of_different_threads(tmp_path: Path) -> None:
    async with runtime(tmp_path, RunLimits(max_concurrent_runs=1, shutdown_timeout_s=2.0)) as rt:
        t1, t2 = await new_thread(rt), await new_thread(rt)
        first = await create(rt, t1, "one", delay=0.3)
        second = await create(rt, t2, "two")
        with anyio.fail_after(10):
            await wait_started(rt, second.run_id)
            first_at_start = stored_status(tmp_path, first.run_id)
            await result(rt, first)
            await result(rt, second)
        assert first_at_start == "success"


async def test_after_seconds_delays_the_start(tmp_path: Path) -> None:
    async with runtime(tmp_path) as rt:
        thread_id, other_thread = await new_thread(rt), await new_thread(rt)
        created = time.monotonic()
        delayed = await create(rt, thread_id, "later", after_seconds=0.5)
        assert delayed.not_before is not None
        queued_behind = await create(rt, thread_id, "behind")  # FIFO: waits for the delayed run
        elsewhere = await create(rt, other_thread, "now")  # other threads are not held up
        with anyio.fail_after(10):
            await result(rt, elsewhere)
            assert time.monotonic() - created < 0.5
            assert stored_status(tmp_path, delayed.run_id) == "pending"
            assert stored_status(tmp_path, queued_behind.run_id) == "pending"
            await wait_started(rt, delayed.run_id)
            started_after = time.monotonic() - created
            await result(rt, delayed)
            body = await result(rt, queued_behind)
        assert started_after >= 0.5
        assert texts(body) == ["later", "echo: later", "behind", "echo: behind"]


# ---- cancel -------------------------------------------------------------------------------------


async def test_cancel_running_run_ends_interrupted(tmp_path: Path) -> None:
    async with runtime(tmp_path) as rt:
        thread_id = await new_thread(rt)
        run = await create(rt, thread_id, delay=20)
        with anyio.fail_after(10):
            await wait_started(rt, run.run_id)
            assert stored_status(tmp_path, run.run_id) == "running"
            assert await rt.manager.cancel(thread_id, run.run_id) is None
            await rt.manager.cancel(thread_id, run.run_id)  # idempotent while stopping
            await result(rt, run)
            events = await events_of(rt, run.run_id)  # the stream has ended
        assert events[0].event == "metadata"
        assert "error" not in [e.event for e in events]
        stored = await rt.store.get_run(run.run_id)
        assert stored is not None and stored.status == RunStatus.INTERRUPTED
        assert stored.cancel_action == CancelAction.INTERRUPT
        assert (await rt.manager.get(thread_id, run.run_id)).status == RunStatus.INTERRUPTED
        assert (await rt.store.get_thread(thread_id)).status != ThreadStatus.BUSY
        with pytest.raises(NothingToCancel):
            await rt.manager.cancel(thread_id, run.run_id)


async def test_cancel_with_wait_returns_once_stopped(tmp_path: Path) -> None:
    async with runtime(tmp_path) as rt:
        thread_id = await new_thread(rt)
        run = await create(rt, thread_id, delay=20)
        with anyio.fail_after(10):
            await wait_started(rt, run.run_id)
            body = await rt.manager.cancel(thread_id, run.run_id, wait=True)
            status_after_wait = stored_status(tmp_path, run.run_id)
        assert body is not None
        assert status_after_wait == "interrupted"


async def test_run_cancelled_while_pending_never_starts(tmp_path: Path) -> None:
    async with runtime(tmp_path) as rt:
        thread_id = await new_thread(rt)
        first = await create(rt, thread_id, "first", delay=0.5)
        queued = await create(rt, thread_id, "queued")
        with anyio.fail_after(10):
            await wait_started(rt, first.run_id)
            assert stored_status(tmp_path, queued.run_id) == "pending"
            await rt.manager.cancel(thread_id, queued.run_id)
            assert stored_status(tmp_path, queued.run_id) == "interrupted"
            # thread stays busy: the first run is still running (protocol.md 10.5)
            assert (await rt.store.get_thread(thread_id)).status == ThreadStatus.BUSY
            queued_events = await events_of(rt, queued.run_id)
            first_body = await result(rt, first)
            await result(rt, queued)
        assert queued_events == []  # no metadata: it never started
        assert stored_status(tmp_path, queued.run_id) == "interrupted"
        assert texts(first_body) == ["first", "echo: first"]
        thread = await rt.store.get_thread(thread_id)
        assert thread.status == ThreadStatus.IDLE
        assert texts(thread.values) == ["first", "echo: first"]


async def test_delayed_run_cancelled_before_due_never_starts(tmp_path: Path) -> None:
    async with runtime(tmp_path) as rt:
        thread_id = await new_thread(rt)
        run = await create(rt, thread_id, after_seconds=0.3)
        await rt.manager.cancel(thread_id, run.run_id)
        with anyio.fail_after(10):
            assert await events_of(rt, run.run_id) == []
            await result(rt, run)
            # well past the due time, it still has not started
            follow = await create(rt, thread_id, "follow", after_seconds=0.4)
            await result(rt, follow)
        assert stored_status(tmp_path, run.run_id) == "interrupted"
        thread = await rt.store.get_thread(thread_id)
        assert texts(thread.values) == ["follow", "echo: follow"]
