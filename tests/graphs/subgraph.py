"""Test graph ``subgraph``: parent ``child -> after`` where ``child`` is a subgraph.

The compiled child graph (node ``inner``) is added directly as a node. ``inner``
emits the custom event ``{"from": "child"}`` and appends
``AIMessage("from child")``; the parent's ``after`` node appends
``AIMessage("from parent")``. Streaming with ``subgraphs=True`` yields the
child's events under the namespace ``("child:<task id>",)``.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, MessagesState, StateGraph


def inner(state: MessagesState) -> dict[str, Any]:
    get_stream_writer()({"from": "child"})
    return {"messages": [AIMessage(content="from child")]}


def after(state: MessagesState) -> dict[str, Any]:
    return {"messages": [AIMessage(content="from parent")]}


child_builder = StateGraph(MessagesState)
child_builder.add_node("inner", inner)
child_builder.add_edge(START, "inner")
child_builder.add_edge("inner", END)
child = child_builder.compile(name="child")

builder = StateGraph(MessagesState)
builder.add_node("child", child)
builder.add_node("after", after)
builder.add_edge(START, "child")
builder.add_edge("child", "after")
builder.add_edge("after", END)

graph = builder.compile(name="subgraph")
