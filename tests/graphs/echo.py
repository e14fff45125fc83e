"""Test graph ``echo``: ``prepare -> respond``, echoing the last human message.

* ``prepare`` (async) emits the custom event ``{"progress": "prepare", "step": 1}``
  and sleeps ``delay`` seconds, read from ``config["configurable"]["delay"]``
  or from the run context (``context={"delay": ...}``); default 0.
* ``respond`` emits ``{"progress": "respond", "step": 2}`` and appends
  ``AIMessage("echo: <last human content>", id="ai-<uuid>")``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, TypedDict

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.runtime import Runtime


class EchoContext(TypedDict, total=False):
    delay: float


def last_human_text(state: MessagesState) -> str:
    for message in reversed(state["messages"]):
        if isinstance(message, HumanMessage):
            return str(message.content)
    return ""


async def prepare(
    state: MessagesState, config: RunnableConfig, runtime: Runtime[EchoContext]
) -> dict[str, Any]:
    get_stream_writer()({"progress": "prepare", "step": 1})
    delay = (config.get("configurable") or {}).get("delay")
    if delay is None and isinstance(runtime.context, dict):
        delay = runtime.context.get("delay")
    if delay:
        await asyncio.sleep(float(delay))
    return {}


async def respond(state: MessagesState) -> dict[str, Any]:
    get_stream_writer()({"progress": "respond", "step": 2})
    reply = AIMessage(
        content="echo: " + last_human_text(state), id=f"ai-{uuid.uuid4()}"
    )
    return {"messages": [reply]}


builder = StateGraph(MessagesState, context_schema=EchoContext)
builder.add_node("prepare", prepare)
builder.add_node("respond", respond)
builder.add_edge(START, "prepare")
builder.add_edge("prepare", "respond")
builder.add_edge("respond", END)

graph = builder.compile(name="echo")
