"""RunSpec (a validated run-creation request) and RunLimits (the run manager's bounds).

The gateway builds a RunSpec from the request body of ``POST /threads/{id}/runs[/stream|/wait]``
or ``POST /runs[/stream|/wait]``; the runtime turns it into a stored ``Run``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.auth_filter import AuthFilter
from runtime.errors import BadRequest
from runtime.ids import now_iso, uuid7
from runtime.types import MultitaskStrategy, Run, RunStatus


@dataclass(frozen=True)
class RunSpec:
    """A run-creation request (RunCreateStateful / RunCreateStateless of the Platform API).

    Attributes:
        thread_id: the thread, or None for a stateless run (a temporary thread).
        stream_mode: Platform stream modes (``values``, ``messages-tuple``, ...), default values.
        checkpoint: ``{"checkpoint_id", "checkpoint_ns"?}`` to start from, or None.
        after_seconds: delay before the run may start, in seconds.
        on_completion: ``keep``/``delete``; None means ``delete`` for stateless, ``keep`` else.
        auth: the authenticated user's keys for ``config.configurable``
            (``AUTH_CONFIGURABLE``), set by the gateway from the authentication handler's
            result, never from the request body; None without authentication.
        thread_metadata: metadata of a thread this run creates (stateless, or
            ``if_not_exists="create"``), e.g. the owner an authorization handler stamped.
        thread_filter: an authorization filter the run's thread must pass, checked in the
            admission's transaction (runtime/auth_filter.py); None: no check.
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
    webhook: str | None = None
    auth: dict[str, Any] | None = None
    thread_metadata: dict[str, Any] = field(default_factory=dict)
    thread_filter: AuthFilter | None = None


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


AUTH_CONFIGURABLE = frozenset({"langgraph_auth_user", "langgraph_auth_user_id",
                               "langgraph_auth_permissions"})
"""``configurable`` keys that carry the authenticated user (LangGraph Platform names). Only the
gateway sets them: copies in a request's ``config.configurable`` or ``context`` are dropped."""

SYSTEM_CONFIGURABLE = frozenset({"cron_id"}) | AUTH_CONFIGURABLE
"""``configurable`` keys the gateway itself sets (a cron's fires carry ``cron_id``)."""


def check_context(spec: RunSpec) -> None:
    """The reference's rule: ``context`` and ``config.configurable`` (keys the gateway sets
    aside) are not given together.

    Raises:
        BadRequest: both are given (400).
    """
    configurable = spec.config.get("configurable") or {}
    if spec.context and set(configurable) - SYSTEM_CONFIGURABLE:
        raise BadRequest(
            "Cannot specify both configurable and context. Prefer setting context alone. "
            "Context was introduced in LangGraph 0.6.0 and is the long term planned "
            "replacement for configurable."
        )


def build_run(spec: RunSpec, assistant_id: str, graph_id: str) -> Run:
    """The ``pending`` Run that admitting ``spec`` stores (the Platform API's Run object).

    ``kwargs`` mirror the reference's run kwargs; ``config.configurable`` gains ``run_id``,
    ``thread_id``, ``graph_id``, ``assistant_id`` and the ``context`` keys. A stateless run
    (no ``thread_id``) gets a new thread id and ``on_completion="delete"`` by default.
    """
    run_id = uuid7()
    thread_id = spec.thread_id or uuid7()
    now = now_iso()
    config = {**spec.config}
    context = {k: v for k, v in spec.context.items() if k not in AUTH_CONFIGURABLE}
    configurable = {k: v for k, v in {**(config.get("configurable") or {}), **context}.items()
                    if k not in AUTH_CONFIGURABLE}
    if spec.auth:
        configurable.update(spec.auth)
        configurable.setdefault("user_id", spec.auth.get("langgraph_auth_user_id", ""))
    configurable.update(run_id=run_id, thread_id=thread_id, graph_id=graph_id,
                        assistant_id=assistant_id)
    config["configurable"] = configurable
    kwargs: dict[str, Any] = {
        "input": spec.input,
        "command": spec.command,
        "config": config,
        "context": context,
        "stream_mode": list(spec.stream_mode),
        "interrupt_before": spec.interrupt_before,
        "interrupt_after": spec.interrupt_after,
        "webhook": spec.webhook,
        "feedback_keys": None,
        "temporary": spec.thread_id is None,
        "subgraphs": spec.stream_subgraphs,
        "resumable": spec.stream_resumable,
        "checkpoint": spec.checkpoint,
        "durability": spec.durability,
    }
    not_before = None
    if spec.after_seconds > 0:
        not_before = (datetime.now(UTC) + timedelta(seconds=spec.after_seconds)).isoformat()
    return Run(
        run_id=run_id,
        thread_id=thread_id,
        assistant_id=assistant_id,
        graph_id=graph_id,
        status=RunStatus.PENDING,
        metadata={**spec.metadata, "graph_id": graph_id, "assistant_id": assistant_id},
        kwargs=kwargs,
        multitask_strategy=spec.multitask_strategy,
        created_at=now,
        updated_at=now,
        on_completion=spec.on_completion or ("delete" if spec.thread_id is None else "keep"),
        not_before=not_before,
    )
