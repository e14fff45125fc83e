"""Assistants under custom auth (examples/auth.py: every created resource gets
``metadata.owner``, every handler returns ``{"owner": <identity>}``), on SQLite and PostgreSQL:
alice's assistant is stamped with her as owner; bob gets 404 for every by-id endpoint of it,
as for a missing assistant, and his searches and counts leave it (and the system assistants,
which have no owner) out with the pagination still right; a read-only user cannot create."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from tests.server import ROOT, GatewayProcess

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}
CAROL = {"Authorization": "Bearer carol-token"}


@pytest.fixture(params=["sqlite", "postgres"])
def example(request: pytest.FixtureRequest, make_gateway: Any) -> GatewayProcess:
    extra = {"database_url": request.getfixturevalue("pg_url")} \
        if request.param == "postgres" else {}
    return make_gateway(  # type: ignore[no-any-return]
        auth={"path": str(ROOT / "examples/auth.py") + ":auth"}, **extra).start()


async def test_assistants_are_per_owner(example: GatewayProcess) -> None:
    alice = get_client(url=example.url, headers=ALICE)
    bob = get_client(url=example.url, headers=BOB)
    mine = await alice.assistants.create("echo", name="Alice's", metadata={"team": "a"})
    aid = mine["assistant_id"]
    assert mine["metadata"] == {"team": "a", "owner": "alice"}
    for i in range(3):
        await bob.assistants.create("echo", name=f"bob {i}")

    assert [a["assistant_id"] for a in await alice.assistants.search()] == [aid]
    assert await alice.assistants.count() == 1
    assert await bob.assistants.count() == 3
    page = await bob.assistants.search(limit=2, response_format="object")
    assert len(page["assistants"]) == 2 and page["next"] == "2"
    assert len(await bob.assistants.search(limit=2, offset=2)) == 1
    assert await bob.assistants.search(metadata={"team": "a"}) == []

    async with httpx.AsyncClient(base_url=example.url, headers=BOB) as http:
        for method, path, body in [
                ("GET", f"/assistants/{aid}", None),
                ("PATCH", f"/assistants/{aid}", {"name": "mine now"}),
                ("DELETE", f"/assistants/{aid}", None),
                ("POST", f"/assistants/{aid}/versions", {}),
                ("POST", f"/assistants/{aid}/latest", {"version": 1}),
                ("GET", f"/assistants/{aid}/graph", None),
                ("GET", f"/assistants/{aid}/schemas", None)]:
            r = await http.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
        taken = await http.post("/assistants", json={
            "graph_id": "echo", "assistant_id": aid, "if_exists": "do_nothing"})
        assert taken.status_code == 409  # never alice's assistant
    async with httpx.AsyncClient(base_url=example.url, headers=CAROL) as http:
        refused = await http.post("/assistants", json={"graph_id": "echo"})
        assert refused.status_code == 403

    same = await alice.assistants.get(aid)
    assert same["version"] == 1 and same["name"] == "Alice's"
    patched = await alice.assistants.update(aid, metadata={"x": 1})
    assert patched["metadata"] == {"team": "a", "owner": "alice", "x": 1}
    await alice.assistants.delete(aid)
    assert await alice.assistants.count() == 0
