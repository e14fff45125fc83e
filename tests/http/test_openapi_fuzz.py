"""A fuzz driven by the served OpenAPI document (issue 13): every operation of
``/openapi.json``, with bodies generated from its own request schema (a small JSON-schema to
hypothesis translation, ``_from_schema``: hypothesis-jsonschema does not run on this hypothesis)
and path ids that are real, random or junk, sent with and without the API key to a gateway
that requires one (``auth.api_keys``).

Per request: never a 5xx and every error is ``{"detail": str}``; without the key, every
non-public path is a 401 that changed nothing (the thread count is the same after).

The same fuzz runs against a gateway guarded by examples/auth.py (custom auth), as alice (who
owns the real thread), as bob and with no credentials: bob never gets a 2xx on a path naming
her thread, and after it all her thread and its metadata are as they were.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gateway.auth import PUBLIC_PATHS
from tests.http.test_fuzz import unexpected_tracebacks
from tests.server import ROOT, GatewayProcess

KEY = "fuzz-key"
PER_OPERATION = 6


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.server import write_config

    server = GatewayProcess(write_config(tmp_path_factory.mktemp("openapi-fuzz"),
                                         auth={"api_keys": [KEY]})).start()
    yield server
    server.kill()


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in spec["paths"].items()
            for method, op in ops.items()
            if not path.endswith("/stream") and path not in ("/docs",)]


_JUNK = st.sampled_from([None, 0, -1, 2**64, 1e308, "", "x", "\x00", [], {}, [None], True])


def _from_schema(schema: dict[str, Any], components: dict[str, Any], depth: int = 0,
                 ) -> st.SearchStrategy[Any]:
    """Values for a (pydantic-made) JSON schema: mostly valid, with junk mixed in at every
    level, so that validation, not only the happy path, is exercised."""
    if depth > 4:
        return _JUNK
    if "$ref" in schema:
        return _from_schema(components[schema["$ref"].rsplit("/", 1)[-1]], components,
                            depth + 1)
    if "enum" in schema:
        return st.one_of(st.sampled_from(schema["enum"]), _JUNK)
    if "const" in schema:
        return st.just(schema["const"])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return st.one_of(*[_from_schema(s, components, depth + 1) for s in schema[key]])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        if not props:
            return st.one_of(st.dictionaries(st.text(max_size=5), _JUNK, max_size=3), _JUNK)
        fields = {name: _from_schema(sub, components, depth + 1) for name, sub in props.items()}
        return st.fixed_dictionaries(
            {k: v for k, v in fields.items() if k in required},
            optional={k: v for k, v in fields.items() if k not in required})
    if kind == "array":
        items = schema.get("items") or {}
        return st.lists(_from_schema(items, components, depth + 1), max_size=3)
    if kind == "string":
        if schema.get("format") == "uuid":
            return st.one_of(st.uuids().map(str), st.text(max_size=8))
        return st.one_of(st.text(max_size=12), st.sampled_from(["echo", "@daily", "* * * * *"]))
    if kind == "integer":
        return st.one_of(st.integers(-5, 50), st.integers(-(2**65), 2**65))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    return _JUNK


def _body_strategy(spec: dict[str, Any], op: dict[str, Any]) -> st.SearchStrategy[Any]:
    schema = (op.get("requestBody", {}).get("content", {}).get("application/json", {})
              .get("schema"))
    if schema is None:
        return st.none()
    return st.one_of(_from_schema(schema, spec["components"]["schemas"]), _JUNK)


CALLERS = {  # who sends a request: headers over the client's own (the API key, or none)
    "key": {}, "none": {"X-Api-Key": ""},
    "alice": {"Authorization": "Bearer alice-token"},
    "bob": {"Authorization": "Bearer bob-token"}, "nobody": {},
}


def _send(http: httpx.Client, thread_id: str, path: str, method: str, body: Any, ids: str,
          who: str, failures: list[str], sent: list[int]) -> None:
    url = path
    for name in ("thread_id", "run_id", "cron_id", "assistant_id", "checkpoint_id",
                 "namespace"):
        value = {"real": thread_id if name == "thread_id" else
                 "00000000-0000-4000-8000-000000000001",
                 "random": "00000000-0000-4000-8000-000000000000", "junk": "x y"}[ids]
        url = url.replace("{" + name + "}", urllib.parse.quote(value, safe=""))
    if method == "delete" and ids == "real":
        return  # never delete the shared thread
    r = http.request(method.upper(), url, json=body, headers=CALLERS[who])
    sent.append(r.status_code)
    where = f"{method.upper()} {url} as={who} body={str(body)[:120]}"
    if r.status_code >= 500:
        failures.append(f"{where} -> {r.status_code} {r.text[:200]}")
    elif who in ("none", "nobody") and path not in PUBLIC_PATHS and r.status_code != 401:
        failures.append(f"{where} -> {r.status_code} without credentials")
    elif (who == "bob" and ids == "real" and "{thread_id}" in path and r.status_code < 400
          and not r.text.startswith('{"__error__"')):  # a join's "not found" is a 200 body
        failures.append(f"{where} -> {r.status_code}: bob reached alice's thread")
    elif r.status_code >= 400 and r.headers.get("content-type", "").startswith(
            "application/json") and set(r.json() or {}) != {"detail"}:
        failures.append(f"{where} -> {r.status_code} {r.text[:200]}")


def _fuzz(http: httpx.Client, spec: dict[str, Any], thread_id: str, path: str, method: str,
          op: dict[str, Any], failures: list[str], sent: list[int],
          callers: tuple[str, ...] = ("key", "none")) -> None:
    @settings(max_examples=PER_OPERATION, deadline=None, database=None, derandomize=True,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(body=_body_strategy(spec, op), ids=st.sampled_from(["real", "random", "junk"]),
           who=st.sampled_from(callers))
    def case(body: Any, ids: str, who: str) -> None:
        _send(http, thread_id, path, method, body, ids, who, failures, sent)

    case()


@pytest.mark.timeout(300)
def test_every_operation_of_the_served_document(keyed: GatewayProcess) -> None:
    http = httpx.Client(base_url=keyed.url, timeout=20, headers={"X-Api-Key": KEY})
    spec = http.get("/openapi.json").json()
    thread_id = http.post("/threads", json={}).json()["thread_id"]
    failures: list[str] = []
    sent: list[int] = []
    operations = _operations(spec)
    assert len(operations) >= 40
    for path, method, op in operations:
        _fuzz(http, spec, thread_id, path, method, op, failures, sent)
    assert len(sent) >= 3 * len(operations), len(sent)
    assert {200, 401, 404, 422} <= set(sent), sorted(set(sent))  # every kind was reached
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures[:30])
    assert httpx.post(keyed.url + "/threads/count", json={}).status_code == 401
    assert http.get(f"/threads/{thread_id}").status_code == 200  # still there
    _check_intact(http, keyed, {})


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.server import write_config

    server = GatewayProcess(write_config(
        tmp_path_factory.mktemp("openapi-fuzz-auth"),
        auth={"path": str(ROOT / "examples/auth.py") + ":auth"})).start()
    yield server
    server.kill()


@pytest.mark.timeout(400)
def test_every_operation_under_custom_auth(guarded: GatewayProcess) -> None:
    http = httpx.Client(base_url=guarded.url, timeout=20)
    alice = CALLERS["alice"]
    spec = http.get("/openapi.json").json()
    thread = http.post("/threads", json={"metadata": {"k": "v"}}, headers=alice).json()
    thread_id = thread["thread_id"]
    failures: list[str] = []
    sent: list[int] = []
    for path, method, op in _operations(spec):
        _fuzz(http, spec, thread_id, path, method, op, failures, sent,
              callers=("alice", "bob", "nobody"))
    assert {200, 401, 404, 422} <= set(sent), sorted(set(sent))
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures[:30])
    after = http.get(f"/threads/{thread_id}", headers=alice)
    assert after.status_code == 200
    assert after.json()["metadata"]["owner"] == "alice"
    _check_intact(http, guarded, alice)
    for who in ("alice", "bob"):  # every thread is its creator's: none without an owner
        page = http.post("/threads/search", json={"limit": 1000}, headers=CALLERS[who])
        assert all(t["metadata"].get("owner") == who for t in page.json()), who


def _check_intact(http: httpx.Client, server: GatewayProcess, headers: dict[str, str]) -> None:
    """Nothing half-written: every thread's state reads back, and the log has no traceback
    (a run failing on its input excepted: that is the run's outcome)."""
    page = http.post("/threads/search", json={"limit": 1000}, headers=headers)
    assert page.status_code == 200, page.text
    for thread in page.json():
        state = http.get(f"/threads/{thread['thread_id']}/state", headers=headers)
        assert state.status_code == 200, (thread["thread_id"], state.text[:200])
    tracebacks = unexpected_tracebacks(server.log())
    assert not tracebacks, "\n\n".join(tracebacks[:5])
