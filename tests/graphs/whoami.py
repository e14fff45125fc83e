"""Test graph ``whoami``: one node that reports the authenticated user it was given.

The state's ``seen`` is ``{"user_id", "user", "permissions", "forged"}`` from
``config["configurable"]`` (``langgraph_auth_user_id``, ``langgraph_auth_user``,
``langgraph_auth_permissions``) and ``runtime.context`` (a forged copy would show there).
"""

from __future__ import annotations

from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime


class State(TypedDict, total=False):
    note: str
    seen: dict[str, Any]


def look(state: State, config: RunnableConfig, runtime: Runtime[dict[str, Any]]) -> State:
    configurable = config.get("configurable") or {}
    context = runtime.context if isinstance(runtime.context, dict) else {}
    return {"seen": {
        "user_id": configurable.get("langgraph_auth_user_id"),
        "user": configurable.get("langgraph_auth_user"),
        "permissions": configurable.get("langgraph_auth_permissions"),
        "forged": {k: v for k, v in context.items() if k.startswith("langgraph_auth")},
    }}


graph = StateGraph(State).add_node("look", look).add_edge(START, "look") \
    .add_edge("look", END).compile()
