"""End-to-end: /wait, /join, errors, HITL, cancel, on_disconnect, multitask and run CRUD.

Official Python SDK against a real gateway process (``gateway_url``); raw httpx where the status
code, headers or exact body matter (protocol.md sections 2, 5.3, 6, 7, 8).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any

import anyio
import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError

pytestmark = pytest.mark.anyio

NO_MATCHING_RUNS = ("No matching runs to cancel. Please verify the thread ID and run IDs are "
                    "correct, and the runs haven't been deleted or completed.")
THREAD_BUSY = ("Thread is already running a task. Wait for it to finish or choose a different "
               "multitask strategy.")


def human(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def delay(seconds: float) -> dict[str, Any]:
    return {"configurable": {"delay": seconds}}


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


async def wait_running(client: LangGraphClient, thread_id: str, run_id: str) -> None:
    async def fetch() -> str:
        return await run_status(client, thread_id, run_id)

    await poll(fetch, lambda s: s == "running")


def contents(values: dict[str, Any]) -> list[str]:
    return [m["content"] for m in values["messages"]]


def parse_sse(body: bytes) -> list[tuple[str, Any]]:
    events = []
    for frame in body.split(b"\r\n\r\n"):
        lines = [ln for ln in frame.split(b"\r\n") if ln and not ln.startswith(b":")]
        if not lines:
            continue
        fields = dict(ln.decode().partition(": ")[::2] for ln in lines)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


# ---- 5. wait / join / errors --------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_wait_returns_final_values(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    result = await client.runs.wait(thread_id, "echo", input=human("hello"))
    assert isinstance(result, dict)
    assert contents(result) == ["hello", "echo: hello"]
    assert result["messages"][-1]["type"] == "ai"
    thread = await client.threads.get(thread_id)
    assert thread["status"] == "idle"
    assert thread["values"] == result
    runs = await client.runs.list(thread_id)
    assert [r["status"] for r in runs] == ["success"]


@pytest.mark.timeout(30)
async def test_stateless_wait(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    result = await client.runs.wait(None, "echo", input=human("nothread"))
    assert isinstance(result, dict)
    assert contents(result)[-1] == "echo: nothread"
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        res = await http.post("/runs/wait", json={"assistant_id": "echo", "input": human("raw")})
        assert res.status_code == 200
        assert contents(res.json())[-1] == "echo: raw"
        m = re.fullmatch(r"/threads/([0-9a-f-]{36})/runs/([0-9a-f-]{36})/join",
                         res.headers["location"])
        assert m, res.headers["location"]
        # the temporary thread is deleted once the run is over
        assert (await http.get(f"/threads/{m.group(1)}")).status_code == 404


@pytest.mark.timeout(30)
async def test_wait_headers(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        res = await http.post(f"/threads/{thread_id}/runs/wait",
                              json={"assistant_id": "echo", "input": human("hdr")})
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("application/json")
    m = re.fullmatch(rf"/threads/{thread_id}/runs/([0-9a-f-]{{36}})", res.headers[
        "content-location"])
    assert m, res.headers["content-location"]
    run_id = m.group(1)
    assert res.headers["location"] == f"/threads/{thread_id}/runs/{run_id}/join"
    assert contents(res.json())[-1] == "echo: hdr"
    assert (await client.runs.get(thread_id, run_id))["status"] == "success"


@pytest.mark.timeout(30)
async def test_wait_failing_graph_raises_in_sdk(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    with pytest.raises(Exception) as info:
        await client.runs.wait(thread_id, "fail", input=human("oops"))
    assert "ValueError" in str(info.value)
    assert "deliberate failure" in str(info.value)
    thread = await client.threads.get(thread_id)
    assert thread["status"] == "error"
    assert thread.get("error") == {"error": "ValueError", "message": "deliberate failure: oops"}
    runs = await client.runs.list(thread_id)
    assert [r["status"] for r in runs] == ["error"]


@pytest.mark.timeout(30)
async def test_raw_wait_failing_graph_is_200_with_error_body(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        res = await http.post(f"/threads/{thread_id}/runs/wait",
                              json={"assistant_id": "fail", "input": human("raw")})
    assert res.status_code == 200
    assert res.json() == {"__error__": {"error": "ValueError",
                                        "message": "deliberate failure: raw"}}


@pytest.mark.timeout(30)
async def test_stream_failing_graph_ends_with_error_event(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    events = [(p.event, p.data) async for p in client.runs.stream(
        thread_id, "fail", input=human("streamed"), stream_mode=["values", "updates"])]
    assert events[0][0] == "metadata"
    assert events[-1] == ("error", {"error": "ValueError",
                                    "message": "deliberate failure: streamed"})
    assert [e[0] for e in events].count("error") == 1
    run_id = events[0][1]["run_id"]
    assert await run_status(client, thread_id, run_id) == "error"
    assert (await client.threads.get(thread_id))["status"] == "error"


@pytest.mark.timeout(30)
async def test_join_finished_and_running_runs(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    finished = await client.runs.create(thread_id, "echo", input=human("one"))
    result = await client.runs.join(thread_id, finished["run_id"])
    assert contents(result) == ["one", "echo: one"]
    # joining again once it is over returns the same values
    assert await client.runs.join(thread_id, finished["run_id"]) == result

    running = await client.runs.create(thread_id, "echo", input=human("two"), config=delay(0.6))
    await wait_running(client, thread_id, running["run_id"])
    with anyio.fail_after(10):
        result = await client.runs.join(thread_id, running["run_id"])
    assert contents(result) == ["one", "echo: one", "two", "echo: two"]
    assert await run_status(client, thread_id, running["run_id"]) == "success"


@pytest.mark.timeout(30)
async def test_join_failed_run_returns_error_body(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    run = await client.runs.create(thread_id, "fail", input=human("j"))
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        res = await http.get(f"/threads/{thread_id}/runs/{run['run_id']}/join")
    assert res.status_code == 200
    assert res.json() == {"__error__": {"error": "ValueError",
                                        "message": "deliberate failure: j"}}


# ---- 6. human in the loop -----------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_hitl_interrupt_and_resume(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    result = await client.runs.wait(thread_id, "hitl", input=human("ship it"))
    assert isinstance(result, dict)
    interrupts = result["__interrupt__"]
    assert len(interrupts) == 1
    assert interrupts[0]["value"] == {"question": "approve?", "draft": "ship it"}
    assert re.fullmatch(r"[0-9a-f]{32}", interrupts[0]["id"])
    assert contents(result) == ["ship it"]

    thread = await client.threads.get(thread_id)
    assert thread["status"] == "interrupted"
    state = await client.threads.get_state(thread_id)
    assert state["next"] == ["ask"]
    assert state["tasks"][0]["interrupts"] == [{"id": interrupts[0]["id"],
                                                "value": interrupts[0]["value"]}]
    runs = await client.runs.list(thread_id)
    assert runs[0]["status"] == "success"  # a run stopped by interrupt() is a success

    resumed = await client.runs.wait(thread_id, "hitl", command={"resume": "yes"})
    assert isinstance(resumed, dict)
    assert "__interrupt__" not in resumed
    assert resumed["answer"] == "yes"
    assert contents(resumed) == ["ship it", "approved: yes"]
    assert (await client.threads.get(thread_id))["status"] == "idle"
    assert (await client.threads.get_state(thread_id))["next"] == []


@pytest.mark.timeout(30)
async def test_hitl_interrupt_in_values_and_updates_stream(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    events = [(p.event, p.data) async for p in client.runs.stream(
        thread_id, "hitl", input=human("s"), stream_mode=["values", "updates"])]
    updates = [d for n, d in events if n == "updates"]
    assert updates[-1]["__interrupt__"][0]["value"] == {"question": "approve?", "draft": "s"}
    assert events[-1][0] == "values"
    assert events[-1][1]["__interrupt__"][0]["value"] == {"question": "approve?", "draft": "s"}


@pytest.mark.timeout(30)
async def test_hitl_interrupt_before(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    await client.runs.wait(thread_id, "hitl", input=human("ib"))
    paused = await client.runs.wait(thread_id, "hitl", command={"resume": "ok"},
                                    interrupt_before=["finish"])
    assert isinstance(paused, dict)
    assert "__interrupt__" not in paused
    assert paused["answer"] == "ok"
    assert contents(paused) == ["ib"]
    assert (await client.threads.get(thread_id))["status"] == "interrupted"
    assert (await client.threads.get_state(thread_id))["next"] == ["finish"]

    done = await client.runs.wait(thread_id, "hitl", input=None)
    assert isinstance(done, dict)
    assert contents(done) == ["ib", "approved: ok"]
    assert (await client.threads.get(thread_id))["status"] == "idle"


# ---- 7. cancel and on_disconnect ----------------------------------------------------------


@pytest.mark.timeout(30)
async def test_cancel_running_run_with_wait(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    run = await client.runs.create(thread_id, "echo", input=human("slow"), config=delay(5))
    await wait_running(client, thread_id, run["run_id"])

    async def next_nodes() -> list[str]:
        return list((await client.threads.get_state(thread_id))["next"])

    # "running" is stored at admission; under load the graph may not have written its input
    # checkpoint yet, and a run cancelled before that leaves an idle thread (correctly):
    # cancel once the run is inside "prepare", which is what this test is about
    await poll(next_nodes, lambda n: n == ["prepare"])
    with anyio.fail_after(3):
        await client.runs.cancel(thread_id, run["run_id"], wait=True)
    assert await run_status(client, thread_id, run["run_id"]) == "interrupted"
    thread = await client.threads.get(thread_id)
    assert thread["status"] == "interrupted"
    state = await client.threads.get_state(thread_id)
    assert state["next"] == ["prepare"]
    assert contents(state["values"]) == ["slow"]


@pytest.mark.timeout(30)
async def test_cancel_without_wait_is_202(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    run = await client.runs.create(thread_id, "echo", input=human("slow"), config=delay(5))
    run_id = run["run_id"]
    await wait_running(client, thread_id, run_id)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        res = await http.post(f"/threads/{thread_id}/runs/{run_id}/cancel",
                              params={"wait": 0, "action": "interrupt"})
    assert res.status_code == 202
    assert res.content == b""

    async def fetch() -> str:
        return await run_status(client, thread_id, run_id)

    await poll(fetch, lambda s: s == "interrupted", timeout_s=3)

    async def thread_status() -> str:
        return str((await client.threads.get(thread_id))["status"])

    await poll(thread_status, lambda s: s == "interrupted", timeout_s=3)


@pytest.mark.timeout(30)
async def test_cancel_finished_run_is_404(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    run = await client.runs.create(thread_id, "echo", input=human("fast"))
    await client.runs.join(thread_id, run["run_id"])
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        res = await http.post(f"/threads/{thread_id}/runs/{run['run_id']}/cancel")
    assert res.status_code == 404
    assert res.json() == {"detail": NO_MATCHING_RUNS}
    with pytest.raises(NotFoundError):
        await client.runs.cancel(thread_id, run["run_id"])
    assert await run_status(client, thread_id, run["run_id"]) == "success"


async def stream_then_drop(gateway_url: str, thread_id: str, body: dict[str, Any]) -> str:
    """POST a stream, read until prepare's custom event, then close the connection.

    Returns the run id (from Content-Location).
    """
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http, http.stream(
        "POST", f"/threads/{thread_id}/runs/stream", json=body,
    ) as res:
        assert res.status_code == 200
        run_id = res.headers["content-location"].rsplit("/", 1)[1]
        buffer = b""
        with anyio.fail_after(5):
            async for chunk in res.aiter_raw():
                buffer += chunk
                if b"event: custom" in buffer:
                    break
    return run_id


@pytest.mark.timeout(30)
async def test_on_disconnect_cancel_interrupts_the_run(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    run_id = await stream_then_drop(gateway_url, thread_id, {
        "assistant_id": "echo", "input": human("bye"), "config": delay(5),
        "stream_mode": ["custom"], "on_disconnect": "cancel"})

    async def fetch() -> str:
        return await run_status(client, thread_id, run_id)

    await poll(fetch, lambda s: s == "interrupted", timeout_s=4)


@pytest.mark.timeout(30)
async def test_on_disconnect_default_continue_finishes_the_run(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    run_id = await stream_then_drop(gateway_url, thread_id, {
        "assistant_id": "echo", "input": human("stay"), "config": delay(0.5),
        "stream_mode": ["custom"]})
    assert await run_status(client, thread_id, run_id) == "running"

    async def fetch() -> str:
        return await run_status(client, thread_id, run_id)

    await poll(fetch, lambda s: s not in ("pending", "running"))
    assert await run_status(client, thread_id, run_id) == "success"
    assert contents((await client.threads.get(thread_id))["values"])[-1] == "echo: stay"


# ---- 8. multitask -------------------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_multitask_reject_is_409(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    first = await client.runs.create(thread_id, "echo", input=human("first"), config=delay(1))
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        res = await http.post(f"/threads/{thread_id}/runs", json={
            "assistant_id": "echo", "input": human("second"), "multitask_strategy": "reject"})
        assert res.status_code == 409
        assert res.json() == {"detail": THREAD_BUSY}
        res = await http.post(f"/threads/{thread_id}/runs/stream", json={
            "assistant_id": "echo", "input": human("third"), "multitask_strategy": "reject"})
        assert res.status_code == 409
        assert res.json() == {"detail": THREAD_BUSY}
    final = await client.runs.join(thread_id, first["run_id"])
    assert contents(final) == ["first", "echo: first"]
    runs = await client.runs.list(thread_id)
    assert [r["run_id"] for r in runs] == [first["run_id"]]
    assert runs[0]["status"] == "success"


@pytest.mark.timeout(30)
async def test_multitask_default_enqueue(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    first = await client.runs.create(thread_id, "echo", input=human("first"), config=delay(0.6))
    await wait_running(client, thread_id, first["run_id"])
    second = await client.runs.create(thread_id, "echo", input=human("second"))
    assert second["multitask_strategy"] == "enqueue"
    assert await run_status(client, thread_id, second["run_id"]) == "pending"
    assert await run_status(client, thread_id, first["run_id"]) == "running"
    assert (await client.threads.get(thread_id))["status"] == "busy"

    final = await client.runs.join(thread_id, second["run_id"])
    assert contents(final) == ["first", "echo: first", "second", "echo: second"]
    assert await run_status(client, thread_id, first["run_id"]) == "success"
    assert await run_status(client, thread_id, second["run_id"]) == "success"
    assert (await client.threads.get(thread_id))["status"] == "idle"


# ---- 9. list / get / delete ---------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_runs_list_get_delete(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    a = await client.runs.create(thread_id, "echo", input=human("a"),
                                 metadata={"tag": "first"})
    await client.runs.join(thread_id, a["run_id"])
    b = await client.runs.create(thread_id, "echo", input=human("b"))
    await client.runs.join(thread_id, b["run_id"])

    runs = await client.runs.list(thread_id)
    assert [r["run_id"] for r in runs] == [b["run_id"], a["run_id"]]  # newest first
    assert all(r["thread_id"] == thread_id for r in runs)
    assert [r["run_id"] for r in await client.runs.list(thread_id, limit=1)] == [b["run_id"]]
    assert [r["run_id"] for r in await client.runs.list(thread_id, limit=1, offset=1)] == [
        a["run_id"]]

    got = await client.runs.get(thread_id, a["run_id"])
    assert got["run_id"] == a["run_id"]
    assert got["status"] == "success"
    assert got["metadata"]["tag"] == "first"
    assert got["kwargs"]["input"] == human("a")
    assert got["assistant_id"] == "046b5dc7-2108-582c-9c6c-31d556d138f0"

    await client.runs.delete(thread_id, a["run_id"])
    with pytest.raises(NotFoundError):
        await client.runs.get(thread_id, a["run_id"])
    assert [r["run_id"] for r in await client.runs.list(thread_id)] == [b["run_id"]]
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        res = await http.get(f"/threads/{thread_id}/runs/{a['run_id']}")
        assert res.status_code == 404
        assert res.json() == {"detail": "Not Found"}
        res = await http.delete(f"/threads/{thread_id}/runs/{a['run_id']}")
        assert res.status_code == 404
        assert res.json() == {"detail": "Run not found"}


# ---- extra: queued cancel, rollback, interrupt strategies, cancel_on_disconnect ----------


@pytest.mark.timeout(30)
async def test_cancel_queued_run_keeps_thread_busy(gateway_url: str) -> None:
    """protocol.md 10.5: cancelling a pending run does not mark a busy thread idle."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    first = await client.runs.create(thread_id, "echo", input=human("first"), config=delay(0.8))
    await wait_running(client, thread_id, first["run_id"])
    queued = await client.runs.create(thread_id, "echo", input=human("queued"))
    assert await run_status(client, thread_id, queued["run_id"]) == "pending"
    await client.runs.cancel(thread_id, queued["run_id"])
    assert await run_status(client, thread_id, queued["run_id"]) == "interrupted"
    assert await run_status(client, thread_id, first["run_id"]) == "running"
    assert (await client.threads.get(thread_id))["status"] == "busy"

    final = await client.runs.join(thread_id, first["run_id"])
    assert contents(final) == ["first", "echo: first"]  # the cancelled run never ran
    assert (await client.threads.get(thread_id))["status"] == "idle"


