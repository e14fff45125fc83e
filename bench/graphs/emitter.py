"""``emitter``: an optional pause, then ``n`` custom events ``{"i": i}`` via the stream writer.

``config["configurable"]``: ``n`` (events, default 2000) and ``delay`` (seconds the ``pause``
node sleeps first, default 0; lets fan-out joiners attach before the events start).
"""

from __future__ import annotations

import asyncio
from typing import TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph

DEFAULT_N = 2000


class State(TypedDict, total=False):
    sent: int


def _conf(config: RunnableConfig) -> dict[str, object]:
    return dict(config.get("configurable") or {})


async def pause(state: State, config: RunnableConfig) -> State:
    delay = float(_conf(config).get("delay") or 0)  # type: ignore[arg-type]
    if delay:
        await asyncio.sleep(delay)
    return {}


async def emit(state: State, config: RunnableConfig) -> State:
    n = int(_conf(config).get("n") or DEFAULT_N)  # type: ignore[call-overload]
    write = get_stream_writer()
    for i in range(n):
        write({"i": i})
    return {"sent": n}


builder = StateGraph(State)
builder.add_node("pause", pause)
builder.add_node("emit", emit)
builder.add_edge(START, "pause")
builder.add_edge("pause", "emit")
builder.add_edge("emit", END)

graph = builder.compile(name="emitter")
