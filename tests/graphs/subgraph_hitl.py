"""Test graph ``subgraph_hitl``: parent ``child -> after``; the ``child`` subgraph's node ``ask``
calls ``interrupt({"question": "go on?"})`` and appends ``"child got <answer>"``; ``after``
appends ``"parent done"``. An interrupt raised inside a subgraph must surface at the root."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import interrupt


def ask(state: MessagesState) -> dict[str, Any]:
    answer = interrupt({"question": "go on?"})
    return {"messages": [AIMessage(content=f"child got {answer}")]}


def after(state: MessagesState) -> dict[str, Any]:
    return {"messages": [AIMessage(content="parent done")]}


child_builder = StateGraph(MessagesState)
child_builder.add_node("ask", ask)
child_builder.add_edge(START, "ask")
child_builder.add_edge("ask", END)

builder = StateGraph(MessagesState)
builder.add_node("child", child_builder.compile(name="child"))
builder.add_node("after", after)
builder.add_edge(START, "child")
builder.add_edge("child", "after")
builder.add_edge("after", END)
graph = builder.compile()
