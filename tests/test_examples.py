"""In-process checks of the example graphs and the deterministic test graphs."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel
from langgraph.types import Command

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # make `examples` and `tests.graphs` importable
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def load(name: str) -> ModuleType:
    return importlib.import_module(name)


def with_saver(graph: Pregel) -> Pregel:
    # The modules export graphs compiled without a checkpointer. `Pregel.copy`
    # re-creates the compiled graph with updated attributes, so this attaches a
    # checkpointer without rebuilding (and without mutating the shared module
    # object). Note `graph.with_config(...)` only merges config; it does NOT
    # change `graph.checkpointer`.
    return graph.copy(update={"checkpointer": InMemorySaver()})


def thread(tid: str, **configurable: Any) -> dict[str, Any]:
    return {"configurable": {"thread_id": tid, **configurable}}


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def collect(graph: Pregel, inp: Any, config: Any = None, **kw: Any) -> list[Any]:
    return [event async for event in graph.astream(inp, config, **kw)]


# -- calculator ------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("12*(3+4)", "84"),
        ("7/2", "3.5"),
        ("-2**3 + 10 // 3 % 2", "-7"),
        ("2**10", "1024"),
    ],
)
def test_calculator_evaluates(expression: str, expected: str) -> None:
    calculator = load("examples.chat_agent").calculator
    assert calculator.invoke({"expression": expression}) == expected


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "2**99999999",
        "(2**100)**100",
        "1/0",
        "a+1",
        "[1]*3",
        "1j",
        "1;2",
    ],
)
def test_calculator_rejects(expression: str) -> None:
    calculator = load("examples.chat_agent").calculator
    started = time.monotonic()
    result = calculator.invoke({"expression": expression})
    assert result.startswith("Error: "), result
    assert time.monotonic() - started < 1


# -- chat agent ------------------------------------------------------------


def chunk_groups(events: list[Any]) -> dict[str, list[AIMessageChunk]]:
    groups: dict[str, list[AIMessageChunk]] = {}
    for mode, payload in events:
        if mode == "messages" and isinstance(payload[0], AIMessageChunk):
            assert payload[0].id, "every chunk must carry a message id"
            groups.setdefault(payload[0].id, []).append(payload[0])
    return groups


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_chat_agent_streams_tokens_with_one_id() -> None:
    graph = with_saver(load("examples.chat_agent").graph)
    events = await collect(
        graph, user("hello there"), thread("c1"), stream_mode=["messages"]
    )
    groups = chunk_groups(events)
    assert len(groups) == 1
    (chunks,) = groups.values()
    assert len([c for c in chunks if c.content]) > 3
    assert "".join(str(c.content) for c in chunks) == (
        "You said: hello there. Ask me some arithmetic, like 2+2."
    )
    state = await graph.aget_state(thread("c1"))
    assert state.values["messages"][-1].id == chunks[0].id


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_chat_agent_calls_calculator() -> None:
    graph = with_saver(load("examples.chat_agent").graph)
    events = await collect(
        graph,
        user("what is 12*(3+4)?"),
        thread("c2"),
        stream_mode=["messages", "updates"],
    )
    updates = [payload for mode, payload in events if mode == "updates"]
    assert [next(iter(u)) for u in updates] == ["agent", "tools", "agent"]
    call = updates[0]["agent"]["messages"][-1].tool_calls[0]
    assert call["name"] == "calculator" and call["args"] == {"expression": "12*(3+4)"}
    tool_msg = updates[1]["tools"]["messages"][-1]
    assert isinstance(tool_msg, ToolMessage) and tool_msg.content == "84"
    assert tool_msg.tool_call_id == call["id"]
    final = updates[2]["agent"]["messages"][-1]
    assert "84" in final.content
    answer_chunks = chunk_groups(events)[final.id]
    assert "".join(str(c.content) for c in answer_chunks) == "The result is 84."
    # tool call ids are unique per call
    again = await graph.ainvoke(user("what is 1+1?"), thread("c2"))
    ids = [
        tc["id"]
        for m in again["messages"]
        if isinstance(m, AIMessage)
        for tc in m.tool_calls
    ]
    assert len(ids) == 2 and len(set(ids)) == 2


@pytest.mark.timeout(30)
def test_scripted_model_sync_paths() -> None:
    chat_agent = load("examples.chat_agent")
    model = chat_agent.ScriptedChatModel().bind_tools(chat_agent.TOOLS)
    message = model.invoke([HumanMessage("hi")])
    assert message.content == "You said: hi. Ask me some arithmetic, like 2+2."
    chunks = list(model.stream([HumanMessage("hi")]))
    assert len({c.id for c in chunks}) == 1 and len(chunks) > 3
    assert model.invoke([HumanMessage("2+2")]).tool_calls[0]["args"] == {
        "expression": "2+2"
    }


@pytest.mark.timeout(30)
def test_make_model(monkeypatch: pytest.MonkeyPatch) -> None:
    chat_agent = load("examples.chat_agent")
    monkeypatch.delenv("GATEWAY_CHAT_MODEL", raising=False)
    assert isinstance(chat_agent.make_model(), chat_agent.ScriptedChatModel)
    if importlib.util.find_spec("langchain") is not None:
        pytest.skip("langchain is installed")
    monkeypatch.setenv("GATEWAY_CHAT_MODEL", "openai:gpt-4o-mini")
    with pytest.raises(RuntimeError, match="langchain"):
        chat_agent.make_model()


# -- approval agent --------------------------------------------------------

CANCELLED = "Cancelled: the calculator was not run."
CALC_6x7 = {
    "action_requests": [
        {
            "name": "calculator",
            "args": {"expression": "6*7"},
            "description": 'Run calculator with {"expression": "6*7"}?',
        }
    ],
    "review_configs": [
        {"action_name": "calculator", "allowed_decisions": ["approve", "edit", "reject"]}
    ],
}


def edit(expression: str) -> dict[str, Any]:
    return {"type": "edit",
            "edited_action": {"name": "calculator", "args": {"expression": expression}}}


async def ask(graph: Pregel, cfg: dict[str, Any]) -> str:
    """Run until the approval interrupt; check it is the standard HITL request; return the
    pending tool call's id."""
    result = await graph.ainvoke(user("what is 6*7"), cfg)
    (intr,) = result["__interrupt__"]
    assert intr.value == CALC_6x7
    assert (await graph.aget_state(cfg)).next == ("approve",)
    (call,) = result["messages"][-1].tool_calls
    return str(call["id"])


