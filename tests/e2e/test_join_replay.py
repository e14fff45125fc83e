"""End-to-end: what a joiner gets, by what it has already seen (runtime/bridge/memory.py,
invariant 5).

The official Python SDK over a real socket, the create-then-join pattern the LangGraph docs
teach (``runs.create`` then ``runs.join_stream``, which sends no ``Last-Event-ID``):

* no ``Last-Event-ID``: the whole run from ``metadata`` on, then live, ``error`` included;
* ``Last-Event-ID: -1`` (useStream's re-join on mount): the whole run but the ``error`` of a
  run that had already failed, then a clean close;
* ``Last-Event-ID: <id>`` (a reconnect mid-stream): the events after it, ``error`` included.

Join streams carry ``Content-Location`` and ``Location`` like the creating stream.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

pytestmark = pytest.mark.anyio

Event = tuple[str, Any, str | None]
MODES = ["values", "custom", "updates"]
FAILURE = {"error": "ValueError", "message": "deliberate failure: no"}


def human(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def join(client: LangGraphClient, thread_id: str, run_id: str,
               last_event_id: str | None = None) -> list[Event]:
    with anyio.fail_after(20):
        return [(p.event, p.data, p.id) async for p in client.runs.join_stream(
            thread_id, run_id, last_event_id=last_event_id)]


async def create(client: LangGraphClient, graph: str, text: str,
                 delay: float = 0.0) -> tuple[str, str]:
    thread_id = str((await client.threads.create())["thread_id"])
    run = await client.runs.create(thread_id, graph, input=human(text), stream_mode=MODES,
                                   config={"configurable": {"delay": delay}})
    return thread_id, str(run["run_id"])


@pytest.mark.timeout(30)
@pytest.mark.parametrize("delay", [0.0, 1.0], ids=["fast", "slow"])
async def test_create_then_join_stream_gets_every_event(gateway_url: str, delay: float) -> None:
    client = get_client(url=gateway_url)
    thread_id, run_id = await create(client, "echo", "hi", delay)
    events = await join(client, thread_id, run_id)
    assert [e[0] for e in events] == ["metadata", "values", "custom", "updates", "custom",
                                      "updates", "values"]
    assert events[0][1] == {"run_id": run_id, "attempt": 1}
    assert events[-1][1]["messages"][-1]["content"] == "echo: hi"
    # the stream ended after the run's status was stored, and a -1 replay agrees
    assert (await client.runs.get(thread_id, run_id))["status"] == "success"
    assert await join(client, thread_id, run_id, "-1") == events


@pytest.mark.timeout(30)
@pytest.mark.parametrize("delay", [0.0, 1.0], ids=["fast", "slow"])
async def test_create_then_join_stream_of_a_failing_run_ends_with_its_error(
    gateway_url: str, delay: float,
) -> None:
    """A script that joins a run which fails fast must see the failure, not an empty stream."""
    client = get_client(url=gateway_url)
    thread_id, run_id = await create(client, "fail", "no", delay)
    events = await join(client, thread_id, run_id)
    assert [e[0] for e in events] == ["metadata", "values", "error"]
    assert events[-1][1] == FAILURE
    assert (await client.runs.get(thread_id, run_id))["status"] == "error"


@pytest.mark.timeout(30)
async def test_error_is_replayed_to_a_resume_but_not_to_minus_one(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id, run_id = await create(client, "fail", "no")
    full = await join(client, thread_id, run_id)
    assert full[-1][0] == "error"

    # useStream's re-join on mount: everything but the error it has already shown
    assert await join(client, thread_id, run_id, "-1") == full[:-1]
    assert await join(client, thread_id, run_id, "0") == full[:-1]
    # a client cut just before the error resumes from the last id it saw: it gets the error
    assert await join(client, thread_id, run_id, full[-2][2]) == full[-1:]
    assert await join(client, thread_id, run_id, full[0][2]) == full[1:]
    # the error stays readable where a page that reloads looks for it
    state = await client.threads.get_state(thread_id)
    assert any("deliberate failure: no" in str(t.get("error")) for t in state["tasks"])
    thread = await client.threads.get(thread_id)
    assert thread["status"] == "error"


@pytest.mark.timeout(30)
async def test_minus_one_join_of_a_running_run_gets_its_later_error(gateway_url: str) -> None:
    """A ``-1`` join that arrives before the failure has not seen it: it is delivered."""
    client = get_client(url=gateway_url)
    thread_id = str((await client.threads.create())["thread_id"])
    # a slow echo first, then the failing run queued behind it on the same thread
    await client.runs.create(thread_id, "echo", input=human("wait"),
                             config={"configurable": {"delay": 1.0}})
    failing = await client.runs.create(thread_id, "fail", input=human("no"),
                                       multitask_strategy="enqueue")
    events = await join(client, thread_id, str(failing["run_id"]), "-1")
    assert [e[0] for e in events] == ["metadata", "values", "error"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("stateless", [False, True], ids=["thread", "stateless"])
async def test_join_stream_has_content_location_and_location(
    gateway_url: str, stateless: bool,
) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        if stateless:
            r = await http.post("/runs", json={"assistant_id": "echo", "input": human("x"),
                                               "on_completion": "keep"})
            assert r.status_code == 200, r.text
            run_id = r.json()["run_id"]
            base = f"/runs/{run_id}"
        else:
            thread_id = (await http.post("/threads", json={})).json()["thread_id"]
            r = await http.post(f"/threads/{thread_id}/runs",
                                json={"assistant_id": "echo", "input": human("x")})
            assert r.status_code == 200, r.text
            run_id = r.json()["run_id"]
            base = f"/threads/{thread_id}/runs/{run_id}"
        async with http.stream("GET", base + "/stream") as response:
            assert response.status_code == 200
            assert response.headers["content-location"] == base
            assert response.headers["location"] == base + "/stream"
            assert response.headers["content-type"].startswith("text/event-stream")
            body = await response.aread()
        assert body.startswith(b"event: metadata\r\n")


@pytest.mark.timeout(60)
async def test_out_of_range_last_event_id_is_a_422(make_gateway: Any) -> None:
    """With ``bridge: sqlite`` an id part of 2**63 cut the stream mid-body (OverflowError)."""
    server = make_gateway(bridge="sqlite").start()
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        thread_id = (await http.post("/threads", json={})).json()["thread_id"]
        r = await http.post(f"/threads/{thread_id}/runs/wait",
                            json={"assistant_id": "echo", "input": human("x")})
        assert r.status_code == 200
        run_id = r.headers["content-location"].rsplit("/", 1)[1]
        server.stop()  # restart: the finished run is now served from SQLite
        server.start()
        path = f"/threads/{thread_id}/runs/{run_id}/stream"
        for bad in (f"{2**63}-0", f"1-{2**63}", "9" * 40):
            r = await http.get(path, headers={"Last-Event-ID": bad})
            assert r.status_code == 422, (bad, r.text)
            assert r.json() == {"detail": "Invalid last-event-id: must be '-1' or '<ms>-<seq>'"}
        r = await http.get(path, headers={"Last-Event-ID": f"{2**63 - 1}-{2**63 - 1}"})
        assert r.status_code == 200 and r.content == b""
        r = await http.get(path, headers={"Last-Event-ID": "-1"})
        assert r.content.startswith(b"event: metadata\r\n")
    assert "Traceback" not in server.log()


@pytest.mark.timeout(60)
async def test_fresh_join_of_a_failed_run_whose_log_is_gone_gets_its_error(
    make_gateway: Any,
) -> None:
    """After ``stream_retention_s`` (or a restart on ``bridge: memory``) the log is gone; a
    script joining the failed run must still see the failure, not an empty stream."""
    server = make_gateway(stream_retention_s=0.2).start()
    client = get_client(url=server.url)
    thread_id, run_id = await create(client, "fail", "no")
    assert (await join(client, thread_id, run_id))[-1][1] == FAILURE
    with anyio.fail_after(10):  # the log is dropped 0.2 s after the run ended
        while True:
            if await join(client, thread_id, run_id, "-1") == []:
                break
            await anyio.sleep(0.1)
    events = await join(client, thread_id, run_id)
    assert [(e[0], e[1]) for e in events] == [("error", FAILURE)]
    # a client that resumes from an id may have seen the error already: nothing is invented
    assert await join(client, thread_id, run_id, "1-1") == []
