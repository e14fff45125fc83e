"""The PostgreSQL checkpointer (runtime/checkpointer.py): AsyncPostgresSaver set up safely by
processes that start together, and the thread operations it lacks (copy, delete a run's
checkpoints for rollback), against a real PostgreSQL database of this test's own."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from langgraph.graph import END, START, MessagesState, StateGraph

from runtime.checkpointer import copy_thread, delete_run_checkpoints, open_checkpointer

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def graph(saver: Any) -> Any:
    builder = StateGraph(MessagesState)
    builder.add_node("reply", lambda s: {"messages": [("ai", "re: " + s["messages"][-1].content)]})
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=saver)


def config(thread_id: str, run_id: str | None = None) -> dict[str, Any]:
    configurable: dict[str, Any] = {"thread_id": thread_id}
    if run_id:
        configurable["run_id"] = run_id
    return {"configurable": configurable, "metadata": {"run_id": run_id} if run_id else {}}


async def contents(g: Any, thread_id: str) -> list[str]:
    state = await g.aget_state(config(thread_id))
    return [m.content for m in state.values.get("messages", [])]


async def test_concurrent_setup_then_copy_and_rollback(pg_url: str) -> None:
    async def open_once() -> None:
        async with open_checkpointer("postgres", None, pg_url):
            pass

    async with anyio.create_task_group() as tg:  # four processes starting together
        for _ in range(4):
            tg.start_soon(open_once)

    async with open_checkpointer("postgres", None, pg_url, pool_max_size=2) as saver:
        g = graph(saver)
        await g.ainvoke({"messages": [("user", "one")]}, config("t", "run-1"))
        await g.ainvoke({"messages": [("user", "two")]}, config("t", "run-2"))
        assert await contents(g, "t") == ["one", "re: one", "two", "re: two"]

        await copy_thread(saver, "t", "copy")
        assert await contents(g, "copy") == await contents(g, "t")

        deleted = await delete_run_checkpoints(saver, "t", "run-2")
        assert deleted >= 2  # the input checkpoint and the step's
        assert await contents(g, "t") == ["one", "re: one"]
        assert await contents(g, "copy") == ["one", "re: one", "two", "re: two"]
        assert await delete_run_checkpoints(saver, "t", "run-2") == 0
