"""``slow``: one node that sleeps ``config["configurable"]["sleep"]`` seconds (default 30).

Keeps runs open for the idle-stream scenario; the benchmark cancels them when done.
"""

from __future__ import annotations

import asyncio
from typing import TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    slept: float


async def sleep(state: State, config: RunnableConfig) -> State:
    seconds = float((config.get("configurable") or {}).get("sleep") or 30)
    await asyncio.sleep(seconds)
    return {"slept": seconds}


builder = StateGraph(State)
builder.add_node("sleep", sleep)
builder.add_edge(START, "sleep")
builder.add_edge("sleep", END)

graph = builder.compile(name="slow")
