"""Test graph ``custom_events``: one node emitting many custom stream events.

``emit`` writes ``{"i": i}`` for ``i in range(n)`` with the stream writer, where
``n`` comes from ``config["configurable"]["n"]`` (default 2000), then appends
``AIMessage("done")``. Useful for back-pressure and ordering tests.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, MessagesState, StateGraph

DEFAULT_N = 2000


async def emit(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
    n = int((config.get("configurable") or {}).get("n", DEFAULT_N))
    write = get_stream_writer()
    for i in range(n):
        write({"i": i})
    return {"messages": [AIMessage(content="done")]}


builder = StateGraph(MessagesState)
builder.add_node("emit", emit)
builder.add_edge(START, "emit")
builder.add_edge("emit", END)

graph = builder.compile(name="custom_events")
