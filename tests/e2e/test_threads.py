"""Threads, state and history through the official Python SDK (raw httpx for status codes,
error bodies and pagination headers), against the shared gateway process.

Expected shapes are those of protocol.md sections 1, 2 and 6.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio
import httpx
import pytest
from langgraph_sdk import get_client

THREAD_KEYS = {"thread_id", "created_at", "updated_at", "state_updated_at", "metadata", "status",
               "config", "values"}
STATE_KEYS = {"values", "next", "tasks", "metadata", "created_at", "checkpoint",
              "parent_checkpoint", "interrupts", "checkpoint_id", "parent_checkpoint_id"}
EMPTY_STATE = {"values": {}, "next": [], "tasks": [], "metadata": None, "created_at": None,
               "checkpoint": None, "parent_checkpoint": None, "interrupts": [],
               "checkpoint_id": None, "parent_checkpoint_id": None}
ECHO_ASSISTANT_ID = "046b5dc7-2108-582c-9c6c-31d556d138f0"


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def contents(values: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["type"], m["content"]) for m in values["messages"]]


async def echo_thread(client: Any, text: str, **metadata: Any) -> str:
    """A new thread with one finished echo run of ``text``."""
    thread = await client.threads.create(metadata=metadata or None)
    await client.runs.wait(thread["thread_id"], "echo", input=user(text))
    return str(thread["thread_id"])


# ---- thread CRUD -----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_create_get_update_delete(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = str(uuid.uuid4())
    created = await client.threads.create(thread_id=thread_id, metadata={"owner": "t", "n": 1})
    assert set(created) == THREAD_KEYS  # no error/interrupts keys before any run
    assert created["thread_id"] == thread_id
    assert created["metadata"] == {"owner": "t", "n": 1}
    assert created["status"] == "idle"
    assert created["values"] is None
    assert created["config"] == {}
    assert await client.threads.get(thread_id) == created

    async with httpx.AsyncClient(base_url=gateway_url) as http:
        again = await http.post("/threads", json={"thread_id": thread_id, "metadata": {"x": 1}})
        assert again.status_code == 409
        assert again.json() == {"detail": f"Thread with ID {thread_id} already exists"}

        raised = await http.post("/threads", json={"thread_id": thread_id, "if_exists": "raise"})
        assert raised.status_code == 409

    existing = await client.threads.create(thread_id=thread_id, metadata={"other": True},
                                           if_exists="do_nothing")
    assert existing == created  # unchanged: metadata not replaced, timestamps kept

    updated = await client.threads.update(thread_id, metadata={"n": 2, "extra": "x"})
    assert updated["metadata"] == {"owner": "t", "n": 2, "extra": "x"}  # shallow merge
    assert updated["updated_at"] >= created["updated_at"]
    assert updated["created_at"] == created["created_at"]
    assert (await client.threads.get(thread_id))["metadata"] == updated["metadata"]

    await client.threads.delete(thread_id)
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        gone = await http.get(f"/threads/{thread_id}")
        assert gone.status_code == 404
        assert gone.json() == {"detail": f"Thread with ID {thread_id} not found"}
        again_delete = await http.delete(f"/threads/{thread_id}")
        assert again_delete.status_code == 404
    with pytest.raises(httpx.HTTPStatusError) as info:
        await client.threads.get(thread_id)
    assert info.value.response.status_code == 404


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_create_returns_200_with_server_generated_uuid(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        response = await http.post("/threads", json={})
        assert response.status_code == 200
        body = response.json()
        assert set(body) == THREAD_KEYS
        assert uuid.UUID(body["thread_id"]).version == 7
        assert body["metadata"] == {}


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_thread_after_echo_run(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await echo_thread(client, "after run", tag="x")
    thread = await client.threads.get(thread_id)
    assert thread["status"] == "idle"
    assert thread["metadata"] == {"tag": "x", "graph_id": "echo",
                                  "assistant_id": ECHO_ASSISTANT_ID}
    state = await client.threads.get_state(thread_id)
    assert thread["values"] == state["values"]
    assert contents(thread["values"]) == [("human", "after run"), ("ai", "echo: after run")]
    assert thread.get("interrupts", {}) == {}
    assert "error" not in thread or thread["error"] is None


# ---- search, count, copy ---------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_search_filters_and_count(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    marker = uuid.uuid4().hex
    a = (await client.threads.create(metadata={"marker": marker, "kind": "a"}))["thread_id"]
    b = (await client.threads.create(metadata={"marker": marker, "kind": "b"}))["thread_id"]
    c = (await client.threads.create(
        metadata={"marker": marker, "kind": "a", "nested": {"x": 1}}))["thread_id"]

    found = await client.threads.search(ids=[a, b], limit=10)
    assert {t["thread_id"] for t in found} == {a, b}

    found = await client.threads.search(metadata={"marker": marker, "kind": "a"})
    assert {t["thread_id"] for t in found} == {a, c}
    found = await client.threads.search(metadata={"marker": marker, "nested": {"x": 1}})
    assert [t["thread_id"] for t in found] == [c]
    assert await client.threads.search(metadata={"marker": marker, "kind": "zzz"}) == []

    # values filter after a run
    await client.runs.wait(b, "echo", input=user(f"values {marker}"))
    b_values = (await client.threads.get(b))["values"]
    found = await client.threads.search(values={"messages": b_values["messages"]})
    assert [t["thread_id"] for t in found] == [b]

    # status filter: a hitl run leaves its thread interrupted
    d = (await client.threads.create(metadata={"marker": marker, "kind": "d"}))["thread_id"]
    draft = f"draft {marker}"
    await client.runs.wait(d, "hitl", input=user(draft))
    found = await client.threads.search(metadata={"marker": marker}, status="interrupted")
    assert [t["thread_id"] for t in found] == [d]
    found = await client.threads.search(values={"draft": draft})
    assert [t["thread_id"] for t in found] == [d]
    found = await client.threads.search(metadata={"marker": marker}, status="idle")
    assert {t["thread_id"] for t in found} == {a, b, c}
    assert await client.threads.search(metadata={"marker": marker}, status="busy") == []

    assert await client.threads.count(metadata={"marker": marker}) == 4
    assert await client.threads.count(metadata={"marker": marker, "kind": "a"}) == 2
    assert await client.threads.count(metadata={"marker": marker}, status="interrupted") == 1
    assert await client.threads.count(values={"draft": draft}) == 1


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_search_sort_limit_offset_and_pagination_headers(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    marker = uuid.uuid4().hex
    ids = []
    for i in range(5):  # uuid4 ids: thread_id order differs from creation order
        thread = await client.threads.create(thread_id=str(uuid.uuid4()),
                                             metadata={"marker": marker, "i": i})
        ids.append(thread["thread_id"])
    meta = {"marker": marker}

    default = await client.threads.search(metadata=meta)
    assert [t["thread_id"] for t in default] == ids[::-1]  # created_at DESC by default
    asc = await client.threads.search(metadata=meta, sort_by="created_at", sort_order="asc")
    assert [t["thread_id"] for t in asc] == ids
    by_id = await client.threads.search(metadata=meta, sort_by="thread_id", sort_order="asc")
    assert [t["thread_id"] for t in by_id] == sorted(ids)
    by_id_desc = await client.threads.search(metadata=meta, sort_by="thread_id",
                                             sort_order="desc")
    assert [t["thread_id"] for t in by_id_desc] == sorted(ids, reverse=True)

    await client.threads.update(ids[0], metadata={"touched": True})
    by_update = await client.threads.search(metadata=meta, sort_by="updated_at",
                                            sort_order="desc")
    assert by_update[0]["thread_id"] == ids[0]

    page = await client.threads.search(metadata=meta, sort_by="created_at", sort_order="asc",
                                       limit=2, offset=1)
    assert [t["thread_id"] for t in page] == ids[1:3]

    async with httpx.AsyncClient(base_url=gateway_url) as http:
        async def headers(limit: int, offset: int) -> tuple[list[str], httpx.Headers]:
            r = await http.post("/threads/search", json={
                "metadata": meta, "limit": limit, "offset": offset,
                "sort_by": "created_at", "sort_order": "asc"})
            assert r.status_code == 200
            return [t["thread_id"] for t in r.json()], r.headers

        rows, h = await headers(2, 0)
        assert rows == ids[0:2]
        assert h["x-pagination-next"] == "2"
        assert h["x-pagination-total"] == "3"
        rows, h = await headers(2, 2)
        assert rows == ids[2:4]
        assert h["x-pagination-next"] == "4"
        assert h["x-pagination-total"] == "5"
        rows, h = await headers(2, 4)
        assert rows == ids[4:]
        assert "x-pagination-next" not in h
        assert h["x-pagination-total"] == "5"
        rows, h = await headers(5, 0)
        assert rows == ids
        assert "x-pagination-next" not in h
        assert h["x-pagination-total"] == "5"


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_copy_has_same_state_and_history(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    source = await echo_thread(client, "copy me", origin="copy-test")
    copied = await client.threads.copy(source)
    assert isinstance(copied, dict)
    new_id = copied["thread_id"]
    assert new_id != source
    assert copied["metadata"]["origin"] == "copy-test"

    source_state = await client.threads.get_state(source)
    new_state = await client.threads.get_state(new_id)
    assert new_state["values"] == source_state["values"]
    assert contents(new_state["values"]) == [("human", "copy me"), ("ai", "echo: copy me")]
    source_history = await client.threads.get_history(source, limit=100)
    new_history = await client.threads.get_history(new_id, limit=100)
    assert len(new_history) == len(source_history) == 4
    assert [s["values"] for s in new_history] == [s["values"] for s in source_history]

    # the copy is independent: a run on it leaves the source untouched
    await client.runs.wait(new_id, "echo", input=user("only on copy"))
    assert (await client.threads.get_state(source))["values"] == source_state["values"]
    assert len(await client.threads.get_history(new_id, limit=100)) == 8


# ---- state and history -----------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_state_and_history_of_fresh_thread(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = (await client.threads.create())["thread_id"]
    assert await client.threads.get_state(thread_id) == EMPTY_STATE
    assert await client.threads.get_history(thread_id) == []


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_history_after_echo_run(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await echo_thread(client, "history")
    history = await client.threads.get_history(thread_id)
    assert [set(s) for s in history] == [STATE_KEYS] * 4
    assert [s["metadata"]["step"] for s in history] == [2, 1, 0, -1]
    assert [s["metadata"]["source"] for s in history] == ["loop", "loop", "loop", "input"]
    assert [s["next"] for s in history] == [[], ["respond"], ["prepare"], ["__start__"]]
    ids = [s["checkpoint_id"] for s in history]
    assert len(set(ids)) == 4
    for snap in history:
        assert snap["checkpoint"]["checkpoint_id"] == snap["checkpoint_id"]
        assert snap["checkpoint"]["thread_id"] == thread_id
        assert snap["checkpoint"]["checkpoint_ns"] == ""
    assert [s["parent_checkpoint_id"] for s in history] == [*ids[1:], None]
    assert contents(history[0]["values"]) == [("human", "history"), ("ai", "echo: history")]
    assert history[-1]["values"] == {"messages": []} or history[-1]["values"] == {}

    head = await client.threads.get_state(thread_id)
    assert head["checkpoint_id"] == ids[0]
    assert head["values"] == history[0]["values"]

    limited = await client.threads.get_history(thread_id, limit=2)
    assert [s["checkpoint_id"] for s in limited] == ids[:2]

    before_config = {"configurable": {"checkpoint_id": ids[1]}}
    before = await client.threads.get_history(thread_id, before=before_config)
    assert [s["checkpoint_id"] for s in before] == ids[2:]
    before_checkpoint = await client.threads.get_history(
        thread_id, before={"checkpoint_id": ids[0]}, limit=1)
    assert [s["checkpoint_id"] for s in before_checkpoint] == ids[1:2]

    async with httpx.AsyncClient(base_url=gateway_url) as http:
        post = await http.post(f"/threads/{thread_id}/history", json={"limit": 2})
        assert post.status_code == 200
        assert [s["checkpoint_id"] for s in post.json()] == ids[:2]
        post_all = await http.post(f"/threads/{thread_id}/history")
        assert post_all.status_code == 200
        assert [s["checkpoint_id"] for s in post_all.json()] == ids
        get = await http.get(f"/threads/{thread_id}/history", params={"limit": 3})
        assert get.status_code == 200
        assert [s["checkpoint_id"] for s in get.json()] == ids[:3]
        get_all = await http.get(f"/threads/{thread_id}/history")
        assert get_all.json() == post_all.json()


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_history_before_as_checkpoint_id_string(gateway_url: str) -> None:
    """``GET /history?before=<checkpoint_id>`` and the SDK's ``before="<checkpoint_id>"``
    (a plain string, which the SDK signature allows and the reference accepts)."""
    client = get_client(url=gateway_url)
    thread_id = await echo_thread(client, "history before string")
    ids = [s["checkpoint_id"] for s in await client.threads.get_history(thread_id)]
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        r = await http.get(f"/threads/{thread_id}/history", params={"before": ids[1]})
        assert r.status_code == 200, r.text
        assert [s["checkpoint_id"] for s in r.json()] == ids[2:]
        r = await http.post(f"/threads/{thread_id}/history", json={"before": ids[1]})
        assert r.status_code == 200, r.text
        assert [s["checkpoint_id"] for s in r.json()] == ids[2:]
    via_sdk = await client.threads.get_history(thread_id, before=ids[0], limit=2)
    assert [s["checkpoint_id"] for s in via_sdk] == ids[1:3]


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_state_visible_during_first_run(gateway_url: str) -> None:
    """A thread created without ``graph_id`` gets it when its first run is created (as the
    reference does), so state and history show the in-flight checkpoints of that run."""
    client = get_client(url=gateway_url)
    thread_id = (await client.threads.create())["thread_id"]
    run = await client.runs.create(thread_id, "echo", input=user("in flight"),
                                   config={"configurable": {"delay": 2}})
    busy = await client.threads.get(thread_id)
    assert busy["status"] == "busy"
    deadline = time.monotonic() + 1.5  # well before `prepare` (2 s) ends
    state = await client.threads.get_state(thread_id)
    while state["next"] != ["prepare"] and time.monotonic() < deadline:
        await anyio.sleep(0.05)
        state = await client.threads.get_state(thread_id)
    try:
        assert state["next"] == ["prepare"], state
        assert contents(state["values"]) == [("human", "in flight")]
        history = await client.threads.get_history(thread_id)
        assert [s["metadata"]["step"] for s in history] == [0, -1]
        assert (await client.threads.get(thread_id))["metadata"]["graph_id"] == "echo"
    finally:
        await client.runs.join(thread_id, run["run_id"])
    assert (await client.threads.get(thread_id))["status"] == "idle"


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_state_at_checkpoint(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await echo_thread(client, "at checkpoint")
    history = await client.threads.get_history(thread_id)
    target = history[2]  # step 0: input applied, next prepare
    cid = target["checkpoint_id"]

    by_get = await client.threads.get_state(thread_id, checkpoint_id=cid)
    assert by_get["checkpoint_id"] == cid
    assert by_get["next"] == ["prepare"]
    assert by_get["values"] == target["values"]
    assert contents(by_get["values"]) == [("human", "at checkpoint")]
    assert by_get["parent_checkpoint_id"] == history[3]["checkpoint_id"]

    by_post = await client.threads.get_state(thread_id, checkpoint={"checkpoint_id": cid})
    assert by_post == by_get

    async with httpx.AsyncClient(base_url=gateway_url) as http:
        raw = await http.get(f"/threads/{thread_id}/state/{cid}")
        assert raw.status_code == 200
        assert raw.json() == by_get
        raw_post = await http.post(f"/threads/{thread_id}/state/checkpoint",
                                   json={"checkpoint": {"checkpoint_id": cid}})
        assert raw_post.status_code == 200
        assert raw_post.json() == by_get
        missing = await http.get(f"/threads/{thread_id}/state/{uuid.uuid4()}")
        assert missing.status_code == 404
        assert isinstance(missing.json()["detail"], str)

    # the head is unaffected by reading an old checkpoint
    assert (await client.threads.get_state(thread_id))["checkpoint_id"] == history[0][
        "checkpoint_id"]


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_update_state(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await echo_thread(client, "before update")
    old_head = await client.threads.get_state(thread_id)

    result = await client.threads.update_state(
        thread_id, {"messages": [{"role": "user", "content": "added"}]}, as_node="respond")
    assert set(result) == {"checkpoint", "configurable", "checkpoint_id"}
    ref = {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": result["checkpoint_id"]}
    assert result["checkpoint"] == ref
    assert result["configurable"] == ref
    assert result["checkpoint_id"] != old_head["checkpoint_id"]

    head = await client.threads.get_state(thread_id)
    assert head["checkpoint_id"] == result["checkpoint_id"]
    assert head["parent_checkpoint_id"] == old_head["checkpoint_id"]
    assert head["metadata"]["source"] == "update"
    assert head["metadata"]["step"] == 3
    assert head["next"] == []
    assert contents(head["values"]) == [("human", "before update"),
                                        ("ai", "echo: before update"), ("human", "added")]
    history = await client.threads.get_history(thread_id)
    assert len(history) == 5
    assert history[0]["checkpoint_id"] == result["checkpoint_id"]

    thread = await client.threads.get(thread_id)
    assert thread["values"] == head["values"]  # thread values mirror the new head
    assert thread["status"] == "idle"

    # unknown node: 400, nothing written
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        bad = await http.post(f"/threads/{thread_id}/state",
                              json={"values": {"messages": []}, "as_node": "nope"})
        assert bad.status_code == 400
        assert bad.json() == {"detail": "Node nope does not exist"}
    assert (await client.threads.get_state(thread_id))["checkpoint_id"] == result[
        "checkpoint_id"]


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_update_state_without_runs_is_400(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = (await client.threads.create())["thread_id"]
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        r = await http.post(f"/threads/{thread_id}/state",
                            json={"values": {"messages": [{"role": "user", "content": "x"}]}})
        assert r.status_code == 400
        body = r.json()
        assert set(body) == {"detail"}
        assert body["detail"].startswith(f"Thread '{thread_id}' has no assigned graph ID.")
    assert await client.threads.get_state(thread_id) == EMPTY_STATE
    assert (await client.threads.get(thread_id))["values"] is None
