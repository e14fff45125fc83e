"""Generated bad input to EVERY endpoint of a fresh gateway (hypothesis, derandomized), then
integrity checks.

The endpoints are read from the route tables (gateway/routes/{system,assistants,threads,runs,
crons,store}.py),
so a new route is fuzzed without editing this file. Each example is one request over a real
socket with: path ids that are real, respelled (upper case, hex), random UUIDs or junk; odd
query strings; an odd ``Last-Event-ID``; and a body that is malformed bytes, arbitrary JSON,
JSON nested past the depth limit, or the endpoint's own body with one field replaced by junk.

Per request: never a 5xx, and every error is ``{"detail": str}``. After all of them: the
gateway log holds no traceback but those of runs that failed on their (fuzzed) input, no run
is left ``pending``/``running`` once the legitimately created ones finish, and every thread's
state answers 200.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from gateway.routes import assistants, crons, runs, store, system, threads
from tests.server import GatewayProcess

ENDPOINTS: list[tuple[str, str]] = sorted(
    (route.path, method)
    for module in (system, assistants, threads, runs, crons, store)
    for route in module.routes
    if isinstance(route, Route)
    for method in (route.methods or ())
)
PER_ENDPOINT = 20  # examples per (path, method): every endpoint gets its share
ECHO: dict[str, Any] = {"assistant_id": "echo",
                        "input": {"messages": [{"role": "user", "content": "x"}]}}

# the fields each body-taking endpoint knows (schemas.py), mutated one at a time
# ("a.b" sets key b inside field a)
RUN_FIELDS = ["assistant_id", "input", "command", "metadata", "config", "context", "checkpoint",
              "checkpoint_id", "stream_mode", "stream_subgraphs", "stream_resumable",
              "interrupt_before", "interrupt_after", "multitask_strategy", "if_not_exists",
              "after_seconds", "on_disconnect", "on_completion", "durability",
              "checkpoint_during", "webhook", "feedback_keys", "input.messages",
              "config.configurable", "config.tags", "config.metadata", "config.recursion_limit",
              "config.callbacks", "command.resume", "command.update", "command.goto",
              "checkpoint.checkpoint_id", "context.delay"]
SEARCH_FIELDS = ["ids", "metadata", "values", "status", "limit", "offset", "sort_by",
                 "sort_order", "metadata.n", "values.n"]
BODIES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "/threads": ({"metadata": {"a": 1}}, ["thread_id", "metadata", "if_exists"]),
    "/threads/search": ({"limit": 5}, SEARCH_FIELDS),
    "/threads/count": ({}, SEARCH_FIELDS),
    "/assistants/search": ({"limit": 5}, ["graph_id", "name", "metadata", "limit", "offset",
                                          "metadata.n", "sort_by", "sort_order", "select"]),
    "/assistants/count": ({}, ["graph_id", "name", "metadata"]),
    "/assistants": ({"graph_id": "echo"}, ["graph_id", "assistant_id", "config", "context",
                                           "metadata", "if_exists", "name", "description",
                                           "config.configurable", "config.tags",
                                           "config.recursion_limit", "metadata.n"]),
    "/assistants/{assistant_id}": ({"metadata": {"f": 1}}, [
        "graph_id", "config", "context", "metadata", "name", "description",
        "config.configurable", "config.recursion_limit", "metadata.n"]),
    "/assistants/{assistant_id}/versions": ({"limit": 5}, ["metadata", "limit", "offset",
                                                           "metadata.n"]),
    "/assistants/{assistant_id}/latest": ({"version": 1}, ["version"]),
    "/threads/{thread_id}": ({"metadata": {"b": 2}}, ["metadata"]),
    "/threads/{thread_id}/state": ({"values": {"messages": []}},
                                   ["values", "as_node", "checkpoint", "checkpoint_id"]),
    "/threads/{thread_id}/state/checkpoint": ({"checkpoint": {"checkpoint_id": "x"}},
                                              ["checkpoint", "subgraphs"]),
    "/threads/{thread_id}/history": ({"limit": 3}, ["limit", "before", "metadata",
                                                    "checkpoint", "metadata.n",
                                                    "before.configurable"]),
    "/runs/cancel": ({"run_ids": []}, ["run_ids", "thread_id", "status"]),
}
for _path in ("/threads/{thread_id}/runs", "/threads/{thread_id}/runs/stream",
              "/threads/{thread_id}/runs/wait", "/runs", "/runs/stream", "/runs/wait"):
    BODIES[_path] = (ECHO, RUN_FIELDS)
CRON_FIELDS = [*RUN_FIELDS, "schedule", "timezone", "end_time", "enabled", "on_run_completed",
               "max_concurrency", "on_max_concurrency", "retry", "retry.max_attempts",
               "retry.on", "metadata.x_gateway"]
for _path in ("/runs/crons", "/threads/{thread_id}/runs/crons"):
    BODIES[_path] = ({**ECHO, "schedule": "@daily"}, CRON_FIELDS)
BODIES.update({
    "/runs/crons/{cron_id}": ({"enabled": False}, CRON_FIELDS),
    "/runs/crons/search": ({"limit": 5}, ["assistant_id", "thread_id", "enabled", "metadata",
                                          "limit", "offset", "sort_by", "sort_order",
                                          "select"]),
    "/runs/crons/count": ({}, ["assistant_id", "thread_id", "metadata"]),
    "/store/items": ({"namespace": ["fuzz"], "key": "k", "value": {"v": 1}},
                     ["namespace", "key", "value", "index", "ttl"]),
    "/store/items/search": ({"namespace_prefix": ["fuzz"]},
                            ["namespace_prefix", "filter", "limit", "offset", "query",
                             "refresh_ttl", "filter.v"]),
    "/store/namespaces": ({}, ["prefix", "suffix", "max_depth", "limit", "offset"]),
})

QUERY_KEYS = ["limit", "offset", "status", "stream_mode", "stream_modes", "xray", "wait",
              "action", "cancel_on_disconnect", "recurse", "subgraphs", "before", "metadata",
              "namespace", "key", "refresh_ttl", "delete_threads"]
RAW_BODIES = [b"", b" ", b"{", b"[", b"null", b"0", b'"s"', b"[]", b"[{}]", b"\xff\xfe",
              b"{'a': 1}", b'{"a": NaN}', b'{"a": 1e400}', b'{"assistant_id": "echo"']

# ---- strategies ---------------------------------------------------------------------------

_INTS = st.one_of(st.integers(-10, 10), st.integers(-(2**70), 2**70),
                  st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1]))
_FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([1e308, -1e308, 5e-324, 0.5]))
_TEXT = st.one_of(st.text(max_size=12),
                  st.sampled_from(["echo", "hitl", "values", "*", "__start__", "respond",
                                   "interrupt", "rollback", "reject", "enqueue", "\x00", "' OR 1",
                                   "a" * 300, "{", "[" * 50]))
_WIDE = st.one_of(  # past the filter and id-list bounds
    st.integers(90, 3000).map(lambda n: {f"k{i}": i for i in range(n)}),
    st.integers(900, 1500).map(lambda n: [f"{i:032x}" for i in range(n)]),
)
_CONFUSING = st.sampled_from(  # a value of the wrong type for almost any field
    [5, -1, 0, "x", "", [1], [{}], {"a": 1}, True, None, 2**63, 2**64 - 1, 1e308, [None]])
JSON_VALUES = st.one_of(
    _CONFUSING,
    st.recursive(
        st.one_of(st.none(), st.booleans(), _INTS, _FLOATS, _TEXT),
        lambda inner: st.one_of(st.lists(inner, max_size=4),
                                st.dictionaries(_TEXT, inner, max_size=4)),
        max_leaves=12,
    ),
)
WIDE_FIELDS = {"metadata", "values", "ids", "run_ids"}
# a run must not be legitimately delayed past the integrity check's deadline
AFTER_SECONDS = st.one_of(st.floats(-10, 0.2), st.sampled_from(["soon", None, [1], 1e308]))
DELAY = st.one_of(st.floats(-1, 0.2), st.sampled_from(["x", None, [1], -1e308]))

ID_KINDS = ["real", "real", "real", "upper", "hex", "random", "junk"]
JUNK_IDS = ["x", "1234", "..", "%2F", "{}", "urn:uuid:", "nul\x00l", "é", "0" * 400, "a b", "-1"]


@dataclass
class Example:
    path: str
    method: str
    ids: dict[str, str]
    junk_id: str
    query: list[tuple[str, str]]
    last_event_id: str | None
    body_kind: str
    body: Any = None
    mutations: list[tuple[str, Any]] = field(default_factory=list)


def _query_values() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=10),
        st.sampled_from(["true", "false", "1", "0", "-1", "2", "²", "1.5", "99999999999999999999",
                         "[", "[" * 3000, '["values"]', '["values", 1]', "values,updates",
                         "run_modes,nope", "interrupt", "rollback", "pending", "abc", ""]),
    )


@st.composite
def examples(draw: st.DrawFn, path: str, method: str) -> Example:
    names = re.findall(r"{(\w+)}", path)
    ids = {name: draw(st.sampled_from(ID_KINDS)) for name in names}
    keys = st.one_of(st.sampled_from(QUERY_KEYS), st.text(min_size=1, max_size=6))
    query = draw(st.lists(st.tuples(keys, _query_values()), max_size=3))
    last_event_id = draw(st.one_of(
        st.none(),
        st.sampled_from(["-1", "0", "0-0", "1-1", "-1-1", "", " ", "abc", "1-", "-",
                         "99999999999999999999-0", "0-99999999999999999999",
                         "9223372036854775807-9223372036854775807", "1" * 200]),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
    ))
    kinds = ["raw", "json", "deep"] + (["mutated"] * 4
                                       if path in BODIES and method != "GET" else [])
    kind = draw(st.sampled_from(kinds))
    example = Example(path, method, ids, draw(st.sampled_from(JUNK_IDS)), query,
                      last_event_id, kind)
    if kind == "raw":
        example.body = draw(st.one_of(st.sampled_from(RAW_BODIES), st.binary(max_size=40)))
    elif kind == "json":
        example.body = draw(JSON_VALUES)
    elif kind == "deep":
        example.body = (draw(st.sampled_from(["metadata", "input", "config", "values", "ids"])),
                        draw(st.integers(60, 1200)), draw(st.booleans()))
    else:
        _, fields = BODIES[path]
        for _ in range(draw(st.integers(1, 3))):
            name = draw(st.one_of(st.sampled_from(fields), st.sampled_from(fields), _TEXT))
            value = draw({"after_seconds": AFTER_SECONDS, "context.delay": DELAY}.get(
                name, st.one_of(_WIDE, JSON_VALUES) if name in WIDE_FIELDS else JSON_VALUES))
            example.mutations.append((name, value))
    return example


# ---- the fuzzed gateway -----------------------------------------------------------------------


class Fuzzer:
    """Sends examples to one gateway; resolves ids against real threads and runs."""

    def __init__(self, server: GatewayProcess) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=15)
        self.thread_id, self.run_id = self.new_thread_with_run()
        self.checkpoint_id = self.http.get(
            f"/threads/{self.thread_id}/state").json()["checkpoint_id"]
        self.cron_id = self.http.post("/runs/crons", json={**ECHO, "schedule": "@daily"}
                                      ).json()["cron_id"]
        self.assistant_id = self.new_assistant()
        self.failures: list[str] = []
        self.requests = 0

    def new_thread_with_run(self) -> tuple[str, str]:
        thread_id = self.http.post("/threads", json={}).json()["thread_id"]
        r = self.http.post(f"/threads/{thread_id}/runs/wait", json=ECHO)
        assert r.status_code == 200, r.text
        return thread_id, r.headers["content-location"].rsplit("/", 1)[1]

    def new_assistant(self) -> str:
        """A stored assistant (the real id of the assistant endpoints but the graph ones)."""
        r = self.http.post("/assistants", json={"graph_id": "echo", "metadata": {"fuzz": 1}})
        assert r.status_code == 200, r.text
        return str(r.json()["assistant_id"])

    def resolve_id(self, name: str, kind: str, junk: str, fresh: tuple[str, str] | None,
                   assistant: str | None = None) -> str:
        system = "echo" if kind == "real" else "046b5dc7-2108-582c-9c6c-31d556d138f0"
        real = {"thread_id": fresh[0] if fresh else self.thread_id,
                "run_id": fresh[1] if fresh else self.run_id,
                "assistant_id": assistant or system,
                "checkpoint_id": self.checkpoint_id, "namespace": "child",
                "cron_id": self.cron_id}[name]
        if kind == "real":
            return real
        if kind == "upper":
            return real.upper()
        if kind == "hex":
            return real.replace("-", "")
        if kind == "random":
            return "00000000-0000-4000-8000-000000000000"
        return junk

    def body_bytes(self, example: Example) -> bytes:
        if example.body_kind == "raw":
            return bytes(example.body)
        if example.body_kind == "json":
            return json.dumps(example.body).encode()  # NaN/Infinity/huge ints: as typed
        if example.body_kind == "deep":
            name, levels, as_list = example.body
            deep = ("[" * levels + "1" + "]" * levels if as_list
                    else '{"a":' * levels + "1" + "}" * levels)
            return f'{{"assistant_id":"echo","{name}":{deep}}}'.encode()
        base, _ = BODIES[example.path]
        body = dict(base)
        for name, value in example.mutations:
            outer, dot, inner = name.partition(".")
            if dot and outer in BODIES[example.path][1]:
                current = body.get(outer)
                body[outer] = {**(current if isinstance(current, dict) else {}), inner: value}
            else:
                body[name] = value
        return json.dumps(body).encode()

    def send(self, example: Example) -> None:
        fresh = None
        if example.method == "DELETE" and "real" in example.ids.values():
            fresh = self.new_thread_with_run()  # never delete the shared thread and run
        path = example.path
        # stored assistants for the assistant endpoints, every other one a system assistant;
        # a DELETE gets one of its own (never the shared one)
        assistant = None
        if path.startswith("/assistants/{") and not re.search(r"/(graph|schemas|subgraphs)",
                                                               path):
            assistant = (self.new_assistant() if example.method == "DELETE" else
                         self.assistant_id if len(path) % 2 or example.method != "GET"
                         else None)
        for name, kind in example.ids.items():
            value = self.resolve_id(name, kind, example.junk_id, fresh, assistant)
            path = path.replace("{" + name + "}", urllib.parse.quote(value, safe=""))
        headers = {"content-type": "application/json"}
        if example.last_event_id is not None:
            # h11 (the client) refuses surrounding whitespace in a header value
            headers["last-event-id"] = example.last_event_id.strip()
        content = None if example.method in ("GET", "HEAD") else self.body_bytes(example)
        label = f"{example.method} {path} {example.query!r} {(content or b'')[:80]!r}"
        self.requests += 1
        try:
            with self.http.stream(example.method, path, params=example.query, content=content,
                                  headers=headers) as r:
                # a 2xx stream (SSE, /wait) is only opened: its status is the answer
                if r.status_code >= 500:
                    self.failures.append(f"{label} -> {r.status_code} {r.read()[:200]!r}")
                elif r.status_code >= 400 and example.method != "HEAD":
                    self.check_error_body(label, r)
        except httpx.HTTPError as exc:
            self.failures.append(f"{label} -> {type(exc).__name__}: {exc}")

    def check_error_body(self, label: str, r: httpx.Response) -> None:
        raw = r.read()
        try:
            body = json.loads(raw)
            ok = (r.headers.get("content-type", "").startswith("application/json")
                  and isinstance(body, dict) and set(body) == {"detail"}
                  and isinstance(body["detail"], str))
        except ValueError:
            ok = False
        if not ok:
            self.failures.append(f"{label} -> {r.status_code} {raw[:200]!r}")


# ---- checks after the fuzzing ---------------------------------------------------------------

# a log record starts with the logging format's timestamp or with uvicorn's "LEVEL:    "
_RECORD = re.compile(r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ |[A-Z]+: {1,4})", re.M)
_RUN_FAILED = re.compile(r"^\S+ \S+ ERROR runtime\.worker: run [0-9a-f-]+ failed")


def unexpected_tracebacks(log: str) -> list[str]:
    """Log records holding a traceback, except a run failing on its input (a graph error is
    the run's outcome, logged with its traceback for the operator, not a gateway fault)."""
    starts = [m.start() for m in _RECORD.finditer(log)] + [len(log)]
    records = [log[a:b] for a, b in zip(starts, starts[1:], strict=False)]
    return [r[:2000] for r in records if "Traceback" in r and not _RUN_FAILED.match(r)]


def all_threads(http: httpx.Client) -> list[str]:
    ids: list[str] = []
    while True:
        page = http.post("/threads/search", json={"limit": 1000, "offset": len(ids)})
        assert page.status_code == 200, page.text
        ids += [t["thread_id"] for t in page.json()]
        if len(page.json()) < 1000:
            return ids


def wait_until_no_active_run(http: httpx.Client, deadline_s: float) -> list[str]:
    """Poll until no run of any thread is pending or running; the active ones at the end."""
    end = time.monotonic() + deadline_s
    while True:
        active = []
        for thread_id in all_threads(http):
            listed = http.get(f"/threads/{thread_id}/runs", params={"limit": 1000})
            assert listed.status_code == 200, listed.text
            active += [f"{thread_id}/{r['run_id']} {r['status']}" for r in listed.json()
                       if r["status"] in ("pending", "running")]
        if not active or time.monotonic() > end:
            return active
        time.sleep(0.2)


@pytest.mark.timeout(240)
def test_fuzz_every_endpoint(make_gateway: Callable[..., GatewayProcess]) -> None:
    server = make_gateway().start()
    fuzzer = Fuzzer(server)
    started = time.monotonic()
    for path, method in ENDPOINTS:

        @settings(max_examples=PER_ENDPOINT, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate],  # failures collected, not shrunk
                  suppress_health_check=list(HealthCheck))
        @given(examples(path, method))
        def fuzz(example: Example) -> None:
            fuzzer.send(example)

        fuzz()
    elapsed = time.monotonic() - started
    assert fuzzer.requests >= len(ENDPOINTS) * PER_ENDPOINT // 2, fuzzer.requests
    assert not fuzzer.failures, f"{len(fuzzer.failures)} bad answers:\n" + "\n".join(
        fuzzer.failures[:40])
    with httpx.Client(base_url=server.url, timeout=15) as http:
        active = wait_until_no_active_run(http, deadline_s=60)
        assert not active, f"runs left active: {active[:20]}"
        bad_states = []
        for thread_id in all_threads(http):
            state = http.get(f"/threads/{thread_id}/state")
            if state.status_code != 200:
                bad_states.append(f"{thread_id}: {state.status_code} {state.text[:200]}")
        assert not bad_states, "\n".join(bad_states[:20])
        # every PATCH of the shared stored assistant wrote a version or nothing at all
        current = http.get(f"/assistants/{fuzzer.assistant_id}")
        assert current.status_code == 200, current.text
        numbers = [v["version"] for v in http.post(
            f"/assistants/{fuzzer.assistant_id}/versions", json={"limit": 1000}).json()]
        assert numbers == list(range(len(numbers), 0, -1)), numbers
        assert current.json()["version"] in numbers
        assert http.get("/ok").status_code == 200
    tracebacks = unexpected_tracebacks(server.log())
    assert not tracebacks, "\n\n".join(tracebacks[:5])
    assert elapsed < 120, f"the fuzzing took {elapsed:.0f} s"
