"""Test graph ``hitl``: ``draft -> ask -> finish`` with a dynamic interrupt.

* ``draft`` stores the last human content in ``state["draft"]``;
* ``ask`` calls ``interrupt({"question": "approve?", "draft": <draft>})`` and
  stores the resume value in ``state["answer"]``;
* ``finish`` appends ``AIMessage("approved: <answer>")``.

It is a plain graph, so ``interrupt_before=["finish"]`` etc. work as usual.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import interrupt


class HitlState(MessagesState, total=False):
    draft: str
    answer: Any


def draft(state: HitlState) -> dict[str, Any]:
    humans = [m for m in state["messages"] if isinstance(m, HumanMessage)]
    return {"draft": str(humans[-1].content) if humans else ""}


def ask(state: HitlState) -> dict[str, Any]:
    answer = interrupt({"question": "approve?", "draft": state.get("draft", "")})
    return {"answer": answer}


def finish(state: HitlState) -> dict[str, Any]:
    return {"messages": [AIMessage(content=f"approved: {state.get('answer')}")]}


builder = StateGraph(HitlState)
builder.add_node("draft", draft)
builder.add_node("ask", ask)
builder.add_node("finish", finish)
builder.add_edge(START, "draft")
builder.add_edge("draft", "ask")
builder.add_edge("ask", "finish")
builder.add_edge("finish", END)

graph = builder.compile(name="hitl")