@pytest.mark.anyio
@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("resume", "tool", "answer"),
    [
        ({"decisions": [{"type": "approve"}]}, "42", "The result is 42."),
        ({"type": "approve"}, "42", "The result is 42."),
        ({"decisions": [edit("6*8")]}, "48", "The result is 48."),
        ({"decisions": [{"type": "reject", "message": "not now"}]}, "not now", CANCELLED),
        ({"decisions": [{"type": "reject"}]}, "Rejected by the user.", CANCELLED),
        (True, "42", "The result is 42."),
        ("yes", "42", "The result is 42."),
        ({"approved": True}, "42", "The result is 42."),
        (False, "Rejected by the user.", CANCELLED),
        ("no", "Rejected by the user.", CANCELLED),
    ],
)
async def test_approval_agent(resume: Any, tool: str, answer: str) -> None:
    graph = with_saver(load("examples.approval_agent").graph)
    cfg = thread("a1")
    call_id = await ask(graph, cfg)

    result = await graph.ainvoke(Command(resume=resume), cfg)
    messages = result["messages"]
    assert [m.type for m in messages] == ["human", "ai", "tool", "ai"]
    assert messages[-1].content == answer
    tool_msg = messages[-2]
    assert isinstance(tool_msg, ToolMessage)
    assert tool_msg.tool_call_id == call_id
    assert tool_msg.content == tool
    assert tool_msg.status == ("error" if answer == CANCELLED else "success")
    # An edit rewrites the AI message's tool call in place: what ran is what the history says.
    (call,) = messages[1].tool_calls
    assert call["id"] == call_id
    assert call["args"] == {"expression": "6*8" if tool == "48" else "6*7"}
    assert (await graph.aget_state(cfg)).next == ()
    # The history is valid: the next turn on the thread works normally.
    again = await graph.ainvoke(user("hello"), cfg)
    assert again["messages"][-1].content == "You said: hello. Ask me some arithmetic, like 2+2."


@pytest.mark.anyio
@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({"decisions": []}, "Expected 1 decision(s), got 0."),
        ({"decisions": [{"type": "accept"}]}, "Unknown decision"),
        ({"decisions": [{"type": "edit"}]}, 'An edit needs "edited_action"'),
        ({"decisions": [{"type": "edit", "edited_action": {"name": "shell", "args": {}}}]},
         "Unknown tool 'shell'"),
        ({"decisions": [{"type": "edit", "edited_action": {"name": "calculator",
                                                           "args": {"expr": "1"}}}]},
         "The edited args do not fit calculator: expression: Field required."),
    ],
)
async def test_approval_agent_asks_again_after_an_answer_it_cannot_apply(
    bad: Any, problem: str
) -> None:
    graph = with_saver(load("examples.approval_agent").graph)
    cfg = thread("a2")
    await ask(graph, cfg)
    result = await graph.ainvoke(Command(resume=bad), cfg)
    (intr,) = result["__interrupt__"]
    (action,) = intr.value["action_requests"]
    assert action["description"].startswith(f"Not applied: {problem}"), action
    assert action["args"] == {"expression": "6*7"}
    assert intr.value["review_configs"] == CALC_6x7["review_configs"]
    assert (await graph.aget_state(cfg)).next == ("approve",)
    result = await graph.ainvoke(Command(resume={"decisions": [edit("2+3")]}), cfg)
    assert result["messages"][-1].content == "The result is 5."


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_approval_agent_mixed_decisions_run_only_the_approved_calls() -> None:
    """Two tool calls in one AI message (as a real model may make): one decision each, in
    order; only the approved/edited ones run, the rejected one gets an error ToolMessage."""
    graph = with_saver(load("examples.approval_agent").graph)
    cfg = thread("a3")
    calls = [
        {"name": "calculator", "args": {"expression": f"{n}*{n}"}, "id": f"call_{n}",
         "type": "tool_call"}
        for n in (2, 3, 4)
    ]
    await graph.aupdate_state(
        cfg, {"messages": [HumanMessage("squares"), AIMessage("", tool_calls=calls)]},
        as_node="agent",
    )
    result = await graph.ainvoke(None, cfg)
    (intr,) = result["__interrupt__"]
    assert [a["args"] for a in intr.value["action_requests"]] == [c["args"] for c in calls]
    assert len(intr.value["review_configs"]) == 3

    result = await graph.ainvoke(Command(resume={"decisions": [
        {"type": "approve"}, {"type": "reject", "message": "skip"}, edit("5*5")]}), cfg)
    messages = result["messages"]
    assert [m.type for m in messages] == ["human", "ai", "tool", "tool", "tool", "ai"]
    assert [c["args"]["expression"] for c in messages[1].tool_calls] == ["2*2", "3*3", "5*5"]
    tools = {m.tool_call_id: (m.content, m.status) for m in messages[2:5]}
    assert tools == {"call_3": ("skip", "error"), "call_2": ("4", "success"),
                     "call_4": ("25", "success")}
    assert messages[-1].content.startswith("The result is")


