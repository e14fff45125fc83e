"""Unit tests of ThreadedSqliteSaver (runtime/saver_sqlite.py) and the checkpointer helpers
that work on its tables (runtime/checkpointer.py): file compatibility with the library's
AsyncSqliteSaver, FIFO order, group commit, rollback deletion and thread copy."""

from __future__ import annotations

import operator
import sqlite3
import uuid
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypedDict

import aiosqlite
import anyio
import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph

from runtime.checkpointer import copy_thread, delete_run_checkpoints
from runtime.saver_sqlite import ThreadedSqliteSaver
from runtime.sqlite_db import GroupCommit, ThreadLane
from tests.runtime.lanes import hold_lane

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]


class State(TypedDict):
    log: Annotated[list[str], operator.add]


def _graph() -> StateGraph[State]:
    builder: StateGraph[State] = StateGraph(State)
    builder.add_node("a", lambda s: {"log": ["a"]})
    builder.add_node("b", lambda s: {"log": ["b"]})
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", END)
    return builder


def _config(thread_id: str, run_id: str | None = None) -> dict[str, Any]:
    configurable: dict[str, Any] = {"thread_id": thread_id}
    if run_id:
        configurable["run_id"] = run_id
    return {"configurable": configurable}


async def test_reads_and_extends_a_file_written_by_async_sqlite_saver(tmp_path: Path) -> None:
    """A data folder from a gateway that used the stock AsyncSqliteSaver keeps working."""
    path = tmp_path / "checkpoints.sqlite"
    async with aiosqlite.connect(str(path)) as conn:
        stock = AsyncSqliteSaver(conn)
        await stock.setup()
        await _graph().compile(checkpointer=stock).ainvoke({"log": ["in"]}, _config("t1"))
        stock_history = [c.checkpoint["id"] async for c in stock.alist(_config("t1"))]
    async with ThreadedSqliteSaver.open(path) as saver:
        graph = _graph().compile(checkpointer=saver)
        state = await graph.aget_state(_config("t1"))
        assert state.values == {"log": ["in", "a", "b"]}
        assert [c.checkpoint["id"] async for c in saver.alist(_config("t1"))] == stock_history
        out = await graph.ainvoke({"log": ["again"]}, _config("t1"))
        assert out == {"log": ["in", "a", "b", "again", "a", "b"]}


async def test_operations_run_in_call_order(tmp_path: Path) -> None:
    """Many concurrent callers, one lane: every write lands, each thread's head is its last."""
    async with ThreadedSqliteSaver.open(tmp_path / "c.sqlite") as saver:
        graph = _graph().compile(checkpointer=saver)
        threads = [str(uuid.uuid4()) for _ in range(10)]
        async with anyio.create_task_group() as tg:
            for t in threads:
                tg.start_soon(graph.ainvoke, {"log": [t]}, _config(t))
        for t in threads:
            assert (await graph.aget_state(_config(t))).values == {"log": [t, "a", "b"]}
            assert len([c async for c in saver.alist(_config(t))]) == 4


async def test_delete_run_checkpoints_restores_the_state_before_the_run(tmp_path: Path) -> None:
    async with ThreadedSqliteSaver.open(tmp_path / "c.sqlite") as saver:
        graph = _graph().compile(checkpointer=saver)
        await graph.ainvoke({"log": ["first"]}, _config("t", "run-1"))
        before = [c.checkpoint["id"] async for c in saver.alist(_config("t"))]
        await graph.ainvoke({"log": ["second"]}, _config("t", "run-2"))
        assert await delete_run_checkpoints(saver, "t", "run-2") == 4
        assert [c.checkpoint["id"] async for c in saver.alist(_config("t"))] == before
        assert (await graph.aget_state(_config("t"))).values == {"log": ["first", "a", "b"]}
        assert await delete_run_checkpoints(saver, "t", "run-2") == 0


async def test_copy_thread_copies_every_checkpoint(tmp_path: Path) -> None:
    async with ThreadedSqliteSaver.open(tmp_path / "c.sqlite") as saver:
        graph = _graph().compile(checkpointer=saver)
        await graph.ainvoke({"log": ["x"]}, _config("src"))
        await copy_thread(saver, "src", "dst")
        src = [c.checkpoint["id"] async for c in saver.alist(_config("src"))]
        assert [c.checkpoint["id"] async for c in saver.alist(_config("dst"))] == src
        assert (await graph.aget_state(_config("dst"))).values == {"log": ["x", "a", "b"]}


def _committed_checkpoints(path: Path, thread_id: str) -> int:
    """Checkpoints of ``thread_id`` another connection sees: only committed rows."""
    with sqlite3.connect(str(path)) as other:
        row = other.execute("SELECT COUNT(*) FROM checkpoints WHERE thread_id = ?",
                            (thread_id,)).fetchone()
    return int(row[0])


