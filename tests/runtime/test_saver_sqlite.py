"""Unit tests of ThreadedSqliteSaver (runtime/saver_sqlite.py) and the checkpointer helpers
that work on its tables (runtime/checkpointer.py): file compatibility with the library's
AsyncSqliteSaver, FIFO order, rollback deletion and thread copy."""

from __future__ import annotations

import operator
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

import aiosqlite
import anyio
import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph

from runtime.checkpointer import copy_thread, delete_run_checkpoints
from runtime.saver_sqlite import ThreadedSqliteSaver

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
