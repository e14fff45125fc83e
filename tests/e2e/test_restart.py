"""Restart: a new gateway process on the same data folder sees exactly what the old one left.

Server A is stopped with SIGTERM (graceful) or SIGKILL (no shutdown code at all); server B is
started on the same SQLite files. Threads, runs, state and history must be identical, and a run
that was in flight when A died is executed again by B and ends ``success`` exactly once.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from langgraph_sdk import get_client

from tests.server import GatewayProcess

MakeGateway = Callable[..., GatewayProcess]


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def contents(values: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["type"], m["content"]) for m in values["messages"]]


async def poll(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float,
               what: str) -> Any:
    """Call ``fetch()`` until ``done(result)``; fail after ``timeout_s`` with the last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await fetch()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {result!r}")
        await anyio.sleep(0.05)


async def record(url: str, thread_id: str) -> dict[str, Any]:
    client = get_client(url=url)
    return {
        "thread": await client.threads.get(thread_id),
        "runs": await client.runs.list(thread_id, limit=100),
        "state": await client.threads.get_state(thread_id),
        "history": await client.threads.get_history(thread_id, limit=100),
        "search": await client.threads.search(ids=[thread_id]),
    }


@pytest.mark.anyio
@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_finished_runs_survive_restart(make_gateway: MakeGateway, how: str) -> None:
    a = make_gateway().start()
    client = get_client(url=a.url)
    thread_id = (await client.threads.create(metadata={"case": how}))["thread_id"]
    await client.runs.wait(thread_id, "echo", input=user("one"))
    await client.runs.wait(thread_id, "echo", input=user("two"))
    before = await record(a.url, thread_id)
    assert [r["status"] for r in before["runs"]] == ["success", "success"]
    assert before["thread"]["status"] == "idle"
    assert contents(before["state"]["values"]) == [
        ("human", "one"), ("ai", "echo: one"), ("human", "two"), ("ai", "echo: two")]
    assert len(before["history"]) == 8

    if how == "sigterm":
        # a graceful exit: 0, or uvicorn re-raising the captured SIGTERM after its shutdown
        assert a.stop() in (0, -signal.SIGTERM)
    else:
        a.kill()
    b = make_gateway().start()
    after = await record(b.url, thread_id)

    assert after["thread"] == before["thread"]
    assert after["runs"] == before["runs"]
    assert [r["status"] for r in after["runs"]] == ["success", "success"]
    assert after["state"] == before["state"]
    assert [s["checkpoint_id"] for s in after["history"]] == [
        s["checkpoint_id"] for s in before["history"]]
    assert after["history"] == before["history"]
    assert after["search"] == before["search"]
    client_b = get_client(url=b.url)
    for run in before["runs"]:
        assert await client_b.runs.get(thread_id, run["run_id"]) == run

    # B keeps working on the same thread
    result = await client_b.runs.wait(thread_id, "echo", input=user("three"))
    assert contents(result)[-1] == ("ai", "echo: three")
    assert len(await client_b.runs.list(thread_id)) == 3


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_in_flight_run_is_recovered_after_sigkill(make_gateway: MakeGateway) -> None:
    a = make_gateway().start()
    client = get_client(url=a.url)
    # graph_id up front so the state is readable while the first run is in flight
    thread_id = (await client.threads.create(graph_id="echo"))["thread_id"]
    text = "slow one"
    run = await client.runs.create(thread_id, "echo", input=user(text),
                                   config={"configurable": {"delay": 3}})
    run_id = run["run_id"]
    await poll(lambda: client.runs.get(thread_id, run_id),
               lambda r: r["status"] == "running", 10, "the run to start")
    # the input is checkpointed and `prepare` is sleeping: the run is truly in flight
    await poll(lambda: client.threads.get_state(thread_id),
               lambda s: s["next"] == ["prepare"], 10, "the step-0 checkpoint")
    a.kill()

    b = make_gateway().start()
    client_b = get_client(url=b.url)
    final = await poll(lambda: client_b.runs.get(thread_id, run_id),
                       lambda r: r["status"] not in ("pending", "running"), 30,
                       "the recovered run to finish")
    assert final["status"] == "success"
    runs = await client_b.runs.list(thread_id)
    assert [(r["run_id"], r["status"]) for r in runs] == [(run_id, "success")]

    thread = await client_b.threads.get(thread_id)
    assert thread["status"] == "idle"
    messages = contents(thread["values"])
    assert messages.count(("ai", f"echo: {text}")) == 1, messages
    assert messages.count(("human", text)) == 1, messages  # input not applied twice
    assert messages == [("human", text), ("ai", f"echo: {text}")]
    state = await client_b.threads.get_state(thread_id)
    assert state["values"] == thread["values"]
    assert state["next"] == []
    assert state["metadata"]["run_attempt"] == 2  # executed again by B, not finished by A
    history = await client_b.threads.get_history(thread_id, limit=100)
    assert [h["metadata"]["step"] for h in history] == [2, 1, 0, -1]  # resumed, not restarted