async def test_a_returned_write_is_committed_even_when_batched(tmp_path: Path) -> None:
    """Group commit: writes queued together share one commit, and none of their callers
    returns before it (another connection sees every checkpoint a finished run wrote)."""
    path = tmp_path / "c.sqlite"
    commits = 0
    async with ThreadedSqliteSaver.open(path) as saver:
        end = saver.group.end

        def counting_end() -> None:
            nonlocal commits
            commits += 1
            end()

        saver.group.end = counting_end  # type: ignore[method-assign]
        graph = _graph().compile(checkpointer=saver)
        threads = [str(uuid.uuid4()) for _ in range(20)]

        async def run_and_check(t: str) -> None:
            await graph.ainvoke({"log": [t]}, _config(t))
            assert _committed_checkpoints(path, t) == 4

        async with anyio.create_task_group() as tg:
            for t in threads:
                tg.start_soon(run_and_check, t)
        writes = 20 * (4 + 3)  # per run: 4 checkpoints, writes of 3 tasks (input, a, b)
        assert 0 < commits < writes, (commits, writes)


async def test_a_failed_call_rolls_back_only_its_own_writes(tmp_path: Path) -> None:
    """``call(fn)`` raising undoes fn's writes, not an earlier checkpoint write of the same
    batch (both are queued behind a busy lane, so they run as one batch)."""
    path = tmp_path / "c.sqlite"
    async with ThreadedSqliteSaver.open(path) as saver:
        def delete_then_fail(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM checkpoints")
            raise RuntimeError("boom")

        async def failing() -> None:
            with pytest.raises(RuntimeError, match="boom"):
                await saver.call(delete_then_fail)

        config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        async with anyio.create_task_group() as tg:
            release = await hold_lane(tg, saver.lane.run)
            tg.start_soon(saver.aput, config, empty_checkpoint(), {}, {})
            await anyio.sleep(0.02)
            tg.start_soon(failing)
            await anyio.sleep(0.02)
            release.set()
        assert _committed_checkpoints(path, "t") == 1


async def test_a_call_failing_with_an_sqlite_error_fails_only_itself(tmp_path: Path) -> None:
    """``call(fn)`` commits the batch so far, then rolls back only fn's work: an SQLite error
    there is not mistaken for SQLite dropping the batch, so the writes queued around it land
    and their callers succeed."""
    path = tmp_path / "c.sqlite"
    async with ThreadedSqliteSaver.open(path) as saver:
        def bad_sql(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM checkpoints")
            conn.execute("INSERT INTO no_such_table VALUES (1)")

        outcomes: list[object] = []

        async def put(thread_id: str) -> None:
            config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
            outcomes.append(await saver.aput(config, empty_checkpoint(), {}, {}))

        async def failing() -> None:
            with pytest.raises(sqlite3.OperationalError, match="no such table"):
                await saver.call(bad_sql)
            outcomes.append("failed")

        async with anyio.create_task_group() as tg:
            release = await hold_lane(tg, saver.lane.run)
            for call in (partial(put, "before"), failing, partial(put, "after")):
                tg.start_soon(call)
                await anyio.sleep(0.02)
            release.set()
        assert len(outcomes) == 3 and "failed" in outcomes
        assert _committed_checkpoints(path, "before") == 1
        assert _committed_checkpoints(path, "after") == 1


class _FlakyGroup(GroupCommit):
    """A group commit whose second ``end()`` fails, as a commit on a full disk would."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self.ends = 0

    def end(self) -> None:
        self.ends += 1
        if self.ends == 2:
            raise sqlite3.OperationalError("disk I/O error")
        super().end()


async def test_a_failed_commit_fails_every_call_of_its_batch() -> None:
    """Calls queued behind a busy lane run as one batch; when that batch's commit raises, no
    caller of the batch is told it succeeded (unbatched, only one call would fail)."""
    lane = ThreadLane("test-lane")
    group = _FlakyGroup(sqlite3.connect(":memory:", check_same_thread=False))
    try:
        lane.group = group
        results: list[object] = []

        async def call(i: int) -> None:
            try:
                results.append(await lane.run(lambda: i))
            except sqlite3.OperationalError as exc:
                results.append(exc)

        async with anyio.create_task_group() as tg:
            release = await hold_lane(tg, lane.run)
            for i in range(5):
                tg.start_soon(call, i)
            await anyio.sleep(0.05)
            release.set()
        assert group.ends == 2
        assert len(results) == 5
        assert all(isinstance(r, sqlite3.OperationalError) for r in results), results
        assert await lane.run(lambda: "after") == "after"  # the lane goes on
    finally:
        await lane.run(group.close)
        lane.close()
