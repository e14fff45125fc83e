"""The Store API (issue 13) with the official Python SDK over a real socket, on SQLite and on
PostgreSQL: items put, read, searched, listed, overwritten (``created_at`` kept) and deleted;
the graphs get the same store (a node reads what a client put and writes what the client then
reads); TTLs expire; bad input is a 4xx that names the field."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from langgraph_sdk import get_client

from tests.server import GatewayProcess

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


@pytest.fixture
def server(make_gateway: Any, engine_config: dict[str, str]) -> GatewayProcess:
    """A gateway on SQLite, then on PostgreSQL."""
    return make_gateway(**engine_config).start()  # type: ignore[no-any-return]


async def test_items_round_trip_and_the_graph_shares_the_store(server: GatewayProcess) -> None:
    client = get_client(url=server.url)
    await client.store.put_item(["memories", "u1"], "note", {"text": "from client"})
    item = await client.store.get_item(["memories", "u1"], "note")
    assert item is not None and item["value"] == {"text": "from client"}
    assert item["namespace"] == ["memories", "u1"] and item["key"] == "note"
    assert item["created_at"].endswith("+00:00") and item["updated_at"].endswith("+00:00")
    assert await client.store.get_item(["memories", "u1"], "missing") is None

    thread_id = str((await client.threads.create())["thread_id"])
    out = await client.runs.wait(thread_id, "store_graph", context={"user": "u1"},
                                 input={"messages": [{"role": "user", "content": "hello"}]})
    assert out["messages"][-1]["content"] == "noted: hello; client said: from client"
    written = await client.store.get_item(["graph_writes", "u1"], "last")
    assert written is not None and written["value"] == {"text": "hello"}

    await anyio.sleep(1.1)  # SQLite's store keeps whole seconds
    await client.store.put_item(["memories", "u1"], "note", {"text": "changed"})
    again = await client.store.get_item(["memories", "u1"], "note")
    assert again is not None and again["value"] == {"text": "changed"}
    assert again["created_at"] == item["created_at"] and again["updated_at"] > item["updated_at"]

    for i in range(3):
        await client.store.put_item(["docs", f"p{i}"], f"k{i}", {"i": i, "tag": "x"})
    found = await client.store.search_items(["docs"], filter={"i": {"$gte": 1}}, limit=10)
    assert sorted(f["value"]["i"] for f in found["items"]) == [1, 2]
    assert all(f["score"] is None for f in found["items"])
    assert len((await client.store.search_items(["docs"], limit=2))["items"]) == 2
    spaces = await client.store.list_namespaces(prefix=["docs"])
    assert spaces["namespaces"] == [["docs", "p0"], ["docs", "p1"], ["docs", "p2"]]
    assert (await client.store.list_namespaces(max_depth=1))["namespaces"] == [
        ["docs"], ["graph_writes"], ["memories"]]
    await client.store.delete_item(["docs", "p0"], "k0")
    await client.store.delete_item(["docs", "p0"], "k0")  # idempotent
    assert ["docs", "p0"] not in (await client.store.list_namespaces())["namespaces"]


async def test_ttl_expires_items(server: GatewayProcess) -> None:
    client = get_client(url=server.url)
    await client.store.put_item(["tmp"], "k", {"v": 1}, ttl=0.02)  # minutes: 1.2 s
    await client.store.put_item(["tmp"], "kept", {"v": 2})
    with anyio.fail_after(20):
        while True:
            if await client.store.get_item(["tmp"], "k", refresh_ttl=False) is None:
                break
            await anyio.sleep(0.5)
    assert await client.store.get_item(["tmp"], "kept") is not None


async def test_bad_input_is_a_clear_4xx(server: GatewayProcess) -> None:
    raw = get_client(url=server.url).http.client
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": None}, 422, "value"),
        ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": [1]}, 422, "value"),
        ("PUT", "/store/items", {"namespace": ["a.b"], "key": "k", "value": {}}, 422,
         "without periods"),
        ("PUT", "/store/items", {"namespace": [""], "key": "k", "value": {}}, 422, "namespace"),
        ("PUT", "/store/items", {"namespace": [], "key": "k", "value": {}}, 400,
         "Namespace cannot be empty."),
        ("PUT", "/store/items", {"namespace": ["a"], "value": {}}, 422, "key"),
        ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": {}, "ttl": -1}, 422,
         "ttl"),
        ("DELETE", "/store/items", {"namespace": ["a"]}, 422, "key"),
        ("POST", "/store/items/search", {"namespace_prefix": "a"}, 422, "namespace_prefix"),
        ("POST", "/store/items/search", {"filter": {"i": {"$in": [1]}}}, 400,
         "Unsupported operator: $in"),
        ("POST", "/store/namespaces", {"prefix": None, "max_depth": -1}, 422, "max_depth"),
    ]
    for method, path, body, status, detail in cases:
        r = await raw.request(method, path, json=body)
        assert r.status_code == status and detail in r.json()["detail"], (body, r.text)
    r = await raw.get("/store/items", params={"namespace": "a"})
    assert r.status_code == 400 and r.json() == {"detail": "Key is required"}
    r = await raw.get("/store/items", params={"namespace": "a..b", "key": "k"})
    assert r.status_code == 422
    assert (await raw.post("/store/items/search", json={})).json() == {"items": []}
