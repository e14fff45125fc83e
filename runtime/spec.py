"""RunSpec (a validated run-creation request) and RunLimits (the run manager's bounds).

The gateway builds a RunSpec from the request body of ``POST /threads/{id}/runs[/stream|/wait]``
or ``POST /runs[/stream|/wait]``; the runtime turns it into a stored ``Run``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime.types import MultitaskStrategy


@dataclass(frozen=True)
class RunSpec:
    """A run-creation request (RunCreateStateful / RunCreateStateless of the Platform API).

    Attributes:
        thread_id: the thread, or None for a stateless run (a temporary thread).
        stream_mode: Platform stream modes (``values``, ``messages-tuple``, ...), default values.
        checkpoint: ``{"checkpoint_id", "checkpoint_ns"?}`` to start from, or None.
        after_seconds: delay before the run may start, in seconds.
        on_completion: ``keep``/``delete``; None means ``delete`` for stateless, ``keep`` else.
    """

    assistant_id: str
    thread_id: str | None = None
    input: Any = None
    command: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    stream_mode: tuple[str, ...] = ("values",)
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    interrupt_before: list[str] | str | None = None
    interrupt_after: list[str] | str | None = None
    checkpoint: dict[str, Any] | None = None
    multitask_strategy: MultitaskStrategy = MultitaskStrategy.ENQUEUE
    if_not_exists: str = "reject"
    after_seconds: float = 0.0
    on_completion: str | None = None
    durability: str | None = None


@dataclass(frozen=True)
class RunLimits:
    """Bounds of the run manager.

    Attributes:
        max_concurrent_runs: runs executing at once (over all threads).
        finalize_timeout_s: time a cancelled run gets to store its final status.
        handle_retention_s: seconds a finished run's live handle (result body) is kept.
        shutdown_timeout_s: time running runs get to finish at shutdown.
    """

    max_concurrent_runs: int = 32
    finalize_timeout_s: float = 10.0
    handle_retention_s: float = 120.0
    shutdown_timeout_s: float = 10.0
