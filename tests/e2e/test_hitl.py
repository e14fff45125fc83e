"""End-to-end: human in the loop — ``interrupt()``, breakpoints, resume and ``Command``.

The ``approval_agent`` example (a calculator call that needs approval, asked in the standard
HITL request shape and answered with approve / edit / reject decisions) and the ``hitl`` test
graph (``draft -> ask -> finish``, ``ask`` interrupts with ``{"question", "draft"}``), over real
HTTP with the official Python SDK and raw httpx, against protocol.md sections 2, 4.1, 6 and 8:
an interrupted run is ``success`` and its thread ``interrupted``; the interrupt shows in the
``/wait`` body, in ``values``/``updates`` events, in ``thread.interrupts`` and in
``state.tasks[].interrupts``; a resume needs a thread, and (our gateway) an interrupted one.
"""

from __future__ import annotations

import re
from typing import Any

import anyio
import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import BadRequestError

pytestmark = pytest.mark.anyio

CANCELLED = "Cancelled: the calculator was not run."
REJECTED = "Rejected by the user."
STATELESS_RESUME = "You must provide a thread_id when resuming."


def human(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def contents(values: dict[str, Any] | None) -> list[str]:
    return [m["content"] for m in (values or {}).get("messages", [])]


async def new_thread(client: LangGraphClient) -> str:
    return str((await client.threads.create())["thread_id"])


REQUEST_6x7 = {
    "action_requests": [{"name": "calculator", "args": {"expression": "6*7"},
                         "description": 'Run calculator with {"expression": "6*7"}?'}],
    "review_configs": [{"action_name": "calculator",
                        "allowed_decisions": ["approve", "edit", "reject"]}],
}


def assert_approval_interrupt(interrupts: list[dict[str, Any]]) -> dict[str, Any]:
    """One approval interrupt for ``calculator(6*7)`` in the standard HITL request shape
    (``action_requests`` + ``review_configs``, what Agent Chat UI renders with buttons)."""
    assert len(interrupts) == 1, interrupts
    (intr,) = interrupts
    assert re.fullmatch(r"[0-9a-f]{32}", intr["id"]), intr
    assert intr["value"] == REQUEST_6x7
    return intr


async def ask_approval(client: LangGraphClient, thread_id: str) -> dict[str, Any]:
    """Run approval_agent until it asks; checks every place the interrupt shows up."""
    result = await client.runs.wait(thread_id, "approval_agent", input=human("what is 6*7"))
    assert isinstance(result, dict)
    intr = assert_approval_interrupt(result["__interrupt__"])
    assert intr.get("response_schema", None) is None
    messages = result["messages"]
    assert [m["type"] for m in messages] == ["human", "ai"]
    assert messages[-1]["tool_calls"][0]["args"] == {"expression": "6*7"}

    thread = await client.threads.get(thread_id)
    assert thread["status"] == "interrupted"
    state = await client.threads.get_state(thread_id)
    assert state["next"] == ["approve"]
    (task,) = state["tasks"]
    assert task["name"] == "approve"
    plain = {"id": intr["id"], "value": intr["value"]}
    assert task["interrupts"] == [plain]
    assert state["interrupts"] == [plain]
    assert thread["interrupts"] == {task["id"]: [plain]}
    assert "__interrupt__" not in thread["values"]
    assert thread["values"]["messages"] == messages

    (run,) = await client.runs.list(thread_id)
    assert run["status"] == "success"  # stopping at interrupt() is a success
    return intr


# ---- approval_agent ------------------------------------------------------------------------


def asked_for(values: dict[str, Any]) -> dict[str, Any]:
    """The args of the one action request of ``values``'s one interrupt."""
    (intr,) = values["__interrupt__"]
    (action,) = intr["value"]["action_requests"]
    return dict(action["args"])


def edit(expression: str) -> dict[str, Any]:
    return {"type": "edit",
            "edited_action": {"name": "calculator", "args": {"expression": expression}}}


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("resume", "tool", "answer"),
    [({"decisions": [{"type": "approve"}]}, "42", "The result is 42."),
     ({"decisions": [edit("6*8")]}, "48", "The result is 48."),
     ({"decisions": [{"type": "reject", "message": "Not now, thanks."}]},
      "Not now, thanks.", CANCELLED),
     ({"decisions": [{"type": "reject"}]}, REJECTED, CANCELLED),
     # the old simple answers still work
     (True, "42", "The result is 42."), ({"approved": True}, "42", "The result is 42."),
     (False, REJECTED, CANCELLED), ("no", REJECTED, CANCELLED)],
)
async def test_approval_agent_resume(
    gateway_url: str, resume: Any, tool: str, answer: str
) -> None:
    """approve runs the proposed call, edit the edited one (the AI message's tool call shows
    the edit), reject closes the call with an error ToolMessage carrying the message; in every
    case the history stays valid: a normal run on the same thread afterwards works."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    await ask_approval(client, thread_id)

    result = await client.runs.wait(thread_id, "approval_agent", command={"resume": resume})
    assert isinstance(result, dict)
    assert "__interrupt__" not in result
    messages = result["messages"]
    assert [m["type"] for m in messages] == ["human", "ai", "tool", "ai"]
    assert messages[-1]["content"] == answer
    (call,) = messages[1]["tool_calls"]
    assert call["args"] == {"expression": "6*8" if tool == "48" else "6*7"}
    tool_msg = messages[2]
    assert tool_msg["tool_call_id"] == call["id"]
    assert tool_msg["content"] == tool
    assert tool_msg["status"] == ("error" if answer == CANCELLED else "success")

    thread = await client.threads.get(thread_id)
    assert thread["status"] == "idle"
    assert thread["interrupts"] == {}
    assert thread["values"] == result
    state = await client.threads.get_state(thread_id)
    assert state["next"] == [] and state["tasks"] == [] and state["interrupts"] == []
    runs = await client.runs.list(thread_id)
    assert [r["status"] for r in runs] == ["success", "success"]
    assert runs[0]["kwargs"]["command"] == {"resume": resume}
    assert runs[0]["kwargs"]["input"] is None

    after = await client.runs.wait(thread_id, "approval_agent", input=human("what is 2+3"))
    assert isinstance(after, dict)
    assert asked_for(after) == {"expression": "2+3"}
    done = await client.runs.wait(thread_id, "approval_agent",
                                  command={"resume": {"decisions": [{"type": "approve"}]}})
    assert isinstance(done, dict)
    assert [m["type"] for m in done["messages"]] == ["human", "ai", "tool", "ai"] * 2
    assert done["messages"][-1]["content"] == "The result is 5."
    assert (await client.threads.get(thread_id))["status"] == "idle"


@pytest.mark.timeout(30)
async def test_approval_agent_asks_again_after_an_answer_it_cannot_apply(
    gateway_url: str,
) -> None:
    """A standard-shaped answer that cannot be applied (here: an edit with args the tool
    refuses) does not fail the run: the thread stays interrupted with the same request, its
    description saying what was wrong, and a good answer then finishes it."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    await ask_approval(client, thread_id)
    bad = {"decisions": [{"type": "edit",
                          "edited_action": {"name": "calculator", "args": {"expr": "1"}}}]}
    again = await client.runs.wait(thread_id, "approval_agent", command={"resume": bad})
    assert isinstance(again, dict)
    (intr,) = again["__interrupt__"]
    (action,) = intr["value"]["action_requests"]
    assert action["description"].startswith("Not applied: The edited args do not fit"), action
    assert action["args"] == {"expression": "6*7"}
    assert (await client.threads.get(thread_id))["status"] == "interrupted"
    assert (await client.threads.get_state(thread_id))["interrupts"] == [
        {"id": intr["id"], "value": intr["value"]}]
    done = await client.runs.wait(thread_id, "approval_agent",
                                  command={"resume": {"decisions": [edit("7*7")]}})
    assert isinstance(done, dict)
    assert done["messages"][-1]["content"] == "The result is 49."
    assert [r["status"] for r in await client.runs.list(thread_id)] == ["success"] * 3


