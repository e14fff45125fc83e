"""The outcome a finished run leaves on its thread (runtime/worker.py): taken from the run's
own stream when it ran to its end (``completed_outcome``), it must equal what the head
checkpoint says (``read_outcome``, ``graph.aget_state``); when it cannot know (interrupts,
breakpoints, errors, an output schema narrower than the state) it must step aside."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langchain_core.messages import AIMessage
from langgraph.func import entrypoint
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.pregel import Pregel

from runtime.ids import now_iso, uuid7
from runtime.saver_sqlite import ThreadedSqliteSaver
from runtime.types import MultitaskStrategy, Run, RunStatus, ThreadOutcome, ThreadStatus
from runtime.worker import completed_outcome, execute_run, read_outcome
from tests.graphs.hitl import builder as hitl_builder

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]


class State(TypedDict, total=False):
    n: int
    label: str


class Narrow(TypedDict):
    label: str


def _steps(output_schema: Any = None) -> StateGraph[Any]:
    builder: StateGraph[Any] = StateGraph(State, output_schema=output_schema)
    builder.add_node("count", lambda s: {"n": s.get("n", 0) + 1})
    builder.add_node("label", lambda s: {"label": f"n={s['n']}"})
    builder.add_edge(START, "count")
    builder.add_edge("count", "label")
    builder.add_edge("label", END)
    return builder


def _boom() -> StateGraph[Any]:
    def fail(state: State) -> State:
        raise ValueError("boom")

    builder: StateGraph[Any] = StateGraph(State)
    builder.add_node("fail", fail)
    builder.add_edge(START, "fail")
    builder.add_edge("fail", END)
    return builder


def _chat() -> StateGraph[Any]:
    builder: StateGraph[Any] = StateGraph(MessagesState)
    builder.add_node("reply", lambda s: {"messages": [AIMessage("hi", id="ai-1")]})
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder


def _run(thread_id: str, **kwargs: Any) -> Run:
    now = now_iso()
    return Run(run_id=uuid7(), thread_id=thread_id, assistant_id="a", graph_id="g",
               status=RunStatus.RUNNING, metadata={}, kwargs={"config": {}, **kwargs},
               multitask_strategy=MultitaskStrategy.ENQUEUE, created_at=now, updated_at=now)


async def _finish(graph: Pregel[Any, Any, Any, Any], run: Run
                  ) -> tuple[ThreadOutcome | None, ThreadOutcome]:
    """(outcome from the stream, outcome from the head checkpoint) of ``run``."""
    result = await execute_run(graph, run, lambda event, data: None)
    return completed_outcome(graph, run, result), await read_outcome(graph, run, result.error)


async def test_a_run_to_its_end_leaves_what_the_checkpoint_says(tmp_path: Path) -> None:
    async with ThreadedSqliteSaver.open(tmp_path / "c.sqlite") as saver:
        cases: list[tuple[Pregel[Any, Any, Any, Any], dict[str, Any]]] = [
            (_steps().compile(checkpointer=saver), {"input": {"n": 1}}),
            (_chat().compile(checkpointer=saver),
             {"input": {"messages": [{"role": "user", "content": "hey"}]}}),
            (entrypoint(checkpointer=saver)(lambda x: {"echo": x}), {"input": 7}),
        ]
        for graph, kwargs in cases:
            thread_id = uuid7()
            for _ in range(2):  # a second run on the same thread starts from the first's state
                quick, read = await _finish(graph, _run(thread_id, **kwargs))
                assert quick is not None, graph
                assert quick.values_json is not None  # the last values event's bytes
                assert replace(quick, values=quick.state_values, values_json=None) == read
                assert quick.status == ThreadStatus.IDLE and quick.complete


async def test_it_steps_aside_when_the_stream_cannot_tell(tmp_path: Path) -> None:
    async with ThreadedSqliteSaver.open(tmp_path / "c.sqlite") as saver:
        hitl = hitl_builder.compile(checkpointer=saver)
        ask = {"input": {"messages": [{"role": "user", "content": "draft"}]}}
        cases: list[tuple[Pregel[Any, Any, Any, Any], dict[str, Any], ThreadStatus]] = [
            (hitl, ask, ThreadStatus.INTERRUPTED),  # interrupt()
            (_steps().compile(checkpointer=saver), {"input": {"n": 1},
                                                    "interrupt_before": ["label"]},
             ThreadStatus.INTERRUPTED),  # a breakpoint of the run: no __interrupt__ chunk
            (_steps().compile(checkpointer=saver, interrupt_after=["count"]),
             {"input": {"n": 1}}, ThreadStatus.INTERRUPTED),  # a breakpoint of the graph
            (_steps(Narrow).compile(checkpointer=saver), {"input": {"n": 1}},
             ThreadStatus.IDLE),  # streams {"label"} only; the thread's values hold "n" too
            (_boom().compile(checkpointer=saver), {"input": {"n": 1}}, ThreadStatus.ERROR),
        ]
        for graph, kwargs, status in cases:
            quick, read = await _finish(graph, _run(uuid7(), **kwargs))
            assert quick is None, kwargs
            assert read.status == status, kwargs
