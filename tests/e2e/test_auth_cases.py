"""Custom auth edge cases (tests/auth_handlers.py): what ``@auth.authenticate`` may return and
raise, handler results the gateway refuses to guess about (fail closed), a thread shared
through ``$or`` + ``$contains``, crons that run as their creator, and the JS SDK not retrying
a 401 or a 403."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from tests.e2e.test_crons import wait_for
from tests.e2e.test_js_sdk import JS_DIR, ensure_node_modules, node_binary
from tests.server import ROOT, GatewayProcess

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


def key(token: str) -> dict[str, str]:
    return {"X-Api-Key": token}


@pytest.fixture
def calls_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "auth-calls.txt"
    monkeypatch.setenv("AUTH_CALLS_FILE", str(path))
    return path


@pytest.fixture
def cases(make_gateway: Any, calls_file: Path) -> GatewayProcess:
    return make_gateway(  # type: ignore[no-any-return]
        auth={"path": str(ROOT / "tests/auth_handlers.py") + ":auth"}).start()


async def test_authenticate_results_and_refusals(cases: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=cases.url) as http:
        r = await http.post("/threads", json={}, headers=key("teapot"))
        assert (r.status_code, r.json()) == (418, {"detail": "I am a teapot"})
        r = await http.post("/threads", json={}, headers=key("disabled"))
        assert (r.status_code, r.json()) == (403, {"detail": "Account disabled"})
        assert r.headers["x-why"] == "off"
        r = await http.post("/threads", json={}, headers=key("boom"))
        assert (r.status_code, r.json()) == (401, {"detail": "Unauthorized"})
        r = await http.post("/threads", json={}, headers=key("nobody"))
        assert (r.status_code, r.json()) == (401, {"detail": "Invalid token"})
        r = await http.post("/threads", json={}, headers={"Authorization": "Bearer alice"})
        assert r.status_code == 200 and r.json()["metadata"] == {"owner": "alice"}
    assert "the identity provider is down" in cases.log()
    for token, identity, permissions in (("tuple-dave", "dave", ["p1", "p2"]),
                                         ("obj-erin", "erin", ["p-obj"]),
                                         ("alice", "alice", ["rw"])):
        client = get_client(url=cases.url, api_key=token)
        thread = await client.threads.create()
        assert thread["metadata"]["owner"] == identity
        out = await client.runs.wait(thread["thread_id"], "whoami", input={"note": "x"})
        assert out["seen"]["user_id"] == identity
        assert out["seen"]["permissions"] == permissions
    out = await get_client(url=cases.url, api_key="alice").runs.wait(
        None, "whoami", input={"note": "x"})
    assert out["seen"]["user"]["org"] == "org-of-alice"  # extra fields reach the graph
    assert out["seen"]["user"]["teams"] == ["red"]
    assert out["seen"]["user"]["display_name"] == "alice"


async def test_bad_handler_results_fail_closed(cases: GatewayProcess) -> None:
    alice = get_client(url=cases.url, api_key="alice")
    await alice.threads.create()
    async with httpx.AsyncClient(base_url=cases.url) as http:
        r = await http.post("/threads", json={}, headers=key("weird"))
        assert r.status_code == 500
        assert r.json()["detail"].startswith("Auth handler returned invalid result")
        r = await http.post("/threads/search", json={}, headers=key("ne"))
        assert r.status_code == 500 and "$ne" in r.json()["detail"]  # never everything
        r = await http.post("/threads/count", json={}, headers=key("ne"))
        assert r.status_code == 500
        for response in (r,):
            assert "Traceback" not in response.text
    assert await alice.threads.count() == 1  # the refused create made nothing


async def test_a_shared_thread_and_a_forbidden_delete(cases: GatewayProcess) -> None:
    alice = get_client(url=cases.url, api_key="alice")
    bob = get_client(url=cases.url, api_key="bob")
    dave = get_client(url=cases.url, api_key="tuple-dave")
    shared = await alice.threads.create(metadata={"participants": ["bob"]})
    private = await alice.threads.create()
    await alice.runs.wait(shared["thread_id"], "echo",
                          input={"messages": [{"role": "user", "content": "hello bob"}]})
    seen = [t["thread_id"] for t in await bob.threads.search()]
    assert seen == [shared["thread_id"]]
    assert await bob.threads.count() == 1
    state = await bob.threads.get_state(shared["thread_id"])
    assert state["values"]["messages"][-1]["content"] == "echo: hello bob"
    async with httpx.AsyncClient(base_url=cases.url) as http:
        r = await http.get(f"/threads/{private['thread_id']}", headers=key("bob"))
        assert r.status_code == 404
        # bob may read the shared thread but not delete it: its delete filter is owner only
        r = await http.delete(f"/threads/{shared['thread_id']}", headers=key("bob"))
        assert r.status_code == 404
        r = await http.delete(f"/threads/{shared['thread_id']}", headers=key("tuple-dave"))
        assert (r.status_code, r.json()) == (403, {"detail": "Forbidden"})
    assert (await alice.threads.get(shared["thread_id"]))["thread_id"] == shared["thread_id"]
    assert await dave.threads.count() == 0
    await alice.threads.delete(shared["thread_id"])
    assert await bob.threads.count() == 0


async def test_crons_are_their_creators(cases: GatewayProcess) -> None:
    alice = get_client(url=cases.url, api_key="alice")
    bob = get_client(url=cases.url, api_key="bob")
    cron = await alice.crons.create("whoami", schedule="@every 1s", input={"note": "x"},
                                    on_run_completed="keep",
                                    config={"configurable": {"langgraph_auth_user_id": "bob"}})
    assert cron["metadata"] == {"owner": "alice"} and cron["user_id"] == "alice"
    assert "_gateway_auth" not in cron["payload"]
    patched = await alice.crons.update(cron["cron_id"], metadata={"owner": "bob", "k": 1})
    assert patched["metadata"] == {"owner": "alice", "k": 1}  # the handler's stamp wins
    assert await bob.crons.search() == [] and await bob.crons.count() == 0
    async with httpx.AsyncClient(base_url=cases.url) as http:
        missing = "00000000-0000-4000-8000-00000000c0de"
        for method in ("GET", "DELETE", "PATCH"):
            hidden = await http.request(method, f"/runs/crons/{cron['cron_id']}",
                                        headers=key("bob"), json={"enabled": False})
            absent = await http.request(method, f"/runs/crons/{missing}",
                                        headers=key("bob"), json={"enabled": False})
            assert hidden.status_code == absent.status_code == 404, (method, hidden.text)
            assert hidden.text.replace(cron["cron_id"], "C") == absent.text.replace(
                missing, "C"), (method, hidden.text, absent.text)
    threads = await wait_for(lambda: alice.threads.search(metadata={"owner": "alice"}),
                             bool, 20, "a thread made by the cron's fire")
    await alice.crons.delete(cron["cron_id"])
    state = await wait_for(lambda: alice.threads.get_state(threads[0]["thread_id"]),
                           lambda s: s["values"] != {}, 20, "the fire's run to finish")
    assert state["values"]["seen"]["user_id"] == "alice"  # the fire ran as its creator
    assert await bob.threads.count() == 0


@pytest.mark.skipif(node_binary() is None, reason="node is not installed")
@pytest.mark.timeout(300)
def test_js_sdk_does_not_retry_401_or_403(cases: GatewayProcess, calls_file: Path) -> None:
    ensure_node_modules()
    script = textwrap.dedent(f"""
        import {{ Client }} from "@langchain/langgraph-sdk";
        const out = [];
        for (const apiKey of ["nobody", "disabled"]) {{
          const client = new Client({{ apiUrl: "{cases.url}", apiKey }});
          try {{ await client.threads.create(); out.push("no error"); }}
          catch (e) {{ out.push(String(e.status ?? e.message)); }}
        }}
        console.log(JSON.stringify(out));
    """)
    node = node_binary()
    assert node is not None
    proc = subprocess.run([node, "--input-type=module", "-e", script], cwd=JS_DIR,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == '["401","403"]'
    lines = calls_file.read_text().splitlines()
    assert [line for line in lines if line.startswith("POST /threads")] == [
        "POST /threads nobody", "POST /threads disabled"]  # one request each: no retry


async def test_assistants_are_their_owners(cases: GatewayProcess) -> None:
    alice = get_client(url=cases.url, api_key="alice")
    bob = get_client(url=cases.url, api_key="bob")
    mine = await alice.assistants.create("whoami", name="alice's", metadata={"owner": "bob"})
    assert mine["metadata"]["owner"] == "alice"  # the handler's stamp, not the client's
    a, missing = mine["assistant_id"], "00000000-0000-4000-8000-00000000abcd"
    assert [x["assistant_id"] for x in await alice.assistants.search(graph_id="whoami")] == [a]
    assert await bob.assistants.search(graph_id="whoami") == []
    assert await bob.assistants.count(graph_id="whoami") == 0
    async with httpx.AsyncClient(base_url=cases.url) as http:
        for method, path, body in (
                ("GET", "/assistants/{}", None), ("PATCH", "/assistants/{}", {"name": "bob"}),
                ("POST", "/assistants/{}/versions", {}),
                ("POST", "/assistants/{}/latest", {"version": 1}),
                ("GET", "/assistants/{}/graph", None),
                ("DELETE", "/assistants/{}", None),
                ("POST", "/runs/wait", {"assistant_id": "{}", "input": {"note": "x"}})):
            hidden = await http.request(method, path.format(a), headers=key("bob"),
                                        json=body and {k: (v.format(a) if isinstance(v, str)
                                                           else v) for k, v in body.items()})
            absent = await http.request(method, path.format(missing), headers=key("bob"),
                                        json=body and {k: (v.format(missing)
                                                           if isinstance(v, str) else v)
                                                       for k, v in body.items()})
            assert hidden.status_code == absent.status_code == 404, (method, path, hidden.text)
            assert hidden.text.replace(a, "A") == absent.text.replace(missing, "A"), \
                (method, path, hidden.text, absent.text)
    out = await alice.runs.wait(None, a, input={"note": "x"})
    assert out["seen"]["user_id"] == "alice"
    assert (await alice.assistants.get(a))["name"] == "alice's"  # bob changed nothing


@pytest.fixture
def docs_handler(make_gateway: Any) -> GatewayProcess:
    return make_gateway(  # type: ignore[no-any-return]
        auth={"path": str(ROOT / "tests/auth_docs_handler.py") + ":auth"}).start()


async def test_the_docs_owner_handler_works_everywhere(docs_handler: GatewayProcess) -> None:
    """Every SDK call under the docs' ``add_owner`` handler: nothing fails, bob sees nothing of
    alice's, and the store (whose values have no ``metadata``) stays usable for its owner."""
    alice = get_client(url=docs_handler.url, headers={"Authorization": "Bearer alice"})
    bob = get_client(url=docs_handler.url, headers={"Authorization": "Bearer bob"})
    thread = await alice.threads.create()
    t = thread["thread_id"]
    await alice.threads.update(t, metadata={"x": 1})
    assert len(await alice.threads.search()) == 1 and await alice.threads.count() == 1
    await alice.runs.wait(t, "echo", input={"messages": [{"role": "user", "content": "a"}]})
    assert len(await alice.runs.list(t)) == 1
    assert len(await alice.threads.get_history(t)) >= 2
    await alice.runs.wait(None, "echo", input={"messages": []})
    assistant = await alice.assistants.create("echo", name="mine")
    assert [a["assistant_id"] for a in await alice.assistants.search(graph_id="echo")] == [
        assistant["assistant_id"]]
    assert await alice.assistants.count(graph_id="echo") == 1
    renamed = await alice.assistants.update(assistant["assistant_id"], name="renamed")
    assert renamed["name"] == "renamed" and renamed["metadata"]["owner"] == "alice"
    assert len(await alice.assistants.get_versions(assistant["assistant_id"])) == 2
    cron = await alice.crons.create_for_thread(t, "echo", schedule="0 0 1 1 *")
    assert [c["cron_id"] for c in await alice.crons.search()] == [cron["cron_id"]]
    assert await bob.threads.search() == [] and await bob.threads.count() == 0
    assert await bob.crons.search() == [] and await bob.assistants.count(graph_id="echo") == 0
    # the store: values carry no owner, so this filter hides them; writes must carry it
    await alice.store.put_item(["notes"], "k", {"text": "hi", "owner": "alice"})
    assert (await alice.store.get_item(["notes"], "k"))["value"]["text"] == "hi"
    assert await bob.store.get_item(["notes"], "k") is None
    assert [i["key"] for i in (await alice.store.search_items(["notes"]))["items"]] == ["k"]
    assert (await bob.store.search_items(["notes"]))["items"] == []
    async with httpx.AsyncClient(base_url=docs_handler.url) as http:
        r = await http.put("/store/items", headers={"Authorization": "Bearer bob"},
                           json={"namespace": ["notes"], "key": "k", "value": {"owner": "bob"}})
        assert r.status_code == 403  # alice's item is not bob's to replace
    await alice.crons.delete(cron["cron_id"])
    await alice.threads.delete(t)
