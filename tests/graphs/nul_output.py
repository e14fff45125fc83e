"""Test graph ``nul_output``: answers with a text holding U+0000, which JSON and SQLite keep
but PostgreSQL's jsonb refuses (the run must still end, with ``error``, on PostgreSQL)."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph


def answer(state: MessagesState) -> dict[str, Any]:
    return {"messages": [AIMessage(content="nul:\x00:end", id="ai-nul")]}


builder = StateGraph(MessagesState)
builder.add_node("answer", answer)
builder.add_edge(START, "answer")
builder.add_edge("answer", END)

graph = builder.compile(name="nul_output")
