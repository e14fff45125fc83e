"""One gateway per data dir (runtime/datadir.py), with real processes.

A second ``gateway serve`` on a live data dir must exit with status 2 and one line naming the
data dir and the pid that holds it, before it opens or recovers anything; the first keeps
serving and its run finishes on its first attempt (before the lock, the second process's
recovery re-queued that run and executed it a second time).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from langgraph_sdk import get_client

from tests.server import ROOT, GatewayProcess, free_port

MakeGateway = Callable[..., GatewayProcess]


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_second_gateway_on_a_live_data_dir_exits_2(make_gateway: MakeGateway) -> None:
    first = make_gateway().start()
    assert first.proc is not None
    client = get_client(url=first.url)
    thread_id = str((await client.threads.create())["thread_id"])
    run = await client.runs.create(thread_id, "steps", input=user("once"),
                                   config={"configurable": {"delay": 1.0}})
    # the run is executing in the first process while the second starts
    with anyio.fail_after(10):
        async for part in client.runs.join_stream(thread_id, run["run_id"]):
            if part.event == "metadata":  # the run has started
                break
    assert (await client.runs.get(thread_id, run["run_id"]))["status"] == "running"

    with anyio.fail_after(30):
        second = await anyio.run_process(
            [sys.executable, "-m", "gateway", "serve", "--config", str(first.config),
             "--port", str(free_port()), "--log-level", "warning"],
            cwd=ROOT, check=False)
    stderr = second.stderr.decode()
    assert second.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    data_dir = (first.config.parent / "data").resolve()
    assert str(data_dir) in lines[0]
    assert f"process {first.proc.pid}" in lines[0]
    assert "Traceback" not in stderr

    # the first gateway is unaffected: its run ends once, on attempt 1
    with anyio.fail_after(20):
        events = [(p.event, p.data) async for p in client.runs.join_stream(
            thread_id, run["run_id"], last_event_id="-1")]
    assert events[0] == ("metadata", {"run_id": run["run_id"], "attempt": 1})
    finished = await client.runs.get(thread_id, run["run_id"])
    assert finished["status"] == "success"
    state = await client.threads.get_state(thread_id)
    assert [m["content"] for m in state["values"]["messages"]] == [
        "once", "first: once", "second: once", "third: once"]
    assert "recovered" not in first.log()
    assert first.proc.poll() is None


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_the_lock_dies_with_its_process(make_gateway: MakeGateway) -> None:
    """SIGKILL leaves the lock file behind but not the lock: a restart is never blocked."""
    first = make_gateway().start()
    first.kill()
    second = make_gateway().start()
    assert (await get_client(url=second.url).threads.search()) == []