async def wait_in_prepare(client: LangGraphClient, thread_id: str, run_id: str) -> None:
    """Until the run has emitted prepare's custom event (it is inside prepare's sleep).

    The run must have been created with ``"custom"`` among its stream modes.
    """
    with anyio.fail_after(10):
        async with aclosing(client.runs.join_stream(thread_id, run_id, last_event_id="-1")) as s:
            async for part in s:
                if part.event == "custom":
                    return
    raise AssertionError("the run ended before prepare's custom event")


@pytest.mark.timeout(30)
async def test_cancel_rollback_deletes_run_and_frees_thread(gateway_url: str) -> None:
    """protocol.md 5.3 + 10.5: rollback deletes the run, restores state, thread not busy."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    await client.runs.wait(thread_id, "echo", input=human("kept"))
    run = await client.runs.create(thread_id, "echo", input=human("gone"), config=delay(5),
                                   stream_mode=["values", "custom"])
    await wait_in_prepare(client, thread_id, run["run_id"])
    with anyio.fail_after(3):
        await client.runs.cancel(thread_id, run["run_id"], wait=True, action="rollback")
    thread = await client.threads.get(thread_id)
    assert thread["status"] == "idle"
    state = await client.threads.get_state(thread_id)
    assert contents(state["values"]) == ["kept", "echo: kept"]
    assert len(await client.runs.list(thread_id)) == 1
    with pytest.raises(NotFoundError):
        await client.runs.get(thread_id, run["run_id"])


@pytest.mark.timeout(30)
async def test_cancel_rollback_right_after_start_leaves_no_checkpoint(gateway_url: str) -> None:
    """Rollback must remove every checkpoint of the run, however early it comes."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    run = await client.runs.create(thread_id, "echo", input=human("early"), config=delay(5))
    await wait_running(client, thread_id, run["run_id"])
    with anyio.fail_after(3):
        await client.runs.cancel(thread_id, run["run_id"], wait=True, action="rollback")
    state = await client.threads.get_state(thread_id)
    assert state["values"] == {} and state["next"] == [], state
    assert await client.threads.get_history(thread_id) == []
    assert (await client.threads.get(thread_id))["status"] == "idle"


