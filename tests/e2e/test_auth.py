"""Custom authentication and per-user isolation (``auth: {path: ...}``, gateway/auth/), with
the worked example examples/auth.py: alice and bob through the official Python SDK and raw
HTTP over a real socket.

Bob can neither read, search, count, run on, join, cancel, copy, change nor delete alice's
threads and runs, nor read her store items; each of his requests on her thread answers exactly
as the same request on a thread that does not exist (status and body). Nothing he tries
changes her thread. The graph sees the authenticated user, never a forged one.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from tests.server import ROOT, GatewayProcess

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}
CAROL = {"Authorization": "Bearer carol-token"}


def hi(text: str = "hi") -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture
def example(make_gateway: Any, engine_config: dict[str, str]) -> GatewayProcess:
    """A gateway guarded by examples/auth.py, on SQLite and on PostgreSQL (the filters are
    SQL of each engine)."""
    return make_gateway(  # type: ignore[no-any-return]
        auth={"path": str(ROOT / "examples/auth.py") + ":auth"}, **engine_config).start()


async def _alice_thread(url: str) -> tuple[str, str]:
    alice = get_client(url=url, headers=ALICE)
    thread = await alice.threads.create(metadata={"topic": "secret"})
    thread_id = str(thread["thread_id"])
    await alice.runs.wait(thread_id, "echo", input=hi("alice's words"))
    run = await alice.runs.create(thread_id, "echo", input=hi("second"),
                                  config={"configurable": {"delay": 30}})
    return thread_id, str(run["run_id"])


def _requests(t: str, r: str) -> list[tuple[str, str, Any]]:
    """(method, path, json body) of every request that names a thread (and a run)."""
    run_body = {"assistant_id": "echo", "input": hi("bob was here")}
    return [
        ("GET", f"/threads/{t}", None),
        ("PATCH", f"/threads/{t}", {"metadata": {"topic": "bob"}}),
        ("DELETE", f"/threads/{t}", None),
        ("GET", f"/threads/{t}/state", None),
        ("POST", f"/threads/{t}/state", {"values": {"messages": []}}),
        ("POST", f"/threads/{t}/state/checkpoint", {"checkpoint": {"checkpoint_id": r}}),
        ("GET", f"/threads/{t}/history", None),
        ("POST", f"/threads/{t}/history", {"limit": 5}),
        ("POST", f"/threads/{t}/copy", None),
        ("GET", f"/threads/{t}/runs", None),
        ("POST", f"/threads/{t}/runs", run_body),
        ("POST", f"/threads/{t}/runs/wait", run_body),
        ("POST", f"/threads/{t}/runs/stream", run_body),
        ("GET", f"/threads/{t}/runs/{r}", None),
        ("DELETE", f"/threads/{t}/runs/{r}", None),
        ("GET", f"/threads/{t}/runs/{r}/join", None),
        ("GET", f"/threads/{t}/runs/{r}/stream", None),
        ("POST", f"/threads/{t}/runs/{r}/cancel", None),
        ("POST", f"/threads/{t}/runs/{r}/cancel?action=rollback", None),
        ("GET", f"/threads/{t}/stream", None),
        ("POST", "/runs/cancel", {"run_ids": [r]}),
        ("POST", "/runs/cancel", {"thread_id": t}),
        ("POST", f"/threads/{t}/runs/crons", {"assistant_id": "echo", "schedule": "0 0 * * *"}),
    ]


AUTH_MODULES = {"example": ROOT / "examples/auth.py", "docs": ROOT / "tests/auth_docs_handler.py"}


@pytest.fixture(params=["example-sqlite", "example-postgres", "docs-sqlite"])
def owner_gateway(request: pytest.FixtureRequest, make_gateway: Any) -> GatewayProcess:
    """A gateway guarded by examples/auth.py (SQLite, PostgreSQL) or by the docs' canonical
    ``add_owner`` handler, verbatim (tests/auth_docs_handler.py)."""
    module, engine = request.param.split("-")
    extra = {"database_url": request.getfixturevalue("pg_url")} if engine == "postgres" else {}
    return make_gateway(  # type: ignore[no-any-return]
        auth={"path": str(AUTH_MODULES[module]) + ":auth"}, **extra).start()


async def test_bob_sees_alices_thread_as_missing(owner_gateway: GatewayProcess) -> None:
    example = owner_gateway
    t, r = await _alice_thread(example.url)
    alice = get_client(url=example.url, headers=ALICE)
    before = await alice.threads.get_state(t)
    missing_t, missing_r = str(uuid.uuid4()), str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=example.url, timeout=20) as http:
        for (method, path, body), (_, other, other_body) in zip(
                _requests(t, r), _requests(missing_t, r), strict=True):
            hidden = await http.request(method, path, json=body, headers=BOB)
            absent = await http.request(method, other, json=other_body, headers=BOB)
            assert hidden.status_code == absent.status_code, (method, path, hidden.text)
            assert hidden.status_code < 500, (method, path, hidden.text)
            assert hidden.text.replace(t, "T") == absent.text.replace(missing_t, "T"), \
                (method, path, hidden.text, absent.text)
        # the run id alone (stateless join) hides her run too
        r_alone = await http.get(f"/runs/{r}/stream", headers=BOB)
        absent = await http.get(f"/runs/{missing_r}/stream", headers=BOB)
        assert r_alone.text == absent.text and "404" in r_alone.text
        # searches and counts leave her thread out, whatever bob asks for
        for body in ({}, {"ids": [t]}, {"metadata": {"owner": "alice"}},
                     {"metadata": {"topic": "secret"}}):
            found = await http.post("/threads/search", json=body, headers=BOB)
            assert found.json() == [] and found.headers["x-pagination-total"] == "0"
            count = await http.post("/threads/count", json=body, headers=BOB)
            assert count.json() == 0
        # creating her thread id: 409, never her thread
        for if_exists in ("raise", "do_nothing"):
            made = await http.post("/threads", json={"thread_id": t, "if_exists": if_exists},
                                   headers=BOB)
            assert made.status_code == 409, made.text
            assert "secret" not in made.text
    # nothing bob did changed her thread; her run is still going
    metadata = (await alice.threads.get(t))["metadata"]
    assert (metadata["topic"], metadata["owner"]) == ("secret", "alice")
    after = await alice.threads.get_state(t)
    assert after["values"] == before["values"]
    assert after["checkpoint"] == before["checkpoint"]
    assert (await alice.runs.get(t, r))["status"] in ("pending", "running")
    assert [x["thread_id"] for x in await alice.threads.search(limit=100)] == [t]
    assert await alice.threads.count() == 1
    assert len(await alice.runs.list(t)) == 2
    assert await alice.crons.search() == []
    await alice.runs.cancel(t, r, wait=True)


async def test_each_user_works_on_their_own(example: GatewayProcess) -> None:
    alice = get_client(url=example.url, headers=ALICE)
    bob = get_client(url=example.url, api_key="bob-token")  # X-Api-Key, as the SDK sends it
    # a spoofed owner is overwritten by the handler's stamp
    ta = await alice.threads.create(metadata={"owner": "bob"})
    assert ta["metadata"]["owner"] == "alice"
    patched = await alice.threads.update(ta["thread_id"], metadata={"owner": "bob"})
    assert patched["metadata"]["owner"] == "alice"  # nor can a PATCH hand it over
    tb = await bob.threads.create()
    assert tb["metadata"] == {"owner": "bob"}
    assert [x["thread_id"] for x in await bob.threads.search()] == [tb["thread_id"]]
    out = await bob.runs.wait(tb["thread_id"], "echo", input=hi("bob's"))
    assert out["messages"][-1]["content"] == "echo: bob's"
    # threads a run creates are owned like POST /threads's
    stateless = await alice.runs.wait(None, "echo", input=hi("x"), on_completion="keep")
    assert stateless["messages"][-1]["content"] == "echo: x"
    new_id = str(uuid.uuid4())
    await alice.runs.wait(new_id, "echo", input=hi("y"), if_not_exists="create")
    mine = {x["thread_id"]: x for x in await alice.threads.search(limit=100)}
    assert new_id in mine and len(mine) == 3
    assert all(x["metadata"]["owner"] == "alice" for x in mine.values())
    async with httpx.AsyncClient(base_url=example.url) as http:
        r = await http.get(f"/threads/{new_id}", headers=BOB)
        assert r.status_code == 404
        # bob cannot reach a run-created thread of alice's by creating runs on it either
        r = await http.post(f"/threads/{new_id}/runs/wait", headers=BOB, json={
            "assistant_id": "echo", "input": hi("z"), "if_not_exists": "create"})
        assert r.status_code == 404, r.text
    assert len(await alice.runs.list(new_id)) == 1


async def test_refusals_pass_through(example: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=example.url) as http:
        r = await http.post("/threads", json={})
        assert (r.status_code, r.json()) == (401, {
            "detail": "Missing token: send Authorization: Bearer"})
        r = await http.post("/threads", json={}, headers={"Authorization": "Bearer nope"})
        assert (r.status_code, r.json()) == (401, {"detail": "Invalid token"})
        r = await http.post("/threads", json={}, headers=CAROL)  # read-only user
        assert (r.status_code, r.json()) == (403, {"detail": "carol may not create"})
        r = await http.post("/threads/search", json={}, headers=CAROL)
        assert (r.status_code, r.json()) == (200, [])
        for path in ("/ok", "/info", "/openapi.json", "/docs", "/ui/", "/metrics"):
            assert (await http.get(path)).status_code == 200, path
        r = await http.post("/threads/count", json={}, headers=ALICE)
    assert r.json() == 0  # the refused requests created nothing


async def test_the_graph_sees_the_user_and_no_forgery(example: GatewayProcess) -> None:
    alice = get_client(url=example.url, headers=ALICE)
    forged = {"langgraph_auth_user_id": "bob", "langgraph_auth_user": {"identity": "bob"},
              "langgraph_auth_permissions": ["admin"]}
    thread = await alice.threads.create()
    for kwargs in ({}, {"context": forged}, {"config": {"configurable": forged}}):
        out = await alice.runs.wait(thread["thread_id"], "whoami", input={"note": "x"},
                                    **kwargs)
        seen = out["seen"]
        assert seen["user_id"] == "alice", kwargs
        assert seen["permissions"] == ["read", "write"]
        assert seen["user"]["identity"] == "alice"
        assert seen["user"]["display_name"] == "Alice"
        assert seen["user"]["is_authenticated"] is True
        assert seen["forged"] == {}, kwargs


async def test_store_is_scoped_per_user(example: GatewayProcess) -> None:
    alice = get_client(url=example.url, headers=ALICE)
    bob = get_client(url=example.url, headers=BOB)
    await alice.store.put_item(["notes"], "k1", {"text": "alice's note"})
    item = await alice.store.get_item(["notes"], "k1")
    assert item is not None and item["namespace"] == ["alice", "notes"]
    assert item["value"] == {"text": "alice's note"}
    assert await bob.store.get_item(["notes"], "k1") is None
    assert await bob.store.get_item(["alice", "notes"], "k1") is None
    assert (await bob.store.search_items(["notes"]))["items"] == []
    assert (await bob.store.search_items([]))["items"] == []
    await bob.store.delete_item(["notes"], "k1")
    await bob.store.delete_item(["alice", "notes"], "k1")
    await bob.store.put_item(["notes"], "k1", {"text": "bob's note"})
    assert (await alice.store.get_item(["notes"], "k1"))["value"] == {"text": "alice's note"}
    assert (await alice.store.list_namespaces())["namespaces"] == [["alice", "notes"]]
    assert (await bob.store.list_namespaces())["namespaces"] == [["bob", "notes"]]
    found = (await alice.store.search_items(["notes"]))["items"]
    assert [(i["key"], i["value"]["text"]) for i in found] == [("k1", "alice's note")]
    async with httpx.AsyncClient(base_url=example.url) as http:
        r = await http.put("/store/items", headers=CAROL,
                           json={"namespace": ["notes"], "key": "k", "value": {}})
        assert (r.status_code, r.json()) == (403, {"detail": "carol may not write"})
