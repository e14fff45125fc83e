"""End-to-end: streaming runs and joining their streams over real HTTP.

Official Python SDK against a real gateway process (``gateway_url``); raw httpx where bytes and
headers matter. Covers protocol.md sections 4 and 5 plus the section-10 differences (ids on every
event, ``(ms, seq)`` ordering, ``Last-Event-ID`` for every run, repeated ``stream_mode``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import anyio
import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError
from langgraph_sdk.schema import StreamPart

from tests.server import GatewayProcess

pytestmark = pytest.mark.anyio

Event = tuple[str, Any, str | None]  # (event, data, id)


def human(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def parse_id(event_id: str | None) -> tuple[int, int]:
    """``"<ms>-<seq>"`` -> (ms, seq) as integers; fails the test on any other form."""
    assert event_id is not None, "event without id"
    match = re.fullmatch(r"(\d+)-(\d+)", event_id)
    assert match, f"bad event id {event_id!r}"
    return int(match.group(1)), int(match.group(2))


def assert_ids_increasing(events: list[Event]) -> None:
    keys = [parse_id(e[2]) for e in events]
    assert all(a < b for a, b in zip(keys, keys[1:], strict=False)), keys
    assert len(set(keys)) == len(keys)


async def collect(parts: AsyncIterator[StreamPart]) -> list[Event]:
    return [(p.event, p.data, p.id) async for p in parts]


async def poll(
    fetch: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool], timeout_s: float = 10.0
) -> Any:
    """``fetch()`` until ``ok(value)``; fails the test after ``timeout_s``."""
    with anyio.fail_after(timeout_s):
        while True:
            value = await fetch()
            if ok(value):
                return value
            await anyio.sleep(0.02)


async def new_thread(client: LangGraphClient) -> str:
    return str((await client.threads.create())["thread_id"])


def parse_sse(body: bytes) -> list[tuple[str, Any, str | None]]:
    """Frames of a raw CRLF SSE body; comment lines (heartbeats) are skipped."""
    events = []
    for frame in body.split(b"\r\n\r\n"):
        lines = [ln for ln in frame.split(b"\r\n") if ln and not ln.startswith(b":")]
        if not lines:
            continue
        fields: dict[str, str] = {}
        for line in lines:
            name, _, value = line.decode().partition(": ")
            fields[name] = value
        events.append((fields["event"], json.loads(fields["data"]), fields.get("id")))
    return events


# ---- 1. the example chat agent ------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_stream_chat_agent_values_messages_tuple_updates(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    events = await collect(client.runs.stream(
        thread_id, "chat_agent", input=human("what is 12*(3+4)?"),
        stream_mode=["values", "messages-tuple", "updates"]))

    name, data, _ = events[0]
    assert name == "metadata"
    assert set(data) == {"run_id", "attempt"} and data["attempt"] == 1
    run_id = data["run_id"]
    assert_ids_increasing(events)
    assert {e[0] for e in events} == {"metadata", "values", "messages", "updates"}

    messages = [e[1] for e in events if e[0] == "messages"]
    for item in messages:
        assert isinstance(item, list) and len(item) == 2
        chunk, meta = item
        assert isinstance(meta, dict)
        assert meta["langgraph_node"] in ("agent", "tools")
        assert meta["run_id"] == run_id and meta["thread_id"] == thread_id
    tool_msgs = [m for m, _ in messages if m["type"] == "tool"]
    assert [m["content"] for m in tool_msgs] == ["84"]

    # chunks of the final answer: after the tool message, from the agent node
    after_tool = messages[[m for m, _ in messages].index(tool_msgs[0]) + 1:]
    chunks = [m for m, meta in after_tool if meta["langgraph_node"] == "agent"]
    assert len(chunks) >= 2, "the final answer should be streamed token by token"
    assert {c["type"] for c in chunks} == {"AIMessageChunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert "".join(c["content"] for c in chunks) == "The result is 84."
    assert chunks[-1].get("chunk_position") == "last"

    updates = [e[1] for e in events if e[0] == "updates"]
    assert [next(iter(u)) for u in updates] == ["agent", "tools", "agent"]

    last_name, final, _ = events[-1]
    assert last_name == "values"
    assert final["messages"][-1]["content"] == "The result is 84."
    assert final["messages"][-1]["type"] == "ai"
    assert final["messages"][-1]["id"] == chunks[0]["id"]

    run = await client.runs.get(thread_id, run_id)
    assert run["status"] == "success"
    thread = await client.threads.get(thread_id)
    assert thread["status"] == "idle"
    assert thread["values"] == final


# ---- 2. raw SSE framing -------------------------------------------------------------------


FRAME_RE = re.compile(rb"event: ([^\r\n]+)\r\ndata: ([^\r\n]+)\r\nid: (\d+)-(\d+)")


@pytest.mark.timeout(30)
async def test_raw_sse_framing_and_headers(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http, http.stream(
        "POST", f"/threads/{thread_id}/runs/stream",
        json={"assistant_id": "echo", "input": human("frames"),
              "stream_mode": ["values", "custom", "updates"],
              "config": {"configurable": {"delay": 1.5}}},  # > ping_interval_s (1 s)
    ) as res:
        assert res.status_code == 200
        headers = res.headers
        body = b"".join([chunk async for chunk in res.aiter_raw()])

    assert headers["content-type"].split(";")[0].strip() == "text/event-stream"
    m = re.fullmatch(r"/threads/([^/]+)/runs/([^/]+)/stream", headers["location"])
    assert m, headers["location"]
    assert m.group(1) == thread_id
    run_id = m.group(2)
    assert headers["content-location"] == f"/threads/{thread_id}/runs/{run_id}"

    assert body.endswith(b"\r\n\r\n")
    # section 10.3: a heartbeat was sent, as a comment line without a dispatching blank line
    assert b": heartbeat\r\n" in body
    assert b": heartbeat\r\n\r\n" not in body
    assert re.search(rb"(?<!\r)\n", body) is None, "bare LF in the SSE body"
    frames = [f for f in body.split(b"\r\n\r\n") if f]
    names: list[bytes] = []
    payloads: list[Any] = []
    keys: list[tuple[int, int]] = []
    for frame in frames:
        # heartbeats are a comment line with no blank line after it (section 10.3)
        lines = frame.split(b"\r\n")
        while lines and lines[0].startswith(b":"):
            assert lines[0] == b": heartbeat"
            lines.pop(0)
        match = FRAME_RE.fullmatch(b"\r\n".join(lines))
        assert match, f"malformed frame {frame!r}"
        names.append(match.group(1))
        payloads.append(json.loads(match.group(2)))
        keys.append((int(match.group(3)), int(match.group(4))))
    assert names[0] == b"metadata"
    assert payloads[0] == {"run_id": run_id, "attempt": 1}
    assert names[-1] == b"values"
    assert b"end" not in names
    assert names.count(b"custom") == 2 and names.count(b"updates") == 2
    assert all(a < b for a, b in zip(keys, keys[1:], strict=False)), keys
    assert len(set(keys)) == len(keys)


# ---- 3. every stream mode -----------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_stream_values_updates_custom_echo(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    events = await collect(client.runs.stream(
        thread_id, "echo", input=human("hi"), stream_mode=["values", "updates", "custom"]))
    names = [e[0] for e in events]
    assert names == ["metadata", "values", "custom", "updates", "custom", "updates", "values"]
    data = [e[1] for e in events]
    assert data[1]["messages"][0]["content"] == "hi"
    assert data[2] == {"progress": "prepare", "step": 1}
    assert data[3] == {"prepare": None}
    assert data[4] == {"progress": "respond", "step": 2}
    assert list(data[5]) == ["respond"]
    assert data[5]["respond"]["messages"][0]["content"] == "echo: hi"
    assert [m["content"] for m in data[6]["messages"]] == ["hi", "echo: hi"]
    assert_ids_increasing(events)


@pytest.mark.timeout(30)
async def test_stream_default_mode_is_values(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    events = await collect(client.runs.stream(thread_id, "echo", input=human("d")))
    assert [e[0] for e in events] == ["metadata", "values", "values"]


@pytest.mark.timeout(30)
async def test_stream_custom_events_graph_in_order(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    events = await collect(client.runs.stream(
        thread_id, "custom_events", input=human("go"), stream_mode="custom",
        config={"configurable": {"n": 300}}))
    assert events[0][0] == "metadata"
    assert [e[1] for e in events[1:]] == [{"i": i} for i in range(300)]
    assert {e[0] for e in events[1:]} == {"custom"}
    assert_ids_increasing(events)


@pytest.mark.timeout(30)
async def test_stream_legacy_messages_mode(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    events = await collect(client.runs.stream(
        thread_id, "chat_agent", input=human("what is 2+3?"), stream_mode="messages"))
    names = {e[0] for e in events}
    assert names == {"metadata", "messages/metadata", "messages/partial", "messages/complete"}
    partials = [e[1] for e in events if e[0] == "messages/partial"]
    for p in partials:
        assert isinstance(p, list) and len(p) == 1 and p[0]["type"] == "ai"
    final_id = partials[-1][0]["id"]
    final = [p[0]["content"] for p in partials if p[0]["id"] == final_id]
    # accumulated: each partial extends the previous one
    assert all(b.startswith(a) for a, b in zip(final, final[1:], strict=False))
    assert final[-1] == "The result is 5."
    metas = [e[1] for e in events if e[0] == "messages/metadata"]
    assert sum(1 for m in metas if final_id in m) == 1
    assert metas[[i for i, m in enumerate(metas) if final_id in m][0]][final_id]["metadata"][
        "langgraph_node"] == "agent"
    complete = [e[1] for e in events if e[0] == "messages/complete"]
    assert [c[0]["content"] for c in complete] == ["5"]
    assert complete[0][0]["type"] == "tool"


@pytest.mark.timeout(30)
async def test_stream_events_mode(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    events = await collect(client.runs.stream(
        thread_id, "echo", input=human("ev"), stream_mode="events"))
    assert events[0][0] == "metadata"
    body = events[1:]
    assert {e[0] for e in body} == {"events"}
    kinds = [(e[1]["event"], e[1]["name"]) for e in body]
    assert kinds[0] == ("on_chain_start", "echo")
    assert kinds[-1] == ("on_chain_end", "echo")
    assert ("on_chain_start", "prepare") in kinds and ("on_chain_end", "respond") in kinds
    for e in body:
        assert {"event", "name", "run_id", "metadata", "data"} <= set(e[1])
    assert body[-1][1]["data"]["output"]["messages"][-1]["content"] == "echo: ev"


@pytest.mark.timeout(30)
async def test_stream_debug_mode(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    events = await collect(client.runs.stream(
        thread_id, "echo", input=human("dbg"), stream_mode="debug"))
    assert events[0][0] == "metadata"
    body = [e[1] for e in events[1:]]
    assert {e[0] for e in events[1:]} == {"debug"}
    assert {d["type"] for d in body} == {"checkpoint", "task", "task_result"}
    for d in body:
        assert {"step", "timestamp", "type", "payload"} <= set(d)
    tasks = [d["payload"]["name"] for d in body if d["type"] == "task"]
    assert tasks == ["prepare", "respond"]
    checkpoints = [d["payload"] for d in body if d["type"] == "checkpoint"]
    assert [c["metadata"]["step"] for c in checkpoints] == [-1, 0, 1, 2]
    # protocol.md 4.1: the checkpoint payload adds checkpoint / parent_checkpoint
    for c in checkpoints:
        configurable = c["config"]["configurable"]
        assert configurable["thread_id"] == thread_id
        assert c.get("checkpoint") == {"checkpoint_id": configurable["checkpoint_id"],
                                       "thread_id": thread_id, "checkpoint_ns": ""}, c.keys()
        parent = c["parent_config"]
        if parent is None:
            assert c.get("parent_checkpoint", "missing") is None
        else:
            assert c.get("parent_checkpoint") == {
                "checkpoint_id": parent["configurable"]["checkpoint_id"],
                "thread_id": thread_id, "checkpoint_ns": ""}


@pytest.mark.timeout(30)
async def test_stream_tasks_mode(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    events = await collect(client.runs.stream(
        thread_id, "echo", input=human("t"), stream_mode="tasks"))
    assert [e[0] for e in events] == ["metadata"] + ["tasks"] * 4
    start_p, result_p, start_r, result_r = (e[1] for e in events[1:])
    assert start_p["name"] == "prepare" and {"id", "input", "triggers"} <= set(start_p)
    assert result_p["id"] == start_p["id"] and result_p["error"] is None
    assert result_p["result"] == {}
    assert start_r["name"] == "respond"
    assert result_r["result"]["messages"][0]["content"] == "echo: t"
    assert result_r["interrupts"] == []


@pytest.mark.timeout(30)
async def test_stream_checkpoints_mode(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    events = await collect(client.runs.stream(
        thread_id, "echo", input=human("c"), stream_mode="checkpoints"))
    assert events[0][0] == "metadata"
    body = [e[1] for e in events[1:]]
    assert {e[0] for e in events[1:]} == {"checkpoints"}
    assert [c["metadata"]["step"] for c in body] == [-1, 0, 1, 2]
    assert [c["next"] for c in body] == [["__start__"], ["prepare"], ["respond"], []]
    for c in body:
        assert {"config", "parent_config", "values", "metadata", "next", "tasks"} <= set(c)
        assert c["config"]["configurable"]["thread_id"] == thread_id
    assert body[-1]["values"]["messages"][-1]["content"] == "echo: c"


@pytest.mark.timeout(30)
async def test_stream_subgraphs(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    events = await collect(client.runs.stream(
        thread_id, "subgraph", input=human("sub"), stream_mode=["values", "custom", "updates"],
        stream_subgraphs=True))
    names = [e[0] for e in events]
    child = [n for n in names if "|" in n]
    assert child, names
    ns = {n.split("|", 1)[1] for n in child}
    assert len(ns) == 1
    (namespace,) = ns
    assert re.fullmatch(r"child:[0-9a-f-]{36}", namespace), namespace
    assert f"custom|{namespace}" in names
    assert f"values|{namespace}" in names
    assert f"updates|{namespace}" in names
    custom = [e[1] for e in events if e[0] == f"custom|{namespace}"]
    assert custom == [{"from": "child"}]
    # parent events keep plain names
    assert names[0] == "metadata" and names[-1] == "values"
    assert [m["content"] for m in events[-1][1]["messages"]] == [
        "sub", "from child", "from parent"]
    parent_updates = [next(iter(e[1])) for e in events if e[0] == "updates"]
    assert parent_updates == ["child", "after"]

    # without stream_subgraphs: no namespaced events
    thread_id = await new_thread(client)
    events = await collect(client.runs.stream(
        thread_id, "subgraph", input=human("sub"), stream_mode=["values", "custom", "updates"]))
    assert all("|" not in e[0] for e in events)


@pytest.mark.timeout(30)
async def test_stateless_stream_deletes_temporary_thread(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    events = await collect(client.runs.stream(
        None, "echo", input=human("stateless"), stream_mode=["values", "checkpoints"]))
    assert events[0][0] == "metadata"
    values = [e[1] for e in events if e[0] == "values"]
    assert values[-1]["messages"][-1]["content"] == "echo: stateless"
    checkpoints = [e[1] for e in events if e[0] == "checkpoints"]
    tmp_thread = checkpoints[-1]["config"]["configurable"]["thread_id"]
    uuid.UUID(tmp_thread)
    with pytest.raises(NotFoundError):
        await client.threads.get(tmp_thread)


@pytest.mark.timeout(30)
async def test_stateless_stream_headers(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http, http.stream(
        "POST", "/runs/stream", json={"assistant_id": "echo", "input": human("x")},
    ) as res:
        assert res.status_code == 200
        body = b"".join([c async for c in res.aiter_raw()])
        headers = res.headers
    run_id = parse_sse(body)[0][1]["run_id"]
    assert headers["location"] == f"/runs/{run_id}/stream"
    assert headers["content-location"] == f"/runs/{run_id}"


# ---- 4. joining ---------------------------------------------------------------------------

JOIN_MODES = ["values", "custom", "updates"]


async def start_delayed_echo(client: LangGraphClient, text: str, delay: float) -> tuple[str, str]:
    thread_id = await new_thread(client)
    run = await client.runs.create(
        thread_id, "echo", input=human(text), stream_mode=JOIN_MODES,
        config={"configurable": {"delay": delay}})
    return thread_id, str(run["run_id"])


@pytest.mark.timeout(30)
async def test_join_split_between_two_clients_loses_nothing(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id, run_id = await start_delayed_echo(client, "split", 1.0)

    seen_a: list[Event] = []
    async with aclosing(client.runs.join_stream(thread_id, run_id, last_event_id="-1")) as a:
        async for part in a:
            seen_a.append((part.event, part.data, part.id))
            if len(seen_a) == 2:
                break
    assert seen_a[0][0] == "metadata"
    assert (await client.runs.get(thread_id, run_id))["status"] == "running"

    seen_b = await collect(client.runs.join_stream(thread_id, run_id, last_event_id=seen_a[-1][2]))
    assert (await client.runs.get(thread_id, run_id))["status"] == "success"

    full = await collect(client.runs.join_stream(thread_id, run_id, last_event_id="-1"))
    assert [e[0] for e in full] == [
        "metadata", "values", "custom", "updates", "custom", "updates", "values"]
    assert seen_a + seen_b == full
    assert_ids_increasing(full)
    assert full[-1][1]["messages"][-1]["content"] == "echo: split"


@pytest.mark.timeout(30)
async def test_join_running_run_without_last_event_id_replays_from_the_first_event(
    gateway_url: str,
) -> None:
    """A joiner with no ``Last-Event-ID`` has seen nothing: it gets the run from ``metadata``
    on, then the rest live (deliberate difference: the reference sends only later events)."""
    client = get_client(url=gateway_url)
    thread_id, run_id = await start_delayed_echo(client, "late", 1.0)

    # wait until the run sits in prepare's sleep (its first custom event is out)
    async with aclosing(client.runs.join_stream(thread_id, run_id, last_event_id="-1")) as a:
        async for part in a:
            if part.event == "custom":
                break
    late = await collect(client.runs.join_stream(thread_id, run_id))
    full = await collect(client.runs.join_stream(thread_id, run_id, last_event_id="-1"))
    assert late == full
    assert [e[0] for e in late] == ["metadata", "values", "custom", "updates", "custom",
                                    "updates", "values"]


@pytest.mark.timeout(30)
async def test_join_finished_run(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    original = await collect(client.runs.stream(
        thread_id, "echo", input=human("done"), stream_mode=JOIN_MODES))
    run_id = original[0][1]["run_id"]

    replay = await collect(client.runs.join_stream(thread_id, run_id, last_event_id="-1"))
    assert replay == original
    replay0 = await collect(client.runs.join_stream(thread_id, run_id, last_event_id="0"))
    assert replay0 == original
    # resume in the middle: exactly the events after that id
    middle = await collect(client.runs.join_stream(
        thread_id, run_id, last_event_id=original[2][2]))
    assert middle == original[3:]
    # no Last-Event-ID on a finished run: the whole run, and the stream closes
    with anyio.fail_after(5):
        assert await collect(client.runs.join_stream(thread_id, run_id)) == original


@pytest.mark.timeout(30)
async def test_join_unknown_run_gives_one_error_event(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    events = await collect(client.runs.join_stream(thread_id, str(uuid.uuid4())))
    assert [(e[0], e[1]) for e in events] == [
        ("error", {"error": "HTTPException", "message": "404: Run not found"})]


@pytest.mark.timeout(30)
async def test_join_stream_mode_filter_repeated_params(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    original = await collect(client.runs.stream(
        thread_id, "echo", input=human("flt"), stream_mode=JOIN_MODES))
    run_id = original[0][1]["run_id"]

    only = await collect(client.runs.join_stream(
        thread_id, run_id, last_event_id="-1", stream_mode=["custom", "updates"]))
    assert only == [e for e in original if e[0] in ("custom", "updates")]
    assert len(only) == 4

    single = await collect(client.runs.join_stream(
        thread_id, run_id, last_event_id="-1", stream_mode="values"))
    assert single == [e for e in original if e[0] == "values"]


@pytest.mark.timeout(30)
async def test_join_stream_mode_filter_json_array(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    original = await collect(client.runs.stream(
        thread_id, "echo", input=human("js"), stream_mode=JOIN_MODES))
    run_id = original[0][1]["run_id"]

    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        res = await http.get(f"/threads/{thread_id}/runs/{run_id}/stream",
                             params={"stream_mode": '["custom"]'},
                             headers={"Last-Event-ID": "-1"})
        assert res.status_code == 200
        custom = parse_sse(res.content)
        res = await http.get(f"/threads/{thread_id}/runs/{run_id}/stream",
                             params={"stream_mode": '["custom","values"]'},
                             headers={"Last-Event-ID": "-1"})
        both = parse_sse(res.content)
    assert custom == [e for e in original if e[0] == "custom"]
    assert [e[1] for e in custom] == [{"progress": "prepare", "step": 1},
                                      {"progress": "respond", "step": 2}]
    assert both == [e for e in original if e[0] in ("custom", "values")]


def check_gapped(events: list[Event], expected_total: int, exact: bool = True) -> None:
    """``events`` = a gap (or error) event then a contiguous tail of the custom events; the gap
    accounts for the missing events (exactly, or at least when ``exact`` is False)."""
    if events[0][0] == "metadata":
        events = events[1:]
        expected_total -= 1
    assert events[0][0] in ("gap", "error"), events[0]
    rest = events[1:]
    assert rest, "nothing replayed after the gap"
    assert {e[0] for e in rest} == {"custom"}
    first = rest[0][1]["i"]
    assert [e[1] for e in rest] == [{"i": i} for i in range(first, 500)]
    if events[0][0] == "gap":
        gap = events[0][1]
        assert gap["first_id"] == rest[0][2]
        if exact:
            assert gap["dropped"] == expected_total - len(rest)
        else:
            assert gap["dropped"] >= expected_total - len(rest)


@pytest.mark.timeout(30)
async def test_resume_older_than_retained_log_reports_gap(
    make_gateway: Callable[..., GatewayProcess],
) -> None:
    """Section 10.2: a Last-Event-ID older than the bounded log is reported, never silent."""
    server = make_gateway(max_events_per_run=100).start()
    client = get_client(url=server.url)
    thread_id = await new_thread(client)
    live = await collect(client.runs.stream(
        thread_id, "custom_events", input=human("many"), stream_mode="custom",
        config={"configurable": {"n": 500}}))
    # 501 events (metadata + 500 custom); the live reader either kept up or was told it lagged
    if len(live) != 501:
        check_gapped(live, 501)
    assert live[0][0] == "metadata"
    run_id = live[0][1]["run_id"]
    metadata_id = live[0][2]

    replay = await collect(client.runs.join_stream(thread_id, run_id, last_event_id="-1"))
    check_gapped(replay, 501)
    assert replay[0][1].get("requested_id", "-1") == "-1"
    assert 100 <= len(replay) - 1 < 501
    assert replay[1:] == live[-(len(replay) - 1):]

    resumed = await collect(client.runs.join_stream(
        thread_id, run_id, last_event_id=metadata_id))
    # the bridge cannot know where a cursor falls among dropped events: "at least" suffices
    check_gapped(resumed, 500, exact=False)
    assert resumed[1:] == replay[1:]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("stream_subgraphs", [False, True])
async def test_messages_from_a_subgraph_as_the_reference_sends_them(
    gateway_url: str, stream_subgraphs: bool
) -> None:
    """Without ``stream_subgraphs`` the subgraph's answer comes once as a full ``ai`` message of
    the parent's node ``child``; with it, as ``messages|child:<id>`` tokens. The parent's own
    answer is tokens either way (the reference's output, langgraph dev 0.16.7)."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    seen = [(p.event, p.data[1]["langgraph_node"], p.data[0]["content"], p.data[0]["type"])
            async for p in client.runs.stream(
                thread_id, "subgraph_chat", input=human("x"), stream_mode=["messages-tuple"],
                stream_subgraphs=stream_subgraphs)
            if p.event.startswith("messages")]
    tokens = ["a", " ", "b", " ", "c"]
    top = [("messages", "top", t, "AIMessageChunk") for t in tokens]
    if stream_subgraphs:
        child = seen[:5]
        assert all(re.fullmatch(r"messages\|child:[0-9a-f-]{36}", e[0]) for e in child), child
        assert [e[1:] for e in child] == [("talk", t, "AIMessageChunk") for t in tokens]
        assert seen[5:] == top
    else:
        assert seen == [("messages", "child", "a b c", "ai"), *top]
