"""Bad input against the live gateway with raw httpx: every error is a JSON ``{"detail": str}``
with the status of protocol.md section 1, and a rejected request changes nothing (no thread
created, no run added). Ends with a fuzz loop: malformed bodies to every POST endpoint, no 5xx.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

CONTEXT_AND_CONFIGURABLE = (
    "Cannot specify both configurable and context. Prefer setting context alone. Context was "
    "introduced in LangGraph 0.6.0 and is the long term planned replacement for configurable."
)
RESUME_WITHOUT_THREAD = "You must provide a thread_id when resuming."
INVALID_JSON = "Invalid JSON in request body"
BAD_THREAD_ID = "Invalid thread ID: must be a UUID"
BAD_RUN_ID = "Invalid run ID: must be a UUID"

ECHO = {"assistant_id": "echo", "input": {"messages": [{"role": "user", "content": "x"}]}}


@pytest.fixture
async def http(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as client:
        yield client


async def new_thread(http: httpx.AsyncClient) -> str:
    r = await http.post("/threads", json={})
    assert r.status_code == 200
    return str(r.json()["thread_id"])


class Unchanged:
    """Snapshot of what a rejected request must not change: no new thread, no new run."""

    def __init__(self, http: httpx.AsyncClient, thread_id: str) -> None:
        self.http = http
        self.thread_id = thread_id

    async def _take(self) -> tuple[int, str | None, list[str], str]:
        count = await self.http.post("/threads/count", json={})
        assert count.status_code == 200
        newest = await self.http.post("/threads/search", json={"limit": 1})
        assert newest.status_code == 200
        runs = await self.http.get(f"/threads/{self.thread_id}/runs", params={"limit": 100})
        assert runs.status_code == 200
        thread = await self.http.get(f"/threads/{self.thread_id}")
        assert thread.status_code == 200
        rows = newest.json()
        return (count.json(), rows[0]["thread_id"] if rows else None,
                [r["run_id"] for r in runs.json()], thread.json()["status"])

    async def __aenter__(self) -> Unchanged:
        self.before = await self._take()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is not None:
            return
        count, newest, runs, status = await self._take()
        # threads of earlier tests' stateless runs may be deleted meanwhile: never more threads
        assert count <= self.before[0], "a rejected request created a thread"
        assert newest == self.before[1], "a rejected request created a thread"
        assert runs == self.before[2], "a rejected request added or removed a run"
        assert status == self.before[3]


def assert_error(r: httpx.Response, status: int, detail: str | None = None,
                 names: str | None = None) -> None:
    """``r`` is ``status`` with body ``{"detail": str}``; exact ``detail`` or naming ``names``."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"detail"}, body
    assert isinstance(body["detail"], str)
    if detail is not None:
        assert body["detail"] == detail
    if names is not None:
        assert names in body["detail"], body["detail"]


