"""``trivial``: two nodes on a small TypedDict state (``count -> label``).

Input ``{"n": 1}``; output ``{"n": 2, "label": "n=2"}``. The cheapest graph that still takes
two supersteps and writes checkpoints, so it measures per-run overhead. The nodes are async:
sync nodes would add a thread-pool hop per node (LangGraph runs them in an executor), the same
for every server and the limit, which only dilutes the comparison.
"""

from __future__ import annotations

from typing import TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    n: int
    label: str


async def count(state: State) -> State:
    return {"n": state.get("n", 0) + 1}


async def label(state: State) -> State:
    return {"label": f"n={state.get('n', 0)}"}


builder = StateGraph(State)
builder.add_node("count", count)
builder.add_node("label", label)
builder.add_edge(START, "count")
builder.add_edge("count", "label")
builder.add_edge("label", END)

graph = builder.compile(name="trivial")