@pytest.mark.timeout(30)
async def test_approval_agent_interrupt_in_stream_events(gateway_url: str) -> None:
    """protocol.md 4.1/8: ``updates`` emits ``{"__interrupt__": [...]}``; the last ``values``
    event carries it too; a streamed resume ends with the answer."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    events = [(p.event, p.data) async for p in client.runs.stream(
        thread_id, "approval_agent", input=human("what is 6*7"),
        stream_mode=["values", "updates"])]
    names = [e[0] for e in events]
    assert names[0] == "metadata"
    assert "error" not in names
    updates = [d for n, d in events if n == "updates"]
    assert list(updates[0]) == ["agent"]
    assert list(updates[-1]) == ["__interrupt__"]
    intr = assert_approval_interrupt(updates[-1]["__interrupt__"])
    assert events[-1][0] == "values"
    assert assert_approval_interrupt(events[-1][1]["__interrupt__"])["id"] == intr["id"]
    assert [m["type"] for m in events[-1][1]["messages"]] == ["human", "ai"]
    assert (await client.threads.get(thread_id))["status"] == "interrupted"

    resumed = [(p.event, p.data) async for p in client.runs.stream(
        thread_id, "approval_agent", command={"resume": {"decisions": [{"type": "approve"}]}},
        stream_mode="updates")]
    nodes = [next(iter(d)) for n, d in resumed if n == "updates"]
    assert nodes == ["approve", "tools", "agent"]
    assert resumed[-1][1]["agent"]["messages"][-1]["content"] == "The result is 42."
    assert all("__interrupt__" not in d for n, d in resumed if n == "updates")
    thread = await client.threads.get(thread_id)
    assert thread["status"] == "idle"
    assert contents(thread["values"])[-1] == "The result is 42."


@pytest.mark.timeout(30)
async def test_approval_agent_raw_wait_body(gateway_url: str) -> None:
    """protocol.md 6: the ``/wait`` body of an interrupted run is the state plus
    ``__interrupt__`` with ``value``, ``id`` and ``response_schema``."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        res = await http.post(f"/threads/{thread_id}/runs/wait", json={
            "assistant_id": "approval_agent", "input": human("what is 6*7")})
    assert res.status_code == 200
    body = res.json()
    assert list(body) == ["messages", "__interrupt__"]
    (intr,) = body["__interrupt__"]
    assert set(intr) == {"value", "id", "response_schema"}
    assert intr["response_schema"] is None
    assert_approval_interrupt([intr])


