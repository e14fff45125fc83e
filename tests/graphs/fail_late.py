"""Test graph ``fail_late``: ``work -> explode``, a run that streams a few events, then fails.

* ``work`` emits the custom event ``{"step": "work"}`` and appends
  ``AIMessage("working: <last human content>", id="work-<uuid>")``.
* ``explode`` (async) emits ``{"step": "explode"}``, sleeps ``delay`` seconds, read from
  ``config["configurable"]["delay"]`` (default 0), then raises
  ``ValueError("deliberate late failure: <last human content>")``.

With ``stream_mode=["values", "updates", "custom"]`` the stream is ``metadata``, ``values``
(input), ``custom``, ``updates``, ``values``, ``custom``, then ``error`` last: for tests of the
terminal error after a cut or a re-join.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, MessagesState, StateGraph


def last_human_text(state: MessagesState) -> str:
    for message in reversed(state["messages"]):
        if isinstance(message, HumanMessage):
            return str(message.content)
    return ""


def work(state: MessagesState) -> dict[str, Any]:
    get_stream_writer()({"step": "work"})
    reply = AIMessage(content="working: " + last_human_text(state), id=f"work-{uuid.uuid4()}")
    return {"messages": [reply]}


async def explode(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
    get_stream_writer()({"step": "explode"})
    delay = (config.get("configurable") or {}).get("delay")
    if delay:
        await asyncio.sleep(float(delay))
    raise ValueError("deliberate late failure: " + last_human_text(state))


builder = StateGraph(MessagesState)
builder.add_node("work", work)
builder.add_node("explode", explode)
builder.add_edge(START, "work")
builder.add_edge("work", "explode")
builder.add_edge("explode", END)

graph = builder.compile(name="fail_late")
