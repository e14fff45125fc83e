"""Test graph ``fail``: its only node raises ``ValueError``.

The error message is ``"deliberate failure: <last human content>"``.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph


def boom(state: MessagesState) -> dict[str, Any]:
    text = next(
        (
            str(m.content)
            for m in reversed(state["messages"])
            if isinstance(m, HumanMessage)
        ),
        "",
    )
    raise ValueError("deliberate failure: " + text)


builder = StateGraph(MessagesState)
builder.add_node("boom", boom)
builder.add_edge(START, "boom")
builder.add_edge("boom", END)

graph = builder.compile(name="fail")
