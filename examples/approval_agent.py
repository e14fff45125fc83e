"""Example human-in-the-loop agent: tool calls need a human's approval.

Graph: ``START -> agent -> approve -> (tools -> agent | END)``.

The chat model (see :func:`examples.chat_agent.make_model`; created lazily on
first use) proposes a ``calculator`` call. The ``approve`` node pauses the run with
``interrupt({"question": "Run calculator?", "tool_call": {...}})``. Resume it
with ``Command(resume=...)``:

* ``True``, ``"yes"`` (also "y", "ok", "approve", ...) or ``{"approved": True}``
  runs the tool and the model answers with the result;
* anything else cancels: a ``ToolMessage`` closes the pending tool call (so the
  history stays valid for providers) and the agent answers
  "Cancelled: the calculator was not run."

The module exports ``graph``, compiled without a checkpointer (interrupts need
one; the server attaches its own).
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, interrupt

from examples.chat_agent import TOOLS, bound_model

CANCELLED = "Cancelled: the calculator was not run."
_YES = {"y", "yes", "true", "ok", "okay", "approve", "approved", "run", "1"}


def is_approved(value: Any) -> bool:
    """Interpret a resume value as approval."""
    if isinstance(value, str):
        return value.strip().lower() in _YES
    if isinstance(value, dict):
        return is_approved(value.get("approved", False))
    return bool(value)


async def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
    """Ask the chat model for the next message."""
    return {"messages": [await bound_model().ainvoke(state["messages"])]}


def route_after_agent(state: MessagesState) -> str:
    """Tool calls need approval; plain answers end the run."""
    last = state["messages"][-1]
    return "approve" if isinstance(last, AIMessage) and last.tool_calls else END


def approve(state: MessagesState) -> Command[Literal["tools", "__end__"]]:
    """Pause for a human decision on the pending tool call(s)."""
    last = state["messages"][-1]
    assert isinstance(last, AIMessage)
    call = last.tool_calls[0]
    answer = interrupt(
        {
            "question": "Run calculator?",
            "tool_call": {"id": call["id"], "name": call["name"], "args": call["args"]},
        }
    )
    if is_approved(answer):
        return Command(goto="tools")
    closing: list[BaseMessage] = [
        ToolMessage(
            content="Cancelled by the user.",
            tool_call_id=str(c["id"]),
            name=c["name"],
            status="error",
        )
        for c in last.tool_calls
    ]
    return Command(
        goto=END, update={"messages": [*closing, AIMessage(content=CANCELLED)]}
    )


builder = StateGraph(MessagesState)
builder.add_node("agent", agent)
builder.add_node("approve", approve)
builder.add_node("tools", ToolNode(TOOLS))
builder.add_edge(START, "agent")
builder.add_conditional_edges("agent", route_after_agent, ["approve", END])
builder.add_edge("tools", "agent")

graph = builder.compile(name="approval_agent")
