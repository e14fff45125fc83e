"""Browser-test graph ``slow_chat``: the example chat agent's scripted model, slowed down.

One node, ``agent``, answers with :class:`examples.chat_agent.ScriptedChatModel`, which streams
its reply a word at a time; ``config["configurable"]["delay"]`` (seconds, default 0) is the pause
after each token. The chat page passes ``?delay=`` there, so a run lasts long enough to reload
the page or press Stop in the middle of it. Non-arithmetic input gets
``"You said: <text>. Ask me some arithmetic, like 2+2."``.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, MessagesState, StateGraph

from examples.chat_agent import ScriptedChatModel


async def agent(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
    delay = float((config.get("configurable") or {}).get("delay") or 0)
    reply = await ScriptedChatModel(token_delay=delay).ainvoke(state["messages"])
    return {"messages": [reply]}


builder = StateGraph(MessagesState)
builder.add_node("agent", agent)
builder.add_edge(START, "agent")
builder.add_edge("agent", END)

graph = builder.compile(name="slow_chat")