RUN_CREATE_PATHS = ["/threads/{t}/runs", "/threads/{t}/runs/stream", "/threads/{t}/runs/wait"]
STATELESS_PATHS = ["/runs", "/runs/stream", "/runs/wait"]


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_malformed_and_empty_json(http: httpx.AsyncClient) -> None:
    thread_id = await new_thread(http)
    async with Unchanged(http, thread_id):
        for path in RUN_CREATE_PATHS + STATELESS_PATHS:
            path = path.format(t=thread_id)
            for raw in (b"{bad json", b"", b"   ", b'{"assistant_id": "echo"', b"\xff\xfe"):
                r = await http.post(path, content=raw,
                                    headers={"content-type": "application/json"})
                assert_error(r, 422, INVALID_JSON)


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_non_uuid_path_ids(http: httpx.AsyncClient) -> None:
    thread_id = await new_thread(http)
    async with Unchanged(http, thread_id):
        for method, path in [
            ("GET", "/threads/abc"), ("PATCH", "/threads/abc"), ("DELETE", "/threads/abc"),
            ("GET", "/threads/abc/state"), ("POST", "/threads/abc/history"),
            ("POST", "/threads/abc/copy"), ("GET", "/threads/abc/runs"),
            ("POST", "/threads/abc/runs"), ("POST", "/threads/abc/runs/wait"),
            ("POST", "/threads/abc/runs/stream"), ("GET", "/threads/1234/runs"),
        ]:
            r = await http.request(method, path, json=ECHO)
            assert_error(r, 422, BAD_THREAD_ID)
        for method, suffix in [("GET", ""), ("DELETE", ""), ("GET", "/join"),
                               ("POST", "/cancel")]:
            r = await http.request(method, f"/threads/{thread_id}/runs/not-a-run{suffix}")
            assert_error(r, 422, BAD_RUN_ID)


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_unknown_thread_and_run(http: httpx.AsyncClient) -> None:
    thread_id = await new_thread(http)
    missing = str(uuid.uuid4())
    async with Unchanged(http, thread_id):
        for path in RUN_CREATE_PATHS:
            r = await http.post(path.format(t=missing), json=ECHO)
            assert_error(r, 404)
        assert_error(await http.get(f"/threads/{missing}"), 404,
                     f"Thread with ID {missing} not found")
        assert_error(await http.get(f"/threads/{thread_id}/runs/{uuid.uuid4()}"), 404,
                     "Not Found")
        assert_error(await http.delete(f"/threads/{thread_id}/runs/{uuid.uuid4()}"), 404)
        assert_error(await http.post(f"/threads/{thread_id}/runs/{uuid.uuid4()}/cancel"), 404)
    # the run create did not create the missing thread
    assert_error(await http.get(f"/threads/{missing}"), 404)


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_unknown_stream_mode(http: httpx.AsyncClient) -> None:
    thread_id = await new_thread(http)
    async with Unchanged(http, thread_id):
        for path in RUN_CREATE_PATHS + STATELESS_PATHS:
            path = path.format(t=thread_id)
            for mode in ("bogus", "tools", "lifecycle", ["values", "tools"], [None], 5):
                r = await http.post(path, json={**ECHO, "stream_mode": mode})
                assert_error(r, 422, names="stream_mode")


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_body_of_wrong_type(http: httpx.AsyncClient) -> None:
    thread_id = await new_thread(http)
    async with Unchanged(http, thread_id):
        for path in RUN_CREATE_PATHS + STATELESS_PATHS:
            path = path.format(t=thread_id)
            for body in ([ECHO], "echo", 5, None, True):
                assert_error(await http.post(path, json=body), 422)
            assert_error(await http.post(path, json={**ECHO, "config": "x"}), 422,
                         names="config")
            assert_error(await http.post(path, json={**ECHO, "metadata": [1]}), 422,
                         names="metadata")
            assert_error(await http.post(path, json={**ECHO, "context": "x"}), 422,
                         names="context")
            assert_error(await http.post(path, json={"input": {}}), 422,
                         names="assistant_id")
            assert_error(await http.post(path, json={**ECHO, "multitask_strategy": "x"}), 422,
                         names="multitask_strategy")
        assert_error(await http.post("/threads/search", json={"limit": "abc"}), 422,
                     names="limit")
        assert_error(await http.post("/threads/search", json={"status": "asleep"}), 422,
                     names="status")
        assert_error(await http.post("/threads/count", json={"metadata": [1]}), 422,
                     names="metadata")
        assert_error(await http.post("/assistants/search", json={"limit": "abc"}), 422,
                     names="limit")
        assert_error(await http.get(f"/threads/{thread_id}/runs", params={"limit": "abc"}),
                     422, names="limit")
        assert_error(await http.post(f"/threads/{thread_id}/history", json={"limit": "abc"}),
                     422, names="limit")
        assert_error(await http.post("/threads", json={"metadata": [1]}), 422,
                     names="metadata")
        assert_error(await http.post("/threads", json={"thread_id": str(uuid.uuid4()),
                                                       "if_exists": "explode"}),
                     422, names="if_exists")
        assert_error(await http.patch(f"/threads/{thread_id}", json={"metadata": "x"}), 422,
                     names="metadata")


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_unsupported_options_are_named(http: httpx.AsyncClient) -> None:
    thread_id = await new_thread(http)
    async with Unchanged(http, thread_id):
        for path in RUN_CREATE_PATHS + STATELESS_PATHS:
            path = path.format(t=thread_id)
            # the default webhook policy refuses loopback (tests/e2e/test_webhooks.py)
            r = await http.post(path, json={**ECHO, "webhook": "http://127.0.0.1:9/hook"})
            assert_error(r, 422, "Webhook host blocked: loopback IP range")
            r = await http.post(path, json={**ECHO, "feedback_keys": ["score"]})
            assert_error(r, 422, names="feedback_keys")


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_context_with_configurable_is_400(http: httpx.AsyncClient) -> None:
    thread_id = await new_thread(http)
    body = {**ECHO, "context": {"delay": 0}, "config": {"configurable": {"delay": 0}}}
    async with Unchanged(http, thread_id):
        for path in RUN_CREATE_PATHS + STATELESS_PATHS:
            r = await http.post(path.format(t=thread_id), json=body)
            assert_error(r, 400, CONTEXT_AND_CONFIGURABLE)


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_resume_on_stateless_run_is_400(http: httpx.AsyncClient) -> None:
    thread_id = await new_thread(http)
    async with Unchanged(http, thread_id):
        for path in STATELESS_PATHS:
            r = await http.post(path, json={"assistant_id": "hitl", "command": {"resume": "ok"}})
            assert_error(r, 400, RESUME_WITHOUT_THREAD)


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_unknown_route_is_json_404(http: httpx.AsyncClient) -> None:
    thread_id = await new_thread(http)
    async with Unchanged(http, thread_id):
        for method, path in [("GET", "/nope"), ("POST", "/nope"), ("GET", "/threads/x/y/z/w"),
                             ("POST", f"/threads/{thread_id}/nope"),
                             ("GET", f"/threads/{thread_id}/runs/{uuid.uuid4()}/nope")]:
            r = await http.request(method, path, json={})
            assert_error(r, 404)


# ---- fuzz: malformed bodies to every POST endpoint -------------------------------------------

