"""Stored assistants with versions through the official Python SDK over a real socket, on
SQLite and on PostgreSQL: create/get/patch/versions/latest/delete/search/count round trips, a
run merging its assistant's current version, the read-only system assistants (409), delete
cancelling runs and (``delete_threads``) deleting threads, and the error statuses of
auth-store-assistants.md section 3.1."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError

from tests.server import TEST_GRAPHS, GatewayProcess

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

ECHO_SYSTEM_ID = "046b5dc7-2108-582c-9c6c-31d556d138f0"
VERSION_KEYS = ["assistant_id", "version", "graph_id", "config", "context", "metadata",
                "created_at", "name", "description"]


@pytest.fixture
def server(make_gateway: Any, engine_config: dict[str, str]) -> GatewayProcess:
    """A gateway on SQLite, then on PostgreSQL."""
    return make_gateway(**engine_config).start()  # type: ignore[no-any-return]


async def test_crud_versions_latest_search_round_trip(server: GatewayProcess) -> None:
    client = get_client(url=server.url)
    made = await client.assistants.create(
        "context_echo", context={"model": "m1", "tone": "warm"}, metadata={"team": "a"},
        name="Tutor", description="desc")
    aid = made["assistant_id"]
    assert made["config"] == {"configurable": {"model": "m1", "tone": "warm"}}
    assert made["context"] == {"model": "m1", "tone": "warm"} and made["version"] == 1
    assert made["created_at"].endswith("+00:00") and made["updated_at"] == made["created_at"]
    assert await client.assistants.get(aid) == made
    minimal = await client.assistants.create("echo")
    assert (minimal["config"], minimal["context"], minimal["metadata"], minimal["name"],
            minimal["description"], minimal["version"]) == ({}, {}, {}, "Untitled", None, 1)
    uuid.UUID(minimal["assistant_id"])

    v2 = await client.assistants.update(aid, context={"model": "m2"}, metadata={"x": 1})
    assert (v2["version"], v2["context"], v2["config"]) == (
        2, {"model": "m2"}, {"configurable": {"model": "m2"}})
    assert v2["metadata"] == {"team": "a", "x": 1} and v2["created_at"] == made["created_at"]
    v3 = await client.assistants.update(aid, graph_id="echo", name="Renamed")
    assert (v3["version"], v3["graph_id"], v3["name"]) == (3, "echo", "Renamed")
    v4 = await client.assistants.update(aid)  # {}: still a new version
    assert v4["version"] == 4 and v4["graph_id"] == "echo"

    versions = await client.assistants.get_versions(aid)
    assert [v["version"] for v in versions] == [4, 3, 2, 1]
    assert all(list(v) == VERSION_KEYS for v in versions)
    assert [v["version"] for v in await client.assistants.get_versions(
        aid, metadata={"x": 1}, limit=2, offset=1)] == [3, 2]

    back = await client.assistants.set_latest(aid, 1)
    assert (back["version"], back["graph_id"], back["context"], back["name"]) == (
        1, "context_echo", {"model": "m1", "tone": "warm"}, "Tutor")
    assert back["metadata"] == {"team": "a"} and back["description"] == "desc"
    v5 = await client.assistants.update(aid, metadata={"y": 2})
    assert v5["version"] == 5 and v5["context"] == {"model": "m1", "tone": "warm"}
    assert (await client.assistants.get_schemas(aid))["graph_id"] == "context_echo"
    assert (await client.assistants.get_graph(aid))["nodes"][1]["id"] == "report"

    everything = await client.assistants.search(limit=100)
    assert len(everything) == len(TEST_GRAPHS) + 2
    assert [a["assistant_id"] for a in everything[:2]] == [minimal["assistant_id"], aid]
    assert await client.assistants.count() == len(TEST_GRAPHS) + 2
    assert [a["assistant_id"] for a in await client.assistants.search(name="TUT")] == [aid]
    assert await client.assistants.count(name="tut") == 1
    assert [a["assistant_id"] for a in await client.assistants.search(
        metadata={"team": "a"})] == [aid]
    assert await client.assistants.count(graph_id="echo") == 2
    named = await client.assistants.search(sort_by="name", sort_order="asc", limit=100,
                                           select=["assistant_id", "name"])
    assert all(list(a) == ["assistant_id", "name"] for a in named)
    names = [a["name"] for a in named]
    assert names == sorted(names, key=str.lower)
    page = await client.assistants.search(limit=3, offset=3, response_format="object")
    assert len(page["assistants"]) == 3 and page["next"] == "6"

    await client.assistants.delete(aid)
    with pytest.raises(NotFoundError):
        await client.assistants.get(aid)
    assert await client.assistants.count() == len(TEST_GRAPHS) + 1


async def test_a_run_merges_its_assistant(server: GatewayProcess) -> None:
    client = get_client(url=server.url)
    made = await client.assistants.create(
        "context_echo", context={"model": "m1", "tone": "warm"}, metadata={"team": "a"},
        config={"tags": ["asst-tag"], "recursion_limit": 9})
    aid = made["assistant_id"]

    async def seen(**body: Any) -> dict[str, Any]:
        out = await client.runs.wait(None, aid, input={}, **body)
        assert isinstance(out, dict)
        return out["seen"]  # type: ignore[no-any-return]

    plain = await seen()
    assert plain["context"] == {"model": "m1", "tone": "warm"}
    assert plain["configurable"] == {"model": "m1", "tone": "warm"}
    assert (plain["tags"], plain["recursion_limit"]) == (["asst-tag"], 9)
    assert plain["metadata"] == {"team": "a"}
    assert (await seen(context={"tone": "cold"}))["context"] == {"model": "m1", "tone": "cold"}
    by_config = await seen(config={"configurable": {"tone": "cfg", "extra": "e"},
                                   "tags": ["run-tag"]})
    assert by_config["context"] == {"model": "m1", "tone": "cfg", "extra": "e"}
    assert (by_config["tags"], by_config["recursion_limit"]) == (["run-tag"], 9)
    assert (await seen(metadata={"team": "run", "run_note": 1}))["metadata"] == {
        "team": "run", "run_note": 1}
    system = await client.runs.wait(None, "context_echo", input={}, context={"tone": "sys"})
    assert isinstance(system, dict)
    assert system["seen"]["context"] == {"tone": "sys"} and system["seen"]["metadata"] == {}

    await client.assistants.update(aid, context={"model": "m2"})
    assert (await seen())["context"] == {"model": "m2"}  # runs use the current version
    await client.assistants.set_latest(aid, 1)
    assert (await seen())["context"] == {"model": "m1", "tone": "warm"}
    thread = await client.threads.create()
    await client.runs.wait(thread["thread_id"], aid, input={})
    runs = await client.runs.list(thread["thread_id"])
    assert runs[0]["assistant_id"] == aid and runs[0]["metadata"]["team"] == "a"
    assert (await client.threads.get(thread["thread_id"]))["metadata"]["assistant_id"] == aid

    async with httpx.AsyncClient(base_url=server.url) as http:
        both = await http.post("/runs/wait", json={
            "assistant_id": aid, "input": {}, "context": {"a": 1},
            "config": {"configurable": {"b": 2}}})
        assert both.status_code == 400
        cron = await http.post("/runs/crons", json={"assistant_id": aid, "schedule": "@daily"})
        assert cron.status_code == 200 and cron.json()["assistant_id"] == aid
        await client.assistants.delete(aid)
        gone = await http.post("/runs/wait", json={"assistant_id": aid, "input": {}})
        assert gone.status_code == 404
        assert (await http.post("/runs/crons/search", json={})).json() == []
        again = await http.post(f"/threads/{thread['thread_id']}/runs",
                                json={"assistant_id": aid})
        assert again.status_code == 404


async def test_system_assistants_are_read_only(server: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for method, path, body in [
                ("PATCH", f"/assistants/{ECHO_SYSTEM_ID}", {"name": "renamed"}),
                ("DELETE", f"/assistants/{ECHO_SYSTEM_ID}", None),
                ("POST", f"/assistants/{ECHO_SYSTEM_ID}/latest", {"version": 1}),
                ("POST", f"/assistants/{ECHO_SYSTEM_ID}/latest", {})]:
            r = await http.request(method, path, json=body)
            assert r.status_code == 409, (method, path, r.text)
            assert "system assistant" in r.json()["detail"]
            assert "cannot be changed" in r.json()["detail"]
        assert (await http.patch("/assistants/echo", json={})).status_code == 422
        versions = await http.post(f"/assistants/{ECHO_SYSTEM_ID}/versions", json={})
        assert [v["version"] for v in versions.json()] == [1]
    client = get_client(url=server.url)
    echo = await client.assistants.get(ECHO_SYSTEM_ID)
    assert echo["name"] == "echo" and echo["version"] == 1
    out = await client.runs.wait(None, "echo", input={"messages": [
        {"role": "user", "content": "still here"}]})
    assert isinstance(out, dict) and out["messages"][-1]["content"] == "echo: still here"


async def wait_for_status(client: Any, thread_id: str, run_id: str,
                          done: Callable[[str], bool]) -> None:
    with anyio.fail_after(20):
        while True:
            if done((await client.runs.get(thread_id, run_id))["status"]):
                return
            await anyio.sleep(0.05)


async def test_delete_cancels_runs_and_deletes_threads(server: GatewayProcess) -> None:
    client = get_client(url=server.url)
    aid = (await client.assistants.create("echo", context={"delay": 30}))["assistant_id"]
    keep_aid = (await client.assistants.create("echo"))["assistant_id"]
    done = (await client.threads.create())["thread_id"]
    await client.runs.wait(done, keep_aid, input={"messages": []}, context={"delay": 0})
    busy = (await client.threads.create())["thread_id"]
    run = await client.runs.create(busy, aid, input={"messages": []})
    await wait_for_status(client, busy, run["run_id"], lambda s: s == "running")
    survivor = (await client.threads.create(metadata={"assistant_id": keep_aid}))["thread_id"]

    await client.assistants.delete(aid)  # without delete_threads: the thread stays
    await wait_for_status(client, busy, run["run_id"], lambda s: s != "running")
    assert (await client.runs.get(busy, run["run_id"]))["status"] == "interrupted"
    assert (await client.threads.get(busy))["thread_id"] == busy

    await client.assistants.delete(keep_aid, delete_threads=True)
    for thread_id in (done, survivor):
        with pytest.raises(NotFoundError):
            await client.threads.get(thread_id)
    assert (await client.threads.get(busy))["thread_id"] == busy


async def test_error_statuses(server: GatewayProcess) -> None:
    client = get_client(url=server.url)
    aid = (await client.assistants.create("echo", name="x"))["assistant_id"]
    missing = str(uuid.uuid4())
    cases: list[tuple[str, str, Any, int, str | None]] = [
        ("POST", "/assistants", {"graph_id": "nope"}, 404,
         f"Graph 'nope' not found. Expected one of: {sorted(TEST_GRAPHS)!r}"),
        ("POST", "/assistants", {}, 422, None),
        ("POST", "/assistants", {"graph_id": "echo", "assistant_id": "x"}, 422,
         "Invalid assistant ID: must be a UUID"),
        ("POST", "/assistants", {"graph_id": "echo", "assistant_id": aid}, 409,
         f"Assistant {aid} already exists"),
        ("POST", "/assistants", {"graph_id": "echo", "assistant_id": ECHO_SYSTEM_ID}, 409,
         f"Assistant {ECHO_SYSTEM_ID} already exists"),
        ("POST", "/assistants", {"graph_id": "echo", "if_exists": "update"}, 422, None),
        ("POST", "/assistants", {"graph_id": "echo", "context": {"a": 1},
                                 "config": {"configurable": {"b": 1}}}, 400, None),
        ("PATCH", f"/assistants/{missing}", {}, 404, f"Assistant {missing} not found"),
        ("PATCH", f"/assistants/{aid}", {"graph_id": "nope"}, 404, None),
        ("PATCH", f"/assistants/{aid}", {"description": None}, 422, None),
        ("PATCH", "/assistants/not-a-uuid", {}, 422, "Invalid assistant ID: must be a UUID"),
        ("DELETE", f"/assistants/{missing}", None, 404,
         f"Assistant with ID {missing} not found"),
        ("GET", f"/assistants/{missing}", None, 404, "Not Found"),
        ("POST", f"/assistants/{missing}/versions", {}, 404, f"Assistant {missing} not found"),
        ("POST", f"/assistants/{aid}/versions", None, 422, None),
        ("POST", f"/assistants/{aid}/latest", {"version": 99}, 404,
         f"Version 99 not found for assistant {aid}"),
        ("POST", f"/assistants/{aid}/latest", {}, 404,
         f"Version None not found for assistant {aid}"),
        ("POST", f"/assistants/{aid}/latest", {"version": "2"}, 422, None),
        ("POST", f"/assistants/{missing}/latest", {"version": 1}, 404, None),
        ("POST", "/assistants/search", {"graph_id": "nope"}, 404, None),
        ("POST", "/assistants/count", {"graph_id": "nope"}, 404, None),
        ("POST", "/assistants/search", {"sort_by": "nope"}, 422, None),
    ]
    async with httpx.AsyncClient(base_url=server.url) as http:
        for method, path, body, status, detail in cases:
            r = await http.request(method, path, json=body)
            assert r.status_code == status, (method, path, body, r.text)
            assert isinstance(r.json()["detail"], str)
            if detail is not None:
                assert r.json()["detail"] == detail, (method, path, body)
        again = await http.post("/assistants", json={
            "graph_id": "echo", "assistant_id": aid.upper(), "if_exists": "do_nothing"})
        assert again.status_code == 200 and again.json()["name"] == "x"
    assert [v["version"] for v in await client.assistants.get_versions(aid)] == [1]
