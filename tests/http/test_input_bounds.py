"""Regressions of the bad-input fuzzing session (issue 10, part 5), over real HTTP: each request
that used to answer 500 (or half-create something) is a 4xx naming the field and changes nothing.

1. JSON nested too deep in any body field, or in ``?stream_mode=`` -> 422.
2. Search filters: integers SQLite cannot bind, too many keys, too many ids -> 422.
3. ``config`` of the wrong shape on every run create; ``?xray=`` not an int or bool -> 422.
4. A thread whose last run failed on input the graph refused still answers its state,
   history and copy (the stored values), and copy creates exactly one thread.
5. UUIDs in bodies are canonicalised: one UUID never names two threads.
(6, the body size limit, is in test_body_limit.py; 7, the fuzzer, in test_fuzz.py.)
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.http.test_bad_input import (
    ECHO,
    RUN_CREATE_PATHS,
    STATELESS_PATHS,
    Unchanged,
    assert_error,
    new_thread,
)

MAX_DEPTH = 64  # gateway.schemas.MAX_JSON_DEPTH


@pytest.fixture
async def http(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        yield client


def nested_list(levels: int) -> str:
    """JSON text of ``levels`` nested arrays around ``1`` (built as text: orjson and json
    refuse to encode more than a few hundred levels)."""
    return "[" * levels + "1" + "]" * levels


def nested_object(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


async def post_raw(http: httpx.AsyncClient, path: str, text: str,
                   method: str = "POST") -> httpx.Response:
    return await http.request(method, path, content=text.encode(),
                              headers={"content-type": "application/json"})


MESSAGES = '{"messages":[{"role":"user","content":"x"}]}'


def deep_bodies(thread_id: str, deep: str) -> list[tuple[str, str, str, str]]:
    """(method, path, body text, field named in the 422) with ``deep`` in one field each."""
    runs = f"/threads/{thread_id}/runs"
    return [
        ("POST", "/threads", f'{{"metadata":{{"x":{deep}}}}}', "metadata"),
        ("PATCH", f"/threads/{thread_id}", f'{{"metadata":{{"x":{deep}}}}}', "metadata"),
        ("POST", runs, f'{{"assistant_id":"echo","input":{{"x":{deep}}}}}', "input"),
        ("POST", runs + "/wait", f'{{"assistant_id":"echo","input":{MESSAGES},'
                                 f'"metadata":{{"x":{deep}}}}}', "metadata"),
        ("POST", runs + "/stream", f'{{"assistant_id":"echo","input":{MESSAGES},'
                                   f'"config":{{"configurable":{{"x":{deep}}}}}}}', "config"),
        ("POST", "/runs/wait", f'{{"assistant_id":"echo","input":{MESSAGES},'
                               f'"context":{{"x":{deep}}}}}', "context"),
        ("POST", runs, f'{{"assistant_id":"hitl","command":{{"resume":{deep}}}}}', "command"),
        ("POST", f"/threads/{thread_id}/state", f'{{"values":{{"x":{deep}}}}}', "values"),
        ("POST", "/threads/search", f'{{"metadata":{{"x":{deep}}}}}', "metadata"),
        ("POST", "/threads/search", f'{{"values":{{"x":{deep}}}}}', "values"),
        ("POST", "/threads/count", f'{{"values":{{"x":{deep}}}}}', "values"),
        ("POST", "/assistants/search", f'{{"metadata":{{"x":{deep}}}}}', "metadata"),
        ("POST", f"/threads/{thread_id}/history", f'{{"metadata":{{"x":{deep}}}}}',
         "metadata"),
    ]


# ---- 1. depth ---------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_json_nested_too_deep_is_422_naming_the_field(http: httpx.AsyncClient) -> None:
    """~1,000 levels in metadata/input/config/context/command/values/filters used to be a 500
    (orjson's 255-level encode limit, RecursionError) or a reset connection."""
    thread_id = await new_thread(http)
    async with Unchanged(http, thread_id):
        # the field's object is one level, so MAX_DEPTH arrays inside it is one too many
        for levels in (MAX_DEPTH, 300, 1000):
            for deep in (nested_list(levels), nested_object(levels)):
                for method, path, body, field in deep_bodies(thread_id, deep):
                    r = await post_raw(http, path, body, method)
                    assert_error(r, 422, f"{field}: JSON nested deeper than {MAX_DEPTH} levels")
        # past orjson's own 1024 levels the body is not JSON we parse at all
        for method, path, body, _ in deep_bodies(thread_id, nested_list(1100)):
            assert_error(await post_raw(http, path, body, method), 422,
                         "Invalid JSON in request body")


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_json_at_the_depth_limit_is_accepted(http: httpx.AsyncClient) -> None:
    deepest = nested_list(MAX_DEPTH - 1)  # inside {"x": ...}: exactly MAX_DEPTH levels
    r = await post_raw(http, "/threads", f'{{"metadata":{{"x":{deepest}}}}}')
    assert r.status_code == 200, r.text
    thread_id = r.json()["thread_id"]
    r = await post_raw(http, f"/threads/{thread_id}/runs/wait",
                       f'{{"assistant_id":"echo","input":{MESSAGES},'
                       f'"metadata":{{"x":{deepest}}},"context":{{"x":{deepest}}}}}')
    assert r.status_code == 200, r.text
    assert "__error__" not in r.json(), r.text
    r = await post_raw(http, "/threads/search", f'{{"metadata":{{"x":{deepest}}}}}')
    assert r.status_code == 200 and [t["thread_id"] for t in r.json()] == [thread_id]
    assert (await http.get(f"/threads/{thread_id}/state")).status_code == 200


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_stream_mode_query_nested_deep_is_422(http: httpx.AsyncClient) -> None:
    """``?stream_mode=[[[[...`` (thousands) was a RecursionError in json.loads."""
    thread_id = await new_thread(http)
    done = await http.post(f"/threads/{thread_id}/runs/wait", json=ECHO)
    run_id = done.headers["content-location"].rsplit("/", 1)[1]
    async with Unchanged(http, thread_id):
        for mode in ("[" * 5000, nested_list(3000), '["values", 1]', "[values", '[["values"]]'):
            for path in (f"/threads/{thread_id}/runs/{run_id}/stream", f"/runs/{run_id}/stream"):
                r = await http.get(path, params={"stream_mode": mode})
                assert_error(r, 422, names="stream_mode")
        r = await http.get(f"/threads/{thread_id}/runs/{run_id}/stream",
                           params={"stream_mode": '["values","updates"]'},
                           headers={"Last-Event-ID": "-1"})
        assert r.status_code == 200


# ---- 2. filters -------------------------------------------------------------------------

FILTER_PATHS = ["/threads/search", "/threads/count"]


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_filter_integer_out_of_sqlite_range_is_422(http: httpx.AsyncClient) -> None:
    """2**63 and up in a thread search/count filter or a history metadata filter was an
    OverflowError binding the SQL parameter."""
    thread_id = await new_thread(http)
    history = f"/threads/{thread_id}/history"
    async with Unchanged(http, thread_id):
        for big in ("9223372036854775808", "18446744073709551615"):
            for path, field in [*((p, f) for p in FILTER_PATHS for f in ("metadata", "values")),
                                (history, "metadata"), ("/assistants/search", "metadata"),
                                ("/assistants/count", "metadata")]:
                r = await post_raw(http, path, f'{{"{field}":{{"n":{big}}}}}')
                assert_error(r, 422, f"{field}.n: integer out of range (at most 64-bit signed)")
        # what does bind: the int64 edges and any finite float (orjson refuses NaN, inf)
        for ok in ("9223372036854775807", "-9223372036854775808", "1e308", "-1e308", "5e-324",
                   "18446744073709551616", "[18446744073709551615]", '{"n":18446744073709551615}'):
            for path, field in [(p, f) for p in FILTER_PATHS for f in ("metadata", "values")]:
                r = await post_raw(http, path, f'{{"{field}":{{"n":{ok}}}}}')
                assert r.status_code == 200, (path, field, ok, r.text)
            r = await post_raw(http, history, f'{{"metadata":{{"n":{ok}}}}}')
            assert r.status_code == 200, (ok, r.text)
        for bad in ("NaN", "Infinity", "1e400", "-1e400"):
            r = await post_raw(http, "/threads/search", f'{{"metadata":{{"n":{bad}}}}}')
            assert_error(r, 422, "Invalid JSON in request body")


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_filter_with_too_many_keys_or_ids_is_422(http: httpx.AsyncClient) -> None:
    """Thousands of filter keys overflowed SQLite's expression tree (depth 1000): a 500."""
    thread_id = await new_thread(http)
    many = {f"k{i}": i for i in range(101)}
    enough = {f"k{i}": i for i in range(100)}
    async with Unchanged(http, thread_id):
        for path in FILTER_PATHS + ["/assistants/search", f"/threads/{thread_id}/history"]:
            fields = ("metadata", "values") if path in FILTER_PATHS else ("metadata",)
            for field in fields:
                for n in (101, 5000):
                    r = await http.post(path, json={field: {f"k{i}": i for i in range(n)}})
                    assert_error(r, 422, f"{field}: at most 100 keys, got {n}")
        assert_error(await http.post("/threads/search", json={"metadata": many,
                                                              "values": enough}),
                     422, "metadata: at most 100 keys, got 101")
        for path in FILTER_PATHS:
            r = await http.post(path, json={"metadata": enough, "values": enough})
            assert r.status_code == 200, r.text
        ids = [str(uuid.uuid4()) for _ in range(1001)]
        assert_error(await http.post("/threads/search", json={"ids": ids}), 422, names="ids")
        r = await http.post("/threads/search", json={"ids": [thread_id, *ids[:999]]})
        assert r.status_code == 200 and [t["thread_id"] for t in r.json()] == [thread_id]
        assert_error(await http.post("/runs/cancel", json={"thread_id": thread_id,
                                                           "run_ids": ids}),
                     422, names="run_ids")


# ---- 3. run config, xray ------------------------------------------------------------------

BAD_CONFIGS: list[tuple[dict[str, Any], str]] = [
    ({"configurable": 5}, "config.configurable"),
    ({"configurable": [1]}, "config.configurable"),
    ({"configurable": "x"}, "config.configurable"),
    ({"metadata": 5}, "config.metadata"),  # this one took the whole runtime down
    ({"tags": 5}, "config.tags"),
    ({"tags": [1]}, "config.tags"),
    ({"recursion_limit": "x"}, "config.recursion_limit"),
    ({"recursion_limit": 0}, "config.recursion_limit"),
    ({"max_concurrency": "x"}, "config.max_concurrency"),
    ({"run_name": 5}, "config.run_name"),
    ({"callbacks": [5]}, "config.callbacks"),
]


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_run_config_of_wrong_shape_is_422(http: httpx.AsyncClient) -> None:
    """``config: {"configurable": 5}`` was a 500 on every run create; ``{"metadata": 5}``
    crashed the run task outside its error handling."""
    thread_id = await new_thread(http)
    async with Unchanged(http, thread_id):
        for path in RUN_CREATE_PATHS + STATELESS_PATHS:
            for config, field in BAD_CONFIGS:
                r = await http.post(path.format(t=thread_id), json={**ECHO, "config": config})
                assert_error(r, 422, names=field)
    # the right shapes still run, and unknown config keys pass through
    good = {"configurable": {"delay": 0}, "tags": ["a"], "metadata": {"m": 1},
            "recursion_limit": 10, "run_name": "n", "max_concurrency": 2, "callbacks": None,
            "custom": {"k": [1]}}
    r = await http.post(f"/threads/{thread_id}/runs/wait", json={**ECHO, "config": good})
    assert r.status_code == 200 and "__error__" not in r.json(), r.text
    runs = (await http.get(f"/threads/{thread_id}/runs")).json()
    config = runs[0]["kwargs"]["config"]
    assert config["tags"] == ["a"] and config["custom"] == {"k": [1]}
    assert config["configurable"]["delay"] == 0
    assert "callbacks" not in config or config["callbacks"] is None
    assert (await http.get("/ok")).status_code == 200


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_graph_xray_must_be_an_int_or_a_bool(http: httpx.AsyncClient) -> None:
    """``?xray=²`` was a 500 (``"²".isdigit()`` is true, ``int("²")`` raises)."""
    for value in ("²", "x", "1.5", "-1", "", "1e3", "99999999999999999999", "٣"):
        r = await http.get("/assistants/subgraph/graph", params={"xray": value})
        assert_error(r, 422, names="xray")
    for value in ("true", "false", "True", "0", "1", "2"):
        r = await http.get("/assistants/subgraph/graph", params={"xray": value})
        assert r.status_code == 200, (value, r.text)
        assert r.json()["nodes"]


# ---- 4. state of a thread whose input the graph refused -------------------------------------

REFUSED_INPUTS: list[Any] = [
    {"messages": 5}, [{}], None, {"messages": [{"role": "nope", "content": "x"}]},
    {"messages": [{}]}, {"messages": [5]}, {"messages": {"a": 1}}, "text", 5,
]


async def failed_thread(http: httpx.AsyncClient, graph_input: Any) -> str:
    thread_id = await new_thread(http)
    r = await http.post(f"/threads/{thread_id}/runs/wait",
                        json={"assistant_id": "echo", "input": graph_input})
    assert r.status_code == 200 and "__error__" in r.json(), r.text
    return thread_id


@pytest.mark.anyio
@pytest.mark.timeout(90)
async def test_state_of_thread_whose_input_the_graph_refused(http: httpx.AsyncClient) -> None:
    """``GET /threads/{id}/state`` was a 500: the head's pending input write is replayed
    through the reducer that refused it. Now: the stored values (what a reloading useStream
    page needs), history, state at each checkpoint, and a new run that works."""
    for graph_input in REFUSED_INPUTS:
        thread_id = await failed_thread(http, graph_input)
        state = await http.get(f"/threads/{thread_id}/state")
        assert state.status_code == 200, (graph_input, state.text)
        assert state.json()["values"] in ({}, {"messages": []}), state.text
        history = await http.post(f"/threads/{thread_id}/history", json={})
        assert history.status_code == 200, history.text
        for snap in history.json():
            for r in (await http.get(f"/threads/{thread_id}/state/{snap['checkpoint_id']}"),
                      await http.post(f"/threads/{thread_id}/state/checkpoint",
                                      json={"checkpoint": {"checkpoint_id":
                                                           snap["checkpoint_id"]}})):
                assert r.status_code == 200, r.text
        assert (await http.get(f"/threads/{thread_id}/history")).status_code == 200
        assert (await http.get(f"/threads/{thread_id}")).json()["status"] == "error"
    # the thread is usable again: a good run, and its state reads normally
    r = await http.post(f"/threads/{thread_id}/runs/wait", json=ECHO)
    assert r.status_code == 200 and "__error__" not in r.json(), r.text
    state = (await http.get(f"/threads/{thread_id}/state")).json()
    assert state["values"]["messages"][-1]["content"] == "echo: x"


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_command_update_the_graph_refused_leaves_state_readable(
    http: httpx.AsyncClient,
) -> None:
    thread_id = await new_thread(http)
    body = {"assistant_id": "hitl", "input": {"messages": [{"role": "user", "content": "x"}]}}
    assert (await http.post(f"/threads/{thread_id}/runs/wait", json=body)).status_code == 200
    r = await http.post(f"/threads/{thread_id}/runs/wait", json={
        "assistant_id": "hitl", "command": {"resume": "ok", "update": {"messages": 5}}})
    assert r.status_code == 200 and "__error__" in r.json(), r.text
    assert (await http.get(f"/threads/{thread_id}/state")).status_code == 200
    assert (await http.post(f"/threads/{thread_id}/history", json={})).status_code == 200
    copy = await http.post(f"/threads/{thread_id}/copy")
    assert copy.status_code == 200, copy.text
    assert (await http.get(f"/threads/{copy.json()['thread_id']}/state")).status_code == 200


@pytest.mark.anyio
@pytest.mark.timeout(90)
async def test_copy_of_thread_whose_input_the_graph_refused(http: httpx.AsyncClient) -> None:
    """``POST /threads/{id}/copy`` answered 500 AND created the copy. Now it answers the
    copy, whose state reads like the source's, and creates exactly one thread."""
    for graph_input in REFUSED_INPUTS:
        thread_id = await failed_thread(http, graph_input)
        before = (await http.post("/threads/count", json={})).json()
        copy = await http.post(f"/threads/{thread_id}/copy")
        assert copy.status_code == 200, (graph_input, copy.text)
        copy_id = copy.json()["thread_id"]
        assert (await http.post("/threads/count", json={})).json() == before + 1
        source_state = (await http.get(f"/threads/{thread_id}/state")).json()
        copy_state = await http.get(f"/threads/{copy_id}/state")
        assert copy_state.status_code == 200, copy_state.text
        assert copy_state.json()["values"] == source_state["values"]
    missing = str(uuid.uuid4())
    async with Unchanged(http, thread_id):
        assert_error(await http.post(f"/threads/{missing}/copy"), 404)


# ---- 5. UUIDs in bodies ---------------------------------------------------------------------


def spellings(value: uuid.UUID) -> list[str]:
    text = str(value)
    return [text.upper(), "{" + text + "}", "urn:uuid:" + text, value.hex, value.hex.upper(),
            text]


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_body_uuids_are_canonical(http: httpx.AsyncClient) -> None:
    """An upper-case / braced / urn / hyphenless ``thread_id`` was stored as typed: one UUID,
    several threads."""
    value = uuid.uuid4()
    canonical = str(value)
    before = (await http.post("/threads/count", json={})).json()
    for spelling in spellings(value):
        r = await http.post("/threads", json={"thread_id": spelling, "if_exists": "do_nothing"})
        assert r.status_code == 200 and r.json()["thread_id"] == canonical, r.text
    assert (await http.post("/threads/count", json={})).json() == before + 1
    r = await http.post("/threads", json={"thread_id": value.hex.upper()})
    assert_error(r, 409, f"Thread with ID {canonical} already exists")
    r = await http.post("/threads/search", json={"ids": spellings(value)})
    assert [t["thread_id"] for t in r.json()] == [canonical]
    # a run created through any spelling lands on the one thread; cancel finds it by any
    r = await http.post(f"/threads/{value.hex}/runs",
                        json={**ECHO, "context": {"delay": 5}})
    assert r.status_code == 200 and r.json()["thread_id"] == canonical, r.text
    run_id = uuid.UUID(r.json()["run_id"])
    r = await http.post("/runs/cancel", json={"thread_id": canonical.upper(),
                                              "run_ids": [run_id.hex.upper()]})
    assert r.status_code == 204, r.text
    thread_id = await new_thread(http)
    async with Unchanged(http, thread_id):
        for bad in ("nope", "", "1234", canonical + "0", "g" * 32):
            assert_error(await http.post("/threads", json={"thread_id": bad}), 422,
                         "thread_id: must be a UUID")
            assert_error(await http.post("/threads/search", json={"ids": [bad]}), 422,
                         "ids.0: must be a UUID")
            assert_error(await http.post("/runs/cancel", json={"thread_id": bad,
                                                               "run_ids": [canonical]}),
                         422, "thread_id: must be a UUID")
