"""Test graph ``subgraph_chat``: parent ``child -> top``; both the ``child`` subgraph's node
``talk`` and the parent's ``top`` answer through a streaming fake chat model ("a b c").

Without ``stream_subgraphs`` the reference server sends the subgraph's answer once, as a full
``ai`` message from node ``child``, and the parent's answer as ``AIMessageChunk`` tokens; with
it, the subgraph's tokens come as ``messages|child:<id>`` (checked on langgraph dev 0.16.7).
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph


async def talk(state: MessagesState) -> dict[str, Any]:
    model = GenericFakeChatModel(messages=iter([AIMessage(content="a b c")]))
    return {"messages": [await model.ainvoke(state["messages"])]}


child_builder = StateGraph(MessagesState)
child_builder.add_node("talk", talk)
child_builder.add_edge(START, "talk")
child_builder.add_edge("talk", END)

builder = StateGraph(MessagesState)
builder.add_node("child", child_builder.compile(name="child"))
builder.add_node("top", talk)
builder.add_edge(START, "child")
builder.add_edge("child", "top")
builder.add_edge("top", END)
graph = builder.compile()
