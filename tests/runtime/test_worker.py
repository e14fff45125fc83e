"""runtime/worker.py: nothing escapes ``execute_run`` but cancellation (design.md 4.8), even a
stored config of the wrong shape (``config: {"metadata": 5}`` once took the runtime down)."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.graph import END, START, MessagesState, StateGraph

from runtime.ids import now_iso, uuid7
from runtime.types import MultitaskStrategy, Run, RunStatus
from runtime.worker import execute_run

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


def _graph() -> Any:
    builder = StateGraph(MessagesState)
    builder.add_node("noop", lambda state: {})
    builder.add_edge(START, "noop")
    builder.add_edge("noop", END)
    return builder.compile()


@pytest.mark.parametrize("config", [{"metadata": 5}, {"configurable": [1]}, {"metadata": "x"}])
async def test_malformed_stored_config_fails_the_run_not_the_caller(
    config: dict[str, Any],
) -> None:
    now = now_iso()
    run = Run(run_id=uuid7(), thread_id=str(uuid7()), assistant_id="a", graph_id="g",
              status=RunStatus.RUNNING, metadata={}, kwargs={"config": config, "input": None},
              multitask_strategy=MultitaskStrategy.ENQUEUE, created_at=now, updated_at=now)
    events: list[str] = []
    result = await execute_run(_graph(), run, lambda event, data: events.append(event))
    assert result.error is not None and result.error["error"] in ("TypeError", "ValueError")
    assert events == ["metadata", "error"]
