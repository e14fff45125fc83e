"""``echo``: a chat echo on ``MessagesState``, ``prepare -> respond``.

Each run gets one new user message as input (``{"messages": [{"role": "user", ...}]}``);
``respond`` appends ``AIMessage("echo: <last human content>")``. A thread's state therefore
grows by two messages per run, which is what the long-thread scenario (``bench.longthread``)
measures: the cost of a run as the thread's checkpointed state grows. Async nodes, as in the
trivial graph (no thread-pool hop per node).
"""

from __future__ import annotations

import uuid
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph


def last_human_text(state: MessagesState) -> str:
    for message in reversed(state["messages"]):
        if isinstance(message, HumanMessage):
            return str(message.content)
    return ""


async def prepare(state: MessagesState) -> dict[str, Any]:
    return {}


async def respond(state: MessagesState) -> dict[str, Any]:
    reply = AIMessage(content="echo: " + last_human_text(state), id=f"ai-{uuid.uuid4()}")
    return {"messages": [reply]}


builder = StateGraph(MessagesState)
builder.add_node("prepare", prepare)
builder.add_node("respond", respond)
builder.add_edge(START, "prepare")
builder.add_edge("prepare", "respond")
builder.add_edge("respond", END)

graph = builder.compile(name="echo")