@pytest.mark.timeout(30)
async def test_multitask_interrupt(gateway_url: str) -> None:
    """protocol.md 7: A is interrupted at once, B runs on A's checkpointed input."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    a = await client.runs.create(thread_id, "echo", input=human("first"), config=delay(5),
                                 stream_mode=["values", "custom"])
    await wait_in_prepare(client, thread_id, a["run_id"])
    b = await client.runs.create(thread_id, "echo", input=human("second"),
                                 multitask_strategy="interrupt")
    with anyio.fail_after(5):
        final = await client.runs.join(thread_id, b["run_id"])
    assert contents(final) == ["first", "second", "echo: second"]
    assert await run_status(client, thread_id, a["run_id"]) == "interrupted"
    assert await run_status(client, thread_id, b["run_id"]) == "success"
    assert (await client.threads.get(thread_id))["status"] == "idle"


@pytest.mark.timeout(30)
async def test_multitask_rollback(gateway_url: str) -> None:
    """protocol.md 7: A is deleted with its checkpoints; B runs on the pre-A state."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    a = await client.runs.create(thread_id, "echo", input=human("first"), config=delay(5),
                                 stream_mode=["values", "custom"])
    await wait_in_prepare(client, thread_id, a["run_id"])
    b = await client.runs.create(thread_id, "echo", input=human("second"),
                                 multitask_strategy="rollback")
    with anyio.fail_after(5):
        final = await client.runs.join(thread_id, b["run_id"])
    assert contents(final) == ["second", "echo: second"]
    assert await run_status(client, thread_id, b["run_id"]) == "success"
    assert [r["run_id"] for r in await client.runs.list(thread_id)] == [b["run_id"]]
    assert (await client.threads.get(thread_id))["status"] == "idle"
    with pytest.raises(NotFoundError):
        await client.runs.get(thread_id, a["run_id"])


