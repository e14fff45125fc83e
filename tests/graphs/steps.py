"""Test graph ``steps``: ``first -> second -> third``, three slow nodes for crash tests.

Each node (async) sleeps ``delay`` seconds, read from ``config["configurable"]["delay"]``
(default 0), then appends ``AIMessage("<node>: <last human content>")``. With durability
``async`` (the default) a checkpoint is written after each node, so a SIGKILL can be placed
before the first checkpoint (``durability="exit"``), mid-run (``next == ["second"]``) or while
the last node runs (``next == ["third"]``); the thread's messages then show exactly which node
outputs were kept and whether any was applied twice.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, MessagesState, StateGraph

NODES = ("first", "second", "third")


def last_human_text(state: MessagesState) -> str:
    for message in reversed(state["messages"]):
        if isinstance(message, HumanMessage):
            return str(message.content)
    return ""


def make_node(name: str) -> Any:
    async def node(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        delay = (config.get("configurable") or {}).get("delay")
        if delay:
            await asyncio.sleep(float(delay))
        text = f"{name}: {last_human_text(state)}"
        return {"messages": [AIMessage(content=text, id=f"{name}-{uuid.uuid4()}")]}

    node.__name__ = name
    return node


builder = StateGraph(MessagesState)
previous = START
for node_name in NODES:
    builder.add_node(node_name, make_node(node_name))
    builder.add_edge(previous, node_name)
    previous = node_name
builder.add_edge(previous, END)

graph = builder.compile(name="steps")