RAW_BODIES: list[bytes] = [
    b"", b" ", b"{", b"}", b"[", b"null", b"true", b"0", b"-1", b'"s"', b"[]", b"[{}]",
    b"\xff\xfe\x00", b"{'a': 1}", b'{"a":}', b"NaN", b'{"a": NaN}', b'{"a": 1e400}',
    b"[" * 5000 + b"]" * 5000, b'{"assistant_id": "echo"',
]
JSON_BODIES: list[Any] = [
    {"assistant_id": None}, {"assistant_id": 5}, {"assistant_id": ["echo"]},
    {"assistant_id": ""}, {"assistant_id": "nope", "input": {}},
    {"assistant_id": "echo", "config": []}, {"assistant_id": "echo", "stream_mode": 5},
    {"assistant_id": "echo", "command": {"bogus": 1}}, {"assistant_id": "echo", "command": "x"},
    {"assistant_id": "echo", "checkpoint": {"checkpoint_id": 5}},
    {"assistant_id": "echo", "multitask_strategy": "explode"},
    {"assistant_id": "echo", "if_not_exists": 1}, {"assistant_id": "echo", "after_seconds": -5},
    {"assistant_id": "echo", "after_seconds": "soon"},
    {"assistant_id": "echo", "after_seconds": 1e308},
    {"assistant_id": "echo", "interrupt_before": "prepare"},
    {"assistant_id": "echo", "durability": "maybe"},
    {"assistant_id": "echo", "on_disconnect": "explode"},
    {"assistant_id": "echo", "context": [1]}, {"assistant_id": "echo", "metadata": "m"},
    {"limit": -1}, {"limit": 0}, {"limit": "abc"}, {"limit": 1.5}, {"limit": 1e29},
    {"offset": -1}, {"offset": 9223372036854775807}, {"offset": 9223372036854775808},
    {"offset": 18446744073709551615},
    {"metadata": {"a\"b'c\\": 1}}, {"metadata": {"": None}}, {"metadata": []},
    {"values": 5}, {"ids": [1, 2]}, {"ids": "x"}, {"status": "sleeping"},
    {"sort_by": "1; DROP TABLE threads"}, {"sort_order": "sideways"},
    {"thread_id": "not-a-uuid"}, {"thread_id": 5}, {"if_exists": "explode"},
    {"values": "str", "as_node": "respond"}, {"values": {"messages": 5}},
    {"as_node": 5}, {"checkpoint": "x"}, {"checkpoint": {"checkpoint_id": "garbage"}},
    {"before": "x"}, {"before": {"configurable": {"checkpoint_id": 5}}},
    {"before": {"configurable": "x"}}, {"graph_id": 5}, {"name": ["x"]},
    {"a" * 10000: "b"},
]


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_fuzz_post_endpoints_never_5xx(http: httpx.AsyncClient) -> None:
    thread_id = await new_thread(http)
    done = await http.post(f"/threads/{thread_id}/runs/wait", json=ECHO)
    assert done.status_code == 200
    run_id = (await http.get(f"/threads/{thread_id}/runs")).json()[0]["run_id"]
    endpoints = [
        "/assistants/search", "/assistants/count", "/threads", "/threads/search",
        "/threads/count", f"/threads/{thread_id}/copy", f"/threads/{thread_id}/state",
        f"/threads/{thread_id}/state/checkpoint", f"/threads/{thread_id}/history",
        f"/threads/{thread_id}/runs", f"/threads/{thread_id}/runs/stream",
        f"/threads/{thread_id}/runs/wait", f"/threads/{thread_id}/runs/{run_id}/cancel",
        "/runs", "/runs/stream", "/runs/wait",
    ]
    bodies: list[tuple[str, bytes]] = [(repr(b[:40]), b) for b in RAW_BODIES]
    for body in JSON_BODIES:
        bodies.append((repr(body)[:80], orjson.dumps(body)))
    failures = []
    for path in endpoints:
        for label, raw in bodies:
            # headers only: a body that happens to be valid may start a run we do not wait for
            async with http.stream("POST", path, content=raw,
                                   headers={"content-type": "application/json"}) as r:
                if r.status_code >= 500:
                    failures.append(f"POST {path} {label} -> {r.status_code}")
                    continue
                if r.status_code >= 400:
                    await r.aread()
                    try:
                        body = r.json()
                        ok = set(body) == {"detail"} and isinstance(body["detail"], str)
                    except ValueError:
                        ok = False
                    if not ok:
                        failures.append(f"POST {path} {label} -> {r.status_code} {r.text[:80]}")
    for path in (f"/threads/{thread_id}", ):
        for label, raw in bodies:
            r = await http.patch(path, content=raw, headers={"content-type": "application/json"})
            if r.status_code >= 500:
                failures.append(f"PATCH {path} {label} -> {r.status_code}")
    # leave nothing queued behind on the fuzz thread
    for run in (await http.get(f"/threads/{thread_id}/runs", params={"limit": 1000})).json():
        if run["status"] in ("pending", "running"):
            await http.post(f"/threads/{thread_id}/runs/{run['run_id']}/cancel")
    assert not failures, "\n".join(failures)