# -- test graphs -----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_echo_graph() -> None:
    graph = with_saver(load("tests.graphs.echo").graph)
    events = await collect(
        graph, user("hello"), thread("e1"), stream_mode=["custom", "updates"]
    )
    assert events[0] == ("custom", {"progress": "prepare", "step": 1})
    assert ("custom", {"progress": "respond", "step": 2}) in events
    reply = events[-1][1]["respond"]["messages"][0]
    assert reply.content == "echo: hello" and reply.id.startswith("ai-")


@pytest.mark.anyio
@pytest.mark.timeout(30)
@pytest.mark.parametrize("via", ["configurable", "context"])
async def test_echo_delay(via: str) -> None:
    graph = load("tests.graphs.echo").graph
    started = time.monotonic()
    if via == "configurable":
        await graph.ainvoke(user("x"), {"configurable": {"delay": 0.3}})
    else:
        await graph.ainvoke(user("x"), context={"delay": 0.3})
    assert time.monotonic() - started >= 0.3


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_fail_graph() -> None:
    graph = with_saver(load("tests.graphs.fail").graph)
    with pytest.raises(ValueError, match="deliberate failure: boom please"):
        await graph.ainvoke(user("boom please"), thread("f1"))


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_hitl_graph() -> None:
    graph = with_saver(load("tests.graphs.hitl").graph)
    cfg = thread("h1")
    values = await collect(graph, user("ship it"), cfg, stream_mode="values")
    (intr,) = values[-1]["__interrupt__"]
    assert intr.value == {"question": "approve?", "draft": "ship it"}
    updates = await collect(graph, Command(resume="yes"), cfg, stream_mode="updates")
    assert updates[-1]["finish"]["messages"][0].content == "approved: yes"


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_hitl_interrupt_before_finish() -> None:
    graph = with_saver(load("tests.graphs.hitl").graph)
    cfg = thread("h2")
    await graph.ainvoke(user("draft"), cfg, interrupt_before=["finish"])
    updates = await collect(
        graph,
        Command(resume=1),
        cfg,
        stream_mode="updates",
        interrupt_before=["finish"],
    )
    assert updates == [{"ask": {"answer": 1}}, {"__interrupt__": ()}]
    assert (await graph.aget_state(cfg)).next == ("finish",)
    result = await graph.ainvoke(None, cfg)
    assert result["messages"][-1].content == "approved: 1"


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_subgraph_namespaces() -> None:
    graph = with_saver(load("tests.graphs.subgraph").graph)
    events = await collect(
        graph,
        user("hi"),
        thread("s1"),
        stream_mode=["custom", "updates"],
        subgraphs=True,
    )
    ns, mode, payload = events[0]
    assert mode == "custom" and payload == {"from": "child"}
    assert len(ns) == 1 and ns[0].startswith("child:")
    assert ((), "updates") in [(e[0], e[1]) for e in events]
    state = await graph.aget_state(thread("s1"))
    assert [m.content for m in state.values["messages"]] == [
        "hi",
        "from child",
        "from parent",
    ]


@pytest.mark.anyio
@pytest.mark.timeout(30)
@pytest.mark.parametrize(("configurable", "n"), [({}, 2000), ({"n": 5}, 5)])
async def test_custom_events(configurable: dict[str, Any], n: int) -> None:
    graph = with_saver(load("tests.graphs.custom_events").graph)
    events = await collect(
        graph, user("go"), thread("x", **configurable), stream_mode=["custom"]
    )
    assert [payload for _, payload in events] == [{"i": i} for i in range(n)]
    state = await graph.aget_state(thread("x"))
    assert state.values["messages"][-1].content == "done"
