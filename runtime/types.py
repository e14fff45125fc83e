"""Persisted values of the run gateway: runs, threads, their statuses and stream events.

Everything here is a frozen value or a string enum; live handles (cancel scopes, done events)
never appear in this module (they live in ``runtime/runs/``).

Deliberate differences from the LangGraph Platform reference:
1. Stream events always carry an id (``"<ms>-<seq>"``), not only for ``stream_resumable`` runs
   (protocol.md section 10.1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson


class RunStatus(StrEnum):
    """Run lifecycle, as ``Run.status`` of the Platform API.

    ``pending -> running -> success | error | interrupted | timeout``. A run stopped by
    ``interrupt()`` inside a node is ``success`` (its thread is ``interrupted``).
    """

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    ERROR = "error"
    INTERRUPTED = "interrupted"
    TIMEOUT = "timeout"

    @property
    def is_terminal(self) -> bool:
        """True for every status a run never leaves."""
        return self not in (RunStatus.PENDING, RunStatus.RUNNING)


class ThreadStatus(StrEnum):
    """``Thread.status``: ``busy`` while any run of the thread is pending or running."""

    IDLE = "idle"
    BUSY = "busy"
    INTERRUPTED = "interrupted"
    ERROR = "error"


class MultitaskStrategy(StrEnum):
    """What to do with a new run when its thread is busy (``multitask_strategy``)."""

    REJECT = "reject"
    INTERRUPT = "interrupt"
    ROLLBACK = "rollback"
    ENQUEUE = "enqueue"


class CancelAction(StrEnum):
    """``action`` of ``POST /threads/{id}/runs/{run_id}/cancel``."""

    INTERRUPT = "interrupt"
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class Run:
    """One run as stored and as serialized by ``GET /threads/{t}/runs/{r}``.

    Attributes:
        run_id: UUIDv7 string.
        thread_id: the run's thread (a temporary thread for stateless runs).
        assistant_id: assistant UUID (never the graph name, even when the request used it).
        graph_id: the graph the run executes.
        status: see ``RunStatus``.
        metadata: request metadata merged with ``graph_id``/``assistant_id``.
        kwargs: the Platform ``kwargs`` object: ``input``, ``command``, ``config``, ``context``,
            ``stream_mode`` (list), ``interrupt_before``/``after``, ``subgraphs``, ``resumable``,
            ``temporary``, ``checkpoint`` ...
        multitask_strategy: the strategy the run was admitted with.
        created_at / updated_at: ISO-8601 UTC with microseconds.
        attempt: 1 for the first execution; +1 for each re-execution after a crash.
        cancel_action: durable cancel intent (``interrupt``/``rollback``) or None.
        on_completion: ``keep`` or ``delete`` (stateless runs delete their thread).
        not_before: ISO time before which the run must not start (``after_seconds``), or None.
    """

    run_id: str
    thread_id: str
    assistant_id: str
    graph_id: str
    status: RunStatus
    metadata: dict[str, Any]
    kwargs: dict[str, Any]
    multitask_strategy: MultitaskStrategy
    created_at: str
    updated_at: str
    attempt: int = 1
    cancel_action: CancelAction | None = None
    on_completion: str = "keep"
    not_before: str | None = None

    def replace(self, **changes: Any) -> Run:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_api(self) -> dict[str, Any]:
        """The Run object of the Platform API (``GET /threads/{t}/runs/{r}``)."""
        return {
            "run_id": self.run_id,
            "thread_id": self.thread_id,
            "assistant_id": self.assistant_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "metadata": self.metadata,
            "status": str(self.status),
            "kwargs": self.kwargs,
            "multitask_strategy": str(self.multitask_strategy),
        }


@dataclass(frozen=True, slots=True)
class Thread:
    """One thread as stored and as serialized by ``GET /threads/{id}``.

    ``values`` mirrors the head checkpoint's values after each run (None before the first);
    ``interrupts`` is ``{task_id: [{"id", "value"}]}``; ``error`` is ``{"error", "message"}``
    of the last failed run. ``interrupts``/``error`` are None (keys absent on the wire) until
    a run has ended, as in the reference.
    """

    thread_id: str
    created_at: str
    updated_at: str
    state_updated_at: str
    metadata: dict[str, Any]
    status: ThreadStatus
    config: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] | None = None
    interrupts: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def to_api(self) -> dict[str, Any]:
        """The Thread object of the Platform API."""
        out: dict[str, Any] = {
            "thread_id": self.thread_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "state_updated_at": self.state_updated_at,
            "metadata": self.metadata,
            "status": str(self.status),
            "config": self.config,
            "values": self.values,
        }
        if self.interrupts is not None:
            out["interrupts"] = self.interrupts
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True, slots=True)
class ThreadOutcome:
    """What a finished run leaves on its thread, written with the run's terminal status.

    ``status`` is the thread status the run implies (``idle``/``interrupted``/``error``); the
    store turns it into ``busy`` when another run of the thread is still pending or running.

    ``values_json``: the values as JSON bytes, when they were already encoded (the run's last
    ``values`` event); then ``values`` is None and the stores write these bytes as they are
    (a long thread's state is encoded once per run, not three times). ``state_values`` gives
    the values either way.
    """

    status: ThreadStatus
    values: dict[str, Any] | None
    interrupts: dict[str, Any]
    error: dict[str, Any] | None = None
    graph_id: str | None = None
    assistant_id: str | None = None
    head_run_id: str | None = None  # the run that wrote the head checkpoint
    complete: bool = False  # the graph ran to its end (no next node, no pending task)
    values_json: bytes | None = None

    @property
    def state_values(self) -> dict[str, Any] | None:
        """The values, decoded from ``values_json`` if that is how they are held."""
        if self.values_json is not None:
            decoded: dict[str, Any] | None = orjson.loads(self.values_json)
            return decoded
        return self.values


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a run's stream.

    Attributes:
        ms / seq: the id parts; ``seq`` is a process-wide counter, so ``(ms, seq)`` is unique and
            strictly increasing over every event of every run (``ms`` never goes backwards).
        event: SSE event name (``metadata``, ``values``, ``messages``, ``values|child:<id>`` ...).
        data: the payload, already JSON-encoded once (compact, one line).
    """

    ms: int
    seq: int
    event: str
    data: bytes

    @property
    def id(self) -> str:
        """The SSE id ``"<ms>-<seq>"``."""
        return f"{self.ms}-{self.seq}"


@dataclass(frozen=True, slots=True)
class StreamGap:
    """Marker yielded to a subscriber whose cursor fell out of the bounded log.

    ``dropped`` events between the requested id and ``first_id`` are no longer retained; None
    when the number is unknown (a thread stream resumed from before its log existed).
    """

    requested_id: str
    first_id: str | None
    dropped: int | None
