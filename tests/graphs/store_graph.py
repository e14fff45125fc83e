"""Test graph ``store_graph``: one node that uses the gateway's Store (``runtime.store``).

It reads the item ``("memories", <user>) / "note"`` (written by a client over HTTP), writes
``("graph_writes", <user>) / "last"`` = ``{"text": <last human message>}`` (read back by the
client), and answers ``"noted: <text>; client said: <note text or none>"``. ``<user>`` is
``context["user"]`` (default ``anon``).
"""

from __future__ import annotations

from typing import Any, TypedDict

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.config import get_store
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.runtime import Runtime


class Ctx(TypedDict, total=False):
    user: str


async def remember(state: MessagesState, runtime: Runtime[Ctx]) -> dict[str, Any]:
    user = (runtime.context or {}).get("user", "anon")
    store = runtime.store
    assert store is not None and store is get_store()
    note = await store.aget(("memories", user), "note")
    text = next((str(m.content) for m in reversed(state["messages"])
                 if isinstance(m, HumanMessage)), "")
    await store.aput(("graph_writes", user), "last", {"text": text})
    said = note.value.get("text") if note else "none"
    return {"messages": [AIMessage(content=f"noted: {text}; client said: {said}")]}


builder = StateGraph(MessagesState, context_schema=Ctx)
builder.add_node("remember", remember)
builder.add_edge(START, "remember")
builder.add_edge("remember", END)
graph = builder.compile(name="store_graph")
