"""End-to-end: cancelling runs — one run (running or queued, interrupt or rollback, with and
without ``wait``), many runs (``POST /runs/cancel``), and cancel racing the run's own end.

Official Python SDK against a real gateway process (``gateway_url``); raw httpx where the status
code or the exact body matters. Follows protocol.md 5.3 and 10.5 and design.md 4.3: cancel is a
durable intent, idempotent in effect, ``wait=1`` returns after the final status is stored, a
cancelled queued run never starts and never makes a busy thread ``idle``, rollback deletes the
run and restores the thread's history exactly.
"""

from __future__ import annotations

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
ACTIVE = ("pending", "running")


# ---- helpers -------------------------------------------------------------------------------


def human(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def delay(seconds: float) -> dict[str, Any]:
    return {"configurable": {"delay": seconds}}


def contents(values: dict[str, Any] | None) -> list[str]:
    return [m["content"] for m in (values or {}).get("messages", [])]


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


async def wait_in_prepare(client: LangGraphClient, thread_id: str, run_id: str) -> None:
    """Until the run (created with ``"custom"`` among its modes) is inside prepare's sleep."""
    with anyio.fail_after(10):
        async with aclosing(client.runs.join_stream(thread_id, run_id,
                                                    last_event_id="-1")) as parts:
            async for part in parts:
                if part.event == "custom":
                    return
    raise AssertionError("the run ended before prepare's custom event")


async def start_slow(client: LangGraphClient, thread_id: str, text: str,
                     seconds: float = 5.0) -> str:
    """An echo run that is inside ``prepare``'s sleep when this returns."""
    run = await client.runs.create(thread_id, "echo", input=human(text), config=delay(seconds),
                                   stream_mode=["values", "custom"])
    await wait_in_prepare(client, thread_id, str(run["run_id"]))
    return str(run["run_id"])


async def queue_behind(client: LangGraphClient, thread_id: str, text: str) -> str:
    run = await client.runs.create(thread_id, "echo", input=human(text),
                                   stream_mode=["values", "custom"])
    assert run["status"] == "pending"
    return str(run["run_id"])


async def raw_cancel(
    http: httpx.AsyncClient, thread_id: str, run_id: str, action: str, wait: bool
) -> httpx.Response:
    return await http.post(f"/threads/{thread_id}/runs/{run_id}/cancel",
                           params={"wait": int(wait), "action": action})


def assert_cancel_response(res: httpx.Response, wait: bool) -> None:
    if wait:
        assert res.status_code == 200, res.text
        assert res.headers["content-type"].startswith("application/json")
        assert isinstance(res.json(), dict)
    else:
        assert res.status_code == 202, res.text
        assert res.content == b""


async def get_or_none(client: LangGraphClient, thread_id: str, run_id: str) -> str | None:
    """The run's status, or None once it is deleted."""
    try:
        return await run_status(client, thread_id, run_id)
    except NotFoundError:
        return None


# ---- one running run -----------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("wait", [True, False], ids=["wait", "nowait"])
@pytest.mark.parametrize("action", ["interrupt", "rollback"])
async def test_cancel_running_run(gateway_url: str, action: str, wait: bool) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    kept = await client.runs.wait(thread_id, "echo", input=human("kept"))
    before = await history(client, thread_id)
    run_id = await start_slow(client, thread_id, "slow")
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        with anyio.fail_after(3):
            res = await raw_cancel(http, thread_id, run_id, action, wait)
        assert_cancel_response(res, wait)
        expected = "interrupted" if action == "interrupt" else None
        if wait:  # the final status is stored before the answer: no polling
            assert await get_or_none(client, thread_id, run_id) == expected
        else:
            await poll(lambda: get_or_none(client, thread_id, run_id),
                       lambda s: s == expected, timeout_s=3)
            await poll(lambda: thread_status(client, thread_id), lambda s: s != "busy",
                       timeout_s=3)
        thread = await client.threads.get(thread_id)
        state = await client.threads.get_state(thread_id)
        runs = await client.runs.list(thread_id)
        if action == "interrupt":
            assert thread["status"] == "interrupted"
            assert state["next"] == ["prepare"]
            assert contents(state["values"]) == ["kept", "echo: kept", "slow"]
            assert [r["run_id"] for r in runs][0] == run_id
        else:
            assert thread["status"] == "idle"
            assert state["next"] == []
            assert state["values"] == kept
            assert thread["values"] == kept
            assert run_id not in [r["run_id"] for r in runs]
            assert len(runs) == 1
            assert await history(client, thread_id) == before  # checkpoint for checkpoint
        # a second cancel finds nothing to cancel, for either action, and changes nothing
        for again in ("interrupt", "rollback"):
            res = await raw_cancel(http, thread_id, run_id, again, wait)
            assert res.status_code == 404, res.text
            assert res.json() == {"detail": NO_MATCHING_RUNS}
    assert await get_or_none(client, thread_id, run_id) == expected
    assert (await client.threads.get(thread_id))["status"] == thread["status"]


@pytest.mark.timeout(30)
async def test_sdk_cancel_with_wait_returns_after_the_stream_ended(gateway_url: str) -> None:
    """design.md 4.7: a stream of a cancelled run has ended when ``cancel(wait=True)`` returns;
    joining it afterwards ends at once and shows no ``metadata`` of a new attempt."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    run_id = await start_slow(client, thread_id, "slow")
    with anyio.fail_after(3):
        await client.runs.cancel(thread_id, run_id, wait=True)
    assert await run_status(client, thread_id, run_id) == "interrupted"
    assert await thread_status(client, thread_id) == "interrupted"
    with anyio.fail_after(3):
        events = [(p.event, p.data) async for p in client.runs.join_stream(
            thread_id, run_id, last_event_id="-1")]
    names = [e[0] for e in events]
    assert names[:3] == ["metadata", "values", "custom"], names
    assert "error" not in names
    assert names.count("metadata") == 1
    assert all("echo: slow" not in contents(d) for n, d in events if n == "values")


# ---- one queued run ------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("wait", [True, False], ids=["wait", "nowait"])
@pytest.mark.parametrize("action", ["interrupt", "rollback"])
async def test_cancel_queued_run(gateway_url: str, action: str, wait: bool) -> None:
    """The queued run never starts; the thread stays busy while A runs (protocol.md 10.5)."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    a = await start_slow(client, thread_id, "first", seconds=0.8)
    b = await queue_behind(client, thread_id, "second")
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        with anyio.fail_after(3):
            res = await raw_cancel(http, thread_id, b, action, wait)
        assert_cancel_response(res, wait)
        expected = "interrupted" if action == "interrupt" else None
        if wait:  # stored before the answer
            assert res.json() == {}
            assert await get_or_none(client, thread_id, b) == expected
        else:
            await poll(lambda: get_or_none(client, thread_id, b), lambda s: s == expected,
                       timeout_s=3)
        assert await run_status(client, thread_id, a) == "running"
        assert await thread_status(client, thread_id) == "busy"
        res = await raw_cancel(http, thread_id, b, action, wait)
        assert res.status_code == 404
        assert res.json() == {"detail": NO_MATCHING_RUNS}

    final = await client.runs.join(thread_id, a)
    assert contents(final) == ["first", "echo: first"]
    assert await run_status(client, thread_id, a) == "success"
    assert await get_or_none(client, thread_id, b) == expected  # still not started
    assert await thread_status(client, thread_id) == "idle"
    state = await client.threads.get_state(thread_id)
    assert contents(state["values"]) == ["first", "echo: first"]
    assert {h["metadata"]["run_id"] for h in await history(client, thread_id)} == {a}
    # it never started: a full replay of its stream has no metadata event, nothing at all
    with anyio.fail_after(3):
        events = [(p.event, p.data) async for p in client.runs.join_stream(
            thread_id, b, last_event_id="-1")]
    assert "metadata" not in [e[0] for e in events]
    if action == "interrupt":
        assert events == []
    else:  # deleted: the reference's answer for an unknown run
        assert events == [("error", {"error": "HTTPException", "message": "404: Run not found"})]


@pytest.mark.timeout(30)
async def test_cancel_delayed_run_on_idle_thread(gateway_url: str) -> None:
    """A pending ``after_seconds`` run is the only active run: cancelling it frees the thread,
    and it does not start when its time comes."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    await client.runs.wait(thread_id, "echo", input=human("kept"))
    run = await client.runs.create(thread_id, "echo", input=human("later"), after_seconds=1)
    assert await thread_status(client, thread_id) == "busy"
    with anyio.fail_after(3):
        await client.runs.cancel(thread_id, run["run_id"], wait=True)
    assert await run_status(client, thread_id, run["run_id"]) == "interrupted"
    assert await thread_status(client, thread_id) == "idle"  # the rest status of "kept"
    with anyio.fail_after(3):  # joining it does not hang
        await client.runs.join(thread_id, run["run_id"])
    # it stays cancelled past its due time (an observation window, not a synchronization)
    with anyio.move_on_after(1.3):
        await poll(lambda: run_status(client, thread_id, run["run_id"]),
                   lambda s: s != "interrupted", timeout_s=2)
        raise AssertionError("the cancelled delayed run changed status")
    assert contents((await client.threads.get(thread_id))["values"]) == ["kept", "echo: kept"]
    assert await thread_status(client, thread_id) == "idle"


# ---- bulk cancel: POST /runs/cancel --------------------------------------------------------


async def bulk_cancel(http: httpx.AsyncClient, body: Any, action: str | None = None,
                      ) -> httpx.Response:
    params = {"action": action} if action else None
    if isinstance(body, bytes):
        return await http.post("/runs/cancel", content=body, params=params,
                               headers={"content-type": "application/json"})
    return await http.post("/runs/cancel", json=body, params=params)


async def settled(client: LangGraphClient, thread_id: str) -> list[dict[str, Any]]:
    """The thread's runs once none is active."""
    return list(await poll(lambda: client.runs.list(thread_id, limit=100),
                           lambda rs: all(r["status"] not in ACTIVE for r in rs), timeout_s=5))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("action", ["interrupt", "rollback"])
async def test_bulk_cancel_by_run_ids(gateway_url: str, action: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    kept = await client.runs.wait(thread_id, "echo", input=human("kept"))
    (kept_run,) = await client.runs.list(thread_id)
    before = await history(client, thread_id)
    a = await start_slow(client, thread_id, "first")
    b = await queue_behind(client, thread_id, "second")
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        res = await bulk_cancel(http, {"run_ids": [a, b], "thread_id": thread_id}, action)
        assert res.status_code == 204, res.text
        assert res.content == b""
        runs = await settled(client, thread_id)
        if action == "interrupt":
            assert [(r["run_id"], r["status"]) for r in runs][:2] == [
                (b, "interrupted"), (a, "interrupted")]
            assert await thread_status(client, thread_id) == "interrupted"
            state = await client.threads.get_state(thread_id)
            assert contents(state["values"]) == ["kept", "echo: kept", "first"]
            assert state["next"] == ["prepare"]
        else:
            left = {a: "A (running)", b: "B (pending)", kept_run["run_id"]: "kept"}
            assert [(left[r["run_id"]], r["status"]) for r in runs] == [("kept", "success")]
            for run_id in (a, b):
                assert await get_or_none(client, thread_id, run_id) is None
            assert await thread_status(client, thread_id) == "idle"
            assert (await client.threads.get(thread_id))["values"] == kept
            assert await history(client, thread_id) == before
        # nothing is left to cancel
        res = await bulk_cancel(http, {"run_ids": [a, b], "thread_id": thread_id}, action)
        assert res.status_code == 404, res.text


@pytest.mark.timeout(30)
async def test_bulk_cancel_pending_leaves_the_running_run(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    a = await start_slow(client, thread_id, "first", seconds=0.8)
    b = await queue_behind(client, thread_id, "second")
    c = await queue_behind(client, thread_id, "third")
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        res = await bulk_cancel(http, {"thread_id": thread_id, "status": "pending"})
    assert res.status_code == 204, res.text
    await poll(lambda: run_status(client, thread_id, c), lambda s: s == "interrupted",
               timeout_s=3)
    assert await run_status(client, thread_id, b) == "interrupted"
    assert await run_status(client, thread_id, a) == "running"
    assert await thread_status(client, thread_id) == "busy"
    final = await client.runs.join(thread_id, a)
    assert contents(final) == ["first", "echo: first"]
    assert [r["status"] for r in await client.runs.list(thread_id)] == [
        "interrupted", "interrupted", "success"]
    assert await thread_status(client, thread_id) == "idle"


@pytest.mark.timeout(30)
async def test_bulk_cancel_running_lets_the_queue_go_on(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    a = await start_slow(client, thread_id, "first")
    b = await queue_behind(client, thread_id, "second")
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        res = await bulk_cancel(http, {"thread_id": thread_id, "status": "running"},
                                "interrupt")
    assert res.status_code == 204, res.text
    with anyio.fail_after(4):
        final = await client.runs.join(thread_id, b)
    assert contents(final) == ["first", "second", "echo: second"]
    assert await run_status(client, thread_id, a) == "interrupted"
    assert await run_status(client, thread_id, b) == "success"
    assert await thread_status(client, thread_id) == "idle"


@pytest.mark.timeout(30)
async def test_bulk_cancel_all_of_a_thread_only(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    other = await new_thread(client)
    a = await start_slow(client, thread_id, "first")
    b = await queue_behind(client, thread_id, "second")
    bystander = await client.runs.create(other, "echo", input=human("other"), config=delay(0.6))
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        res = await bulk_cancel(http, {"thread_id": thread_id, "status": "all"})
    assert res.status_code == 204, res.text
    runs = await settled(client, thread_id)
    assert [(r["run_id"], r["status"]) for r in runs] == [(b, "interrupted"), (a, "interrupted")]
    assert await thread_status(client, thread_id) == "interrupted"
    final = await client.runs.join(other, bystander["run_id"])  # other threads untouched
    assert contents(final) == ["other", "echo: other"]
    assert await run_status(client, other, bystander["run_id"]) == "success"


@pytest.mark.timeout(30)
async def test_bulk_cancel_nothing_matched_is_404(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    done = await client.runs.create(thread_id, "echo", input=human("done"))
    await client.runs.join(thread_id, done["run_id"])
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        for body in (
            {"thread_id": thread_id, "run_ids": [done["run_id"]]},
            {"thread_id": thread_id, "run_ids": ["01a1fe06-877b-73b6-864f-36847fc455e4"]},
            {"thread_id": thread_id, "status": "all"},
            {"thread_id": thread_id, "status": "pending"},
        ):
            res = await bulk_cancel(http, body)
            assert res.status_code == 404, (body, res.status_code, res.text)
            assert res.json() == {"detail": NO_MATCHING_RUNS}, (body, res.text)
    assert await run_status(client, thread_id, done["run_id"]) == "success"
    assert await thread_status(client, thread_id) == "idle"


@pytest.mark.timeout(30)
async def test_bulk_cancel_invalid_body_is_422_and_changes_nothing(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    a = await start_slow(client, thread_id, "first", seconds=5)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        for body in (
            b"{not json",
            {"thread_id": thread_id, "status": "bogus"},
            {"thread_id": thread_id, "run_ids": a},
            {"thread_id": thread_id, "run_ids": [42]},
            {"thread_id": "not-a-uuid", "run_ids": [a]},
        ):
            res = await bulk_cancel(http, body)
            assert res.status_code == 422, (body, res.status_code, res.text)
            assert isinstance(res.json().get("detail"), str), res.text
            assert await run_status(client, thread_id, a) == "running", body
        res = await bulk_cancel(http, {"thread_id": thread_id, "run_ids": [a]}, "explode")
        assert res.status_code == 422, res.text
        assert await run_status(client, thread_id, a) == "running"
        assert await thread_status(client, thread_id) == "busy"
        res = await raw_cancel(http, thread_id, a, "interrupt", True)
        assert res.status_code == 200


# ---- cancel racing the run's own end -------------------------------------------------------


@pytest.mark.timeout(60)
async def test_cancel_at_once_is_always_consistent(gateway_url: str) -> None:
    """30 times: start an echo (0 or 10 ms in prepare) and cancel it with ``wait=1`` at once."""
    client = get_client(url=gateway_url)
    outcomes: dict[tuple[int, str], int] = {}
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        for i in range(30):
            thread_id = await new_thread(client)
            run = await client.runs.create(thread_id, "echo", input=human(f"race{i}"),
                                           config=delay(0.01 * (i % 2)))
            run_id = run["run_id"]
            with anyio.fail_after(5):
                res = await raw_cancel(http, thread_id, run_id, "interrupt", True)
            assert res.status_code in (200, 404), (i, res.status_code, res.text)
            status = await run_status(client, thread_id, run_id)
            thread = await client.threads.get(thread_id)
            state = await client.threads.get_state(thread_id)
            context = (i, res.status_code, status, thread["status"], state["next"],
                       contents(state["values"]))
            assert status in ("success", "interrupted"), context
            assert thread["status"] in ("idle", "interrupted"), context
            # the cancel answer agrees with what happened to the run
            # a 404 means the run had already completed; a 200 stops it, unless the cancel
            # reached a graph that had just written its final checkpoint (then it is a
            # success: the work is complete and the status says so)
            if res.status_code == 404:
                assert status == "success", context
            if status == "interrupted":
                if f"echo: race{i}" in contents(state["values"]):
                    # the cancel raced the last node: its write was saved as a pending write
                    # of the step-1 checkpoint, but the final (step 2) checkpoint never was;
                    # the run did not finish, and the next run applies that write
                    assert state["metadata"]["step"] == 1, context
                    assert [t["name"] for t in state["tasks"]] == ["respond"], context
                else:
                    assert f"echo: race{i}" not in contents(thread["values"]), context
            else:
                assert contents(state["values"]) == [f"race{i}", f"echo: race{i}"], context
            # the thread status follows the state it was left in
            assert (thread["status"] == "interrupted") == bool(state["next"]), context
            outcomes[(res.status_code, status)] = outcomes.get((res.status_code, status), 0) + 1
    assert sum(outcomes.values()) == 30, outcomes


@pytest.mark.timeout(60)
async def test_rollback_at_once_is_always_consistent(gateway_url: str) -> None:
    """30 times: start an echo and roll it back at once: it is gone without a trace, or it
    finished and the cancel found nothing."""
    client = get_client(url=gateway_url)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        for i in range(30):
            thread_id = await new_thread(client)
            run = await client.runs.create(thread_id, "echo", input=human(f"rb{i}"),
                                           config=delay(0.01 * (i % 2)))
            run_id = run["run_id"]
            with anyio.fail_after(5):
                res = await raw_cancel(http, thread_id, run_id, "rollback", True)
            assert res.status_code in (200, 404), (i, res.status_code, res.text)
            status = await get_or_none(client, thread_id, run_id)
            thread = await client.threads.get(thread_id)
            hist = await history(client, thread_id)
            context = (i, res.status_code, status, thread["status"], len(hist))
            assert thread["status"] == "idle", context
            if res.status_code == 200:
                assert status is None, context
                assert hist == [], context
                assert await client.runs.list(thread_id) == [], context
                assert contents(thread["values"]) == [], context
            else:
                assert status == "success", context
                assert contents(thread["values"]) == [f"rb{i}", f"echo: rb{i}"], context
