"""The bodies of ``/wait`` and ``/join`` and the final status of a run that was cancelled.

Shapes follow protocol.md section 6: the final state values; ``{"__error__": {"error",
"message"}}`` when the graph raised; and, for a join of a run that ended at an interrupt and
is read back from the store, ``{"__interrupt__": [{"id", "value"}, ...]}`` only.
"""

from __future__ import annotations

from typing import Any

from runtime.serialization import dumps
from runtime.types import Run, RunStatus, Thread, ThreadOutcome
from runtime.worker import RunResult


def result_body(result: RunResult, outcome: ThreadOutcome | None) -> bytes:
    """The ``/wait`` and ``/join`` body: final values, or ``{"__error__": {...}}``."""
    if result.error is not None:
        return dumps({"__error__": result.error})
    if result.values_json is not None:
        return result.values_json
    if result.values is not None:
        return dumps(result.values)
    if outcome is not None and outcome.values_json is not None:
        return outcome.values_json
    return dumps(outcome.values if outcome and outcome.values is not None else {})


def finished_before_cancel(run: Run, outcome: ThreadOutcome) -> bool:
    """True if a cancel arrived after the graph had written its final checkpoint: the run's
    work is complete, so it is ``success``, not ``interrupted`` (a cancel racing the end)."""
    return outcome.complete and outcome.head_run_id == run.run_id


def stored_result_body(run: Run, thread: Thread) -> bytes:
    """The ``/join`` body of a finished run whose live handle is gone, from its thread's
    stored ``values``, ``interrupts`` and ``error``."""
    if run.status == RunStatus.ERROR and thread.error:
        return dumps({"__error__": thread.error})
    body: dict[str, Any] = dict(thread.values or {})
    interrupts = [i for items in (thread.interrupts or {}).values() for i in items]
    if interrupts:
        body = {"__interrupt__": interrupts}
    return dumps(body)