@pytest.mark.timeout(30)
async def test_join_stream_cancel_on_disconnect(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    run = await client.runs.create(thread_id, "echo", input=human("j"), config=delay(5),
                                   stream_mode=["custom"])
    run_id = run["run_id"]
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http, http.stream(
        "GET", f"/threads/{thread_id}/runs/{run_id}/stream",
        params={"cancel_on_disconnect": "true"}, headers={"Last-Event-ID": "-1"},
    ) as res:
        assert res.status_code == 200
        buffer = b""
        with anyio.fail_after(5):
            async for chunk in res.aiter_raw():
                buffer += chunk
                if b"event: custom" in buffer:
                    break

    async def fetch() -> str:
        return await run_status(client, thread_id, run_id)

    await poll(fetch, lambda s: s == "interrupted", timeout_s=4)


@pytest.mark.timeout(30)
async def test_join_stream_without_cancel_flag_does_not_cancel(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    run = await client.runs.create(thread_id, "echo", input=human("k"), config=delay(0.5),
                                   stream_mode=["custom"])
    run_id = run["run_id"]
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http, http.stream(
        "GET", f"/threads/{thread_id}/runs/{run_id}/stream", headers={"Last-Event-ID": "-1"},
    ) as res:
        with anyio.fail_after(5):
            async for chunk in res.aiter_raw():
                if b"event: custom" in chunk:
                    break
    final = await client.runs.join(thread_id, run_id)
    assert contents(final)[-1] == "echo: k"
    assert await run_status(client, thread_id, run_id) == "success"


@pytest.mark.timeout(30)
async def test_raw_cancel_with_wait_is_200_json(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    run = await client.runs.create(thread_id, "echo", input=human("w"), config=delay(5))
    await wait_running(client, thread_id, run["run_id"])
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        with anyio.fail_after(3):
            res = await http.post(f"/threads/{thread_id}/runs/{run['run_id']}/cancel",
                                  params={"wait": 1})
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("application/json")
    assert isinstance(res.json(), dict)
    assert await run_status(client, thread_id, run["run_id"]) == "interrupted"


@pytest.mark.timeout(30)
async def test_join_stream_of_pending_run_gets_everything(gateway_url: str) -> None:
    """protocol.md 5.1: joining a pending (queued) run without Last-Event-ID yields it all."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    first = await client.runs.create(thread_id, "echo", input=human("first"), config=delay(0.6))
    await wait_running(client, thread_id, first["run_id"])
    second = await client.runs.create(thread_id, "echo", input=human("second"),
                                      stream_mode=["values", "custom"])
    assert await run_status(client, thread_id, second["run_id"]) == "pending"
    events = [(p.event, p.data) async for p in client.runs.join_stream(
        thread_id, second["run_id"])]
    assert [e[0] for e in events] == ["metadata", "values", "custom", "custom", "values"]
    assert events[0][1] == {"run_id": second["run_id"], "attempt": 1}
    assert contents(events[-1][1]) == ["first", "echo: first", "second", "echo: second"]


async def _post_and_drop_at_once(gateway_url: str, path: str, body: dict[str, Any]) -> None:
    """Send the whole request on a raw socket and close it without reading a byte."""
    host, port = gateway_url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send(request)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("endpoint", ["wait", "stream"])
async def test_on_disconnect_cancel_when_the_client_leaves_before_the_response(
    gateway_url: str, endpoint: str
) -> None:
    """A client that drops right after sending (before any response byte) still cancels its
    run: ``on_disconnect`` does not depend on the response body having started."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    await _post_and_drop_at_once(gateway_url, f"/threads/{thread_id}/runs/{endpoint}", {
        "assistant_id": "echo", "input": human("gone"), "config": delay(3),
        "on_disconnect": "cancel"})
    runs = await poll(lambda: client.runs.list(thread_id), lambda rs: len(rs) == 1)

    async def fetch() -> str:
        return await run_status(client, thread_id, runs[0]["run_id"])

    await poll(fetch, lambda s: s == "interrupted", timeout_s=2.5)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("cancel_flag", [True, False])
async def test_join_cancel_on_disconnect(gateway_url: str, cancel_flag: bool) -> None:
    """``GET .../join?cancel_on_disconnect=true``: a joiner that leaves interrupts the run;
    without the flag the run goes on to ``success``."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    run = await client.runs.create(thread_id, "echo", input=human("j"), config=delay(1.5))
    run_id = run["run_id"]
    await wait_running(client, thread_id, run_id)
    params = {"cancel_on_disconnect": "true"} if cancel_flag else {}
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http, http.stream(
        "GET", f"/threads/{thread_id}/runs/{run_id}/join", params=params,
    ) as res:
        assert res.status_code == 200
        await anyio.sleep(0.3)  # the join is waiting; then the client leaves

    async def fetch() -> str:
        return await run_status(client, thread_id, run_id)

    expected = "interrupted" if cancel_flag else "success"
    assert await poll(fetch, lambda s: s not in ("pending", "running"), timeout_s=6) == expected
