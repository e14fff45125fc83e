"""System assistants (one per graph) through the SDK, and how run bodies name them (stored
assistants: test_assistants_crud.py).

Expected shapes are those of protocol.md sections 1 and 2.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError

from tests.server import TEST_GRAPHS

NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
ASSISTANT_KEYS = {"assistant_id", "graph_id", "config", "context", "metadata", "name",
                  "description", "version", "created_at", "updated_at"}
SCHEMA_KEYS = {"graph_id", "input_schema", "output_schema", "state_schema", "config_schema",
               "context_schema"}


def assistant_id(graph_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, graph_id))


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_search_and_count_system_assistants(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    found = await client.assistants.search(limit=100)
    assert isinstance(found, list)
    assert sorted(a["graph_id"] for a in found) == sorted(TEST_GRAPHS)
    for a in found:
        assert set(a) == ASSISTANT_KEYS
        assert a["assistant_id"] == assistant_id(a["graph_id"])
        assert a["name"] == a["graph_id"]
        assert a["metadata"] == {"created_by": "system"}
        assert a["version"] == 1
        assert a["config"] == {}
        assert a["context"] == {}
        assert a["description"] is None
    by_graph = {a["graph_id"]: a for a in found}
    assert by_graph["echo"]["assistant_id"] == "046b5dc7-2108-582c-9c6c-31d556d138f0"

    assert await client.assistants.count() == len(TEST_GRAPHS)
    assert await client.assistants.count(graph_id="hitl") == 1
    with pytest.raises(NotFoundError):  # an unknown graph is a 404, as the reference
        await client.assistants.count(graph_id="nope")
    only_echo = await client.assistants.search(graph_id="echo")
    assert [a["assistant_id"] for a in only_echo] == [assistant_id("echo")]
    system = await client.assistants.search(metadata={"created_by": "system"}, limit=100)
    assert len(system) == len(TEST_GRAPHS)
    assert await client.assistants.search(metadata={"created_by": "someone"}) == []

    page1 = await client.assistants.search(limit=3, offset=0)
    page2 = await client.assistants.search(limit=3, offset=3)
    assert len(page1) == 3
    ids1 = {a["assistant_id"] for a in page1}
    ids2 = {a["assistant_id"] for a in page2}
    assert not ids1 & ids2

    async with httpx.AsyncClient(base_url=gateway_url) as http:
        r = await http.post("/assistants/search", json={"limit": 100})
        assert r.status_code == 200
        assert "x-pagination-total" in r.headers
        assert "x-pagination-next" not in r.headers
        r = await http.post("/assistants/count", json={})
        assert r.status_code == 200
        assert r.json() == len(TEST_GRAPHS)


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_get_assistant_by_uuid_only(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    echo = await client.assistants.get(assistant_id("echo"))
    assert echo["graph_id"] == "echo"
    assert echo["assistant_id"] == assistant_id("echo")
    assert set(echo) == ASSISTANT_KEYS

    async with httpx.AsyncClient(base_url=gateway_url) as http:
        by_name = await http.get("/assistants/echo")
        assert by_name.status_code == 422
        assert by_name.json() == {"detail": "Invalid assistant ID: must be a UUID"}
        unknown = await http.get(f"/assistants/{uuid.uuid4()}")
        assert unknown.status_code == 404
        assert isinstance(unknown.json()["detail"], str)


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_graph_by_name_and_uuid(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    by_name = await client.assistants.get_graph("echo")
    by_uuid = await client.assistants.get_graph(assistant_id("echo"))
    assert by_name == by_uuid
    assert [n["id"] for n in by_name["nodes"]] == ["__start__", "prepare", "respond", "__end__"]
    edges = {(e["source"], e["target"]) for e in by_name["edges"]}
    assert edges == {("__start__", "prepare"), ("prepare", "respond"), ("respond", "__end__")}
    start = by_name["nodes"][0]
    assert start["type"] == "runnable"
    assert start["data"]["name"] == "__start__"


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_schemas_by_name_and_uuid(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    by_name = await client.assistants.get_schemas("echo")
    by_uuid = await client.assistants.get_schemas(assistant_id("echo"))
    assert by_name == by_uuid
    assert set(by_name) == SCHEMA_KEYS
    assert by_name["graph_id"] == "echo"
    assert "messages" in by_name["input_schema"]["properties"]
    assert "messages" in by_name["state_schema"]["properties"]

    hitl = await client.assistants.get_schemas("hitl")
    assert {"messages", "draft", "answer"} <= set(hitl["state_schema"]["properties"])


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_subgraphs(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    subs = await client.assistants.get_subgraphs("subgraph")
    assert list(subs) == ["child"]
    assert set(subs["child"]) == SCHEMA_KEYS
    assert "messages" in subs["child"]["input_schema"]["properties"]
    assert await client.assistants.get_subgraphs(assistant_id("subgraph")) == subs
    assert await client.assistants.get_subgraphs("echo") == {}


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_run_bodies_accept_graph_id_or_uuid(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = (await client.threads.create())["thread_id"]
    first = await client.runs.wait(thread_id, "echo", input=user("by name"))
    second = await client.runs.wait(thread_id, assistant_id("echo"), input=user("by uuid"))
    assert first["messages"][-1]["content"] == "echo: by name"
    assert second["messages"][-1]["content"] == "echo: by uuid"
    runs = await client.runs.list(thread_id)
    assert len(runs) == 2
    assert [r["status"] for r in runs] == ["success", "success"]
    assert [r["assistant_id"] for r in runs] == [assistant_id("echo")] * 2  # uuid, not name


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_unknown_assistant_in_run_body(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = (await client.threads.create())["thread_id"]
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        by_name = await http.post(f"/threads/{thread_id}/runs", json={"assistant_id": "nope"})
        assert by_name.status_code == 422
        detail = by_name.json()["detail"]
        assert detail.startswith(
            "Invalid assistant: 'nope'. Must be either:\n- A valid assistant UUID, or\n"
            "- One of the registered graphs: ")
        registered = detail.rsplit(": ", 1)[1].split(", ")
        assert sorted(registered) == sorted(TEST_GRAPHS)

        by_uuid = await http.post(f"/threads/{thread_id}/runs/wait",
                                  json={"assistant_id": str(uuid.uuid4())})
        assert by_uuid.status_code == 404
        assert isinstance(by_uuid.json()["detail"], str)

        stateless = await http.post("/runs/wait", json={"assistant_id": "nope"})
        assert stateless.status_code == 422
        assert stateless.json()["detail"].startswith("Invalid assistant: 'nope'.")

        graph = await http.get("/assistants/nope/graph")
        assert graph.status_code in (404, 422)
        unknown_graph = await http.get(f"/assistants/{uuid.uuid4()}/graph")
        assert unknown_graph.status_code == 404
    assert await client.runs.list(thread_id) == []
    thread = await client.threads.get(thread_id)
    assert thread["status"] == "idle"
    assert thread["metadata"] == {}
