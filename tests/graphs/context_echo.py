"""Test graph ``context_echo``: one node that reports what the run sees, to check how a run
merges its assistant (runtime/assistants/edit.py rule 3).

Its state ``seen`` becomes ``{"context": runtime.context (a dict, or None), "configurable":
config["configurable"] without the ids the gateway adds, "tags": config["tags"],
"recursion_limit": config["recursion_limit"], "metadata": config["metadata"] keys
``team``/``run_note``/``created_by``}``. No context schema: every key reaches it.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

GATEWAY_KEYS = {"thread_id", "run_id", "graph_id", "assistant_id", "checkpoint_id",
                "checkpoint_ns", "checkpoint_map", "user_id", "__pregel_task_id"}


class State(TypedDict, total=False):
    seen: dict[str, Any]


async def report(state: State, config: RunnableConfig, runtime: Runtime[Any]) -> State:
    configurable = {k: v for k, v in (config.get("configurable") or {}).items()
                    if k not in GATEWAY_KEYS and not k.startswith("__")}
    metadata = config.get("metadata") or {}
    context = runtime.context
    return {"seen": {
        "context": dict(context) if isinstance(context, dict) else context,
        "configurable": configurable,
        "tags": list(config.get("tags") or []),
        "recursion_limit": config.get("recursion_limit"),
        "metadata": {k: metadata[k] for k in ("team", "run_note", "created_by")
                     if k in metadata},
    }}


builder = StateGraph(State)
builder.add_node("report", report)
builder.add_edge(START, "report")
builder.add_edge("report", END)
graph = builder.compile(name="context_echo")