# ---- hitl: breakpoints and commands ---------------------------------------------------------


@pytest.mark.timeout(30)
async def test_interrupt_after_breakpoint_then_continue(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    paused = await client.runs.wait(thread_id, "hitl", input=human("plan"),
                                    interrupt_after=["draft"])
    assert isinstance(paused, dict)
    assert "__interrupt__" not in paused  # a static breakpoint is no interrupt() value
    assert paused["draft"] == "plan"
    assert contents(paused) == ["plan"]
    thread = await client.threads.get(thread_id)
    assert thread["status"] == "interrupted"
    assert thread["interrupts"] == {}
    state = await client.threads.get_state(thread_id)
    assert state["next"] == ["ask"]
    assert [t["interrupts"] for t in state["tasks"]] == [[]]
    (run,) = await client.runs.list(thread_id)
    assert run["status"] == "success"
    assert run["kwargs"]["interrupt_after"] == ["draft"]

    asked = await client.runs.wait(thread_id, "hitl", input=None)
    assert isinstance(asked, dict)
    (intr,) = asked["__interrupt__"]
    assert intr["value"] == {"question": "approve?", "draft": "plan"}
    assert (await client.threads.get_state(thread_id))["next"] == ["ask"]
    thread = await client.threads.get(thread_id)
    assert thread["status"] == "interrupted"
    assert list(thread["interrupts"].values()) == [[{"id": intr["id"], "value": intr["value"]}]]

    done = await client.runs.wait(thread_id, "hitl", command={"resume": "yes"})
    assert isinstance(done, dict)
    assert contents(done) == ["plan", "approved: yes"]
    assert (await client.threads.get(thread_id))["status"] == "idle"
    assert [r["status"] for r in await client.runs.list(thread_id)] == ["success"] * 3


@pytest.mark.timeout(30)
async def test_command_update_and_goto_on_a_finished_thread(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    await client.runs.wait(thread_id, "hitl", input=human("x"))
    await client.runs.wait(thread_id, "hitl", command={"resume": "yes"})
    assert (await client.threads.get(thread_id))["status"] == "idle"

    result = await client.runs.wait(thread_id, "hitl",
                                    command={"update": {"answer": "forced"}, "goto": "finish"})
    assert isinstance(result, dict)
    assert "__interrupt__" not in result
    assert result["answer"] == "forced"
    assert contents(result) == ["x", "approved: yes", "approved: forced"]
    thread = await client.threads.get(thread_id)
    assert thread["status"] == "idle"
    assert thread["values"] == result
    runs = await client.runs.list(thread_id)
    assert runs[0]["kwargs"]["command"] == {"update": {"answer": "forced"}, "goto": "finish"}


@pytest.mark.timeout(30)
async def test_command_update_and_goto_on_an_interrupted_thread(gateway_url: str) -> None:
    """``goto`` does not answer the pending ``interrupt()``: the update is applied, ``ask``
    (still pending) asks again and the thread stays ``interrupted`` — as LangGraph does it in
    process. (The body of ``/wait`` is LangGraph's last ``values`` chunk, which in this corner
    case includes ``finish``'s pending write; it is not asserted here.)"""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    await client.runs.wait(thread_id, "hitl", input=human("x"))

    result = await client.runs.wait(thread_id, "hitl",
                                    command={"update": {"answer": "forced"}, "goto": "finish"})
    assert isinstance(result, dict)
    assert result["answer"] == "forced"
    thread = await client.threads.get(thread_id)
    assert thread["status"] == "interrupted"
    assert thread["values"]["answer"] == "forced"
    state = await client.threads.get_state(thread_id)
    assert state["next"] == ["ask"]
    (task,) = state["tasks"]
    (intr,) = task["interrupts"]
    assert intr["value"] == {"question": "approve?", "draft": "x"}
    assert thread["interrupts"] == {task["id"]: [intr]}
    assert [r["status"] for r in await client.runs.list(thread_id)] == ["success", "success"]


# ---- resume that has nothing to resume ------------------------------------------------------


async def assert_resume_refused(
    http: httpx.AsyncClient, client: LangGraphClient, thread_id: str, graph: str
) -> None:
    """Every create endpoint answers 400 with a detail, and nothing changes."""
    thread_before = await client.threads.get(thread_id)
    runs_before = await client.runs.list(thread_id)
    history_before = await client.threads.get_history(thread_id, limit=100)
    body = {"assistant_id": graph, "command": {"resume": "yes"}}
    for suffix in ("", "/wait", "/stream"):
        res = await http.post(f"/threads/{thread_id}/runs{suffix}", json=body)
        assert res.status_code == 400, (suffix, res.status_code, res.text)
        assert res.headers["content-type"].startswith("application/json"), suffix
        detail = res.json()["detail"]
        assert isinstance(detail, str) and "resume" in detail.lower(), detail
    with pytest.raises(BadRequestError):
        await client.runs.create(thread_id, graph, command={"resume": "yes"})
    assert await client.runs.list(thread_id) == runs_before
    assert await client.threads.get(thread_id) == thread_before
    assert await client.threads.get_history(thread_id, limit=100) == history_before


@pytest.mark.timeout(30)
async def test_resume_on_a_thread_that_is_not_interrupted_is_400(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        fresh = await new_thread(client)
        await assert_resume_refused(http, client, fresh, "hitl")

        after_echo = await new_thread(client)
        await client.runs.wait(after_echo, "echo", input=human("done"))
        assert (await client.threads.get(after_echo))["status"] == "idle"
        await assert_resume_refused(http, client, after_echo, "echo")

        after_hitl = await new_thread(client)
        await client.runs.wait(after_hitl, "hitl", input=human("y"))
        await client.runs.wait(after_hitl, "hitl", command={"resume": "ok"})
        assert (await client.threads.get(after_hitl))["status"] == "idle"
        await assert_resume_refused(http, client, after_hitl, "hitl")

        # the same thread is still usable normally afterwards
        again = await client.runs.wait(after_hitl, "hitl", input=human("z"))
        assert isinstance(again, dict)
        assert again["__interrupt__"][0]["value"] == {"question": "approve?", "draft": "z"}


@pytest.mark.timeout(30)
async def test_resume_of_a_stateless_run_is_400(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as http:
        for suffix in ("", "/wait", "/stream"):
            res = await http.post(f"/runs{suffix}", json={
                "assistant_id": "hitl", "command": {"resume": "yes"}})
            assert res.status_code == 400, (suffix, res.status_code, res.text)
            assert res.json() == {"detail": STATELESS_RESUME}
            assert "content-location" not in res.headers  # no run was admitted
    with pytest.raises(BadRequestError) as info:
        await client.runs.create(None, "hitl", command={"resume": "yes"})
    assert info.value.response.json() == {"detail": STATELESS_RESUME}
    with anyio.fail_after(5), pytest.raises(httpx.HTTPStatusError) as raised:
        await client.runs.wait(None, "hitl", command={"resume": "yes"})
    assert raised.value.response.status_code == 400


@pytest.mark.timeout(30)
@pytest.mark.parametrize("stream_subgraphs", [False, True])
async def test_interrupt_inside_a_subgraph_surfaces_at_the_root(
    gateway_url: str, stream_subgraphs: bool
) -> None:
    """With or without ``stream_subgraphs``, an ``interrupt()`` in a subgraph gives the root
    ``updates`` ``{"__interrupt__"}`` and a final ``values`` with ``__interrupt__``; the thread
    is ``interrupted`` and a resume finishes the run through the parent."""
    client = get_client(url=gateway_url)
    thread_id = await new_thread(client)
    events = [(p.event, p.data) async for p in client.runs.stream(
        thread_id, "subgraph_hitl", input=human("start"), stream_mode=["values", "updates"],
        stream_subgraphs=stream_subgraphs)]
    root = [(name, data) for name, data in events if "|" not in name]
    assert any(name == "updates" and "__interrupt__" in data for name, data in root), root
    name, last = root[-1]
    assert name == "values" and last["__interrupt__"][0]["value"] == {"question": "go on?"}
    assert any("|" in name for name, _ in events) == stream_subgraphs
    assert (await client.threads.get(thread_id))["status"] == "interrupted"
    out = await client.runs.wait(thread_id, "subgraph_hitl", command={"resume": "yes"})
    assert contents(out)[-2:] == ["child got yes", "parent done"]
    assert (await client.threads.get(thread_id))["status"] == "idle"
