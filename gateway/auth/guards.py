"""Per-resource guards the routes call: authorize, then enforce the filter on what is named.

A thread (or cron) an authorization filter hides answers exactly as a missing one: the guard
raises the error the endpoint gives for a missing id (``missing``), so neither status nor
detail tells the two apart. Searches and counts take the filter into their query instead
(``auth=`` of the stores' search methods).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from starlette.requests import Request

from gateway.auth.authorize import authorize
from gateway.auth.custom import current_user
from gateway.routes.common import runtime_of
from runtime.assistants.directory import resolve_for_run
from runtime.auth_filter import AuthFilter
from runtime.errors import AssistantNotFound, ThreadExists, ThreadNotFound
from runtime.serialization import to_jsonable
from runtime.spec import RunSpec
from runtime.types import Thread


async def guard_thread(
    request: Request, action: str, value: dict[str, Any],
    missing: Callable[[str], Exception] | None = None,
) -> AuthFilter | None:
    """``threads.<action>`` on the existing thread ``value["thread_id"]``.

    Returns:
        The filter (None: nothing to enforce). A missing thread is left to the endpoint.

    Raises:
        AuthRefused: the handler refused.
        Exception: ``missing(thread_id)`` (default ``ThreadNotFound``) when the thread exists
            but the filter hides it.
    """
    found = await authorize(request, "threads", action, value)
    if found is None:
        return None
    thread_id = value["thread_id"]
    try:
        thread = await runtime_of(request).store.get_thread(thread_id)
    except ThreadNotFound:
        return found
    if not found.matches(thread.metadata):
        raise (missing or ThreadNotFound)(thread_id)
    return found


async def create_thread_metadata(
    request: Request, thread_id: str | None, metadata: dict[str, Any], if_exists: str,
) -> tuple[dict[str, Any], AuthFilter | None]:
    """``threads.create`` for ``POST /threads`` and for a thread a run or a copy creates.

    Returns:
        ``(metadata after the handler's stamps, the handler's filter or None)``.

    Raises:
        AuthRefused: the handler refused.
    """
    value: dict[str, Any] = {"thread_id": thread_id, "metadata": dict(metadata),
                             "if_exists": if_exists}
    found = await authorize(request, "threads", "create", value)
    stamped = value.get("metadata")
    return (dict(stamped) if isinstance(stamped, dict) else dict(metadata)), found


async def check_existing_is_visible(request: Request, thread: Thread,
                                    create_filter: AuthFilter | None) -> None:
    """``if_exists="do_nothing"`` returned an existing thread: returning it is a read, so it
    must pass the create filter and ``threads.read``; another user's thread is a 409 (the
    reference hands it over when the create handler returns no filter).

    Raises:
        ThreadExists: the caller may not see the thread.
        AuthRefused: the read handler refused.
    """
    if create_filter is not None and not create_filter.matches(thread.metadata):
        raise ThreadExists(thread.thread_id)
    read = await authorize(request, "threads", "read", {"thread_id": thread.thread_id})
    if read is not None and not read.matches(thread.metadata):
        raise ThreadExists(thread.thread_id)


def auth_configurable(request: Request) -> dict[str, Any] | None:
    """The ``configurable`` keys a run gets for the authenticated user (LangGraph
    Platform's ``langgraph_auth_user``, ``langgraph_auth_user_id``,
    ``langgraph_auth_permissions``), or None without custom authentication."""
    user = current_user(request)
    if user is None:
        return None
    # JSON-safe: the run's config is stored (an extra field may be any object)
    return {"langgraph_auth_user": to_jsonable(user.to_dict()),
            "langgraph_auth_user_id": user.identity,
            "langgraph_auth_permissions": list(user.permissions)}


def _missing_for_run(thread_id: str) -> Exception:
    return ThreadNotFound(thread_id, "Thread or assistant not found.")


async def _guard_run_assistant(request: Request, spec: RunSpec) -> None:
    """``assistants.read`` for a run naming a stored assistant (system assistants are
    exempt, as in the reference, so runs by graph name work under owner filters): an
    assistant the filter hides answers as a missing one.

    Raises:
        AuthRefused: the handler refused. AssistantNotFound: the assistant is hidden.
    """
    rt = runtime_of(request)
    assistant = await resolve_for_run(rt.graphs, rt.store.assistants, spec.assistant_id)
    if assistant.system:
        return
    found = await authorize(request, "assistants", "read",
                            {"assistant_id": assistant.assistant_id})
    if found is not None and not found.matches(assistant.metadata):
        raise AssistantNotFound(spec.assistant_id)  # what a run naming no assistant gets


async def guard_run_create(
    request: Request, spec: RunSpec, missing: Callable[[str], Exception] | None = None,
) -> RunSpec:
    """``threads.create_run`` for a run-creating request, and what follows from it.

    The handler sees the reference's value (``thread_id`` None for a stateless run); its
    ``metadata`` stamps become the run's metadata. A filter must match an existing thread
    (else the run answers as for a missing thread). A thread the run creates (stateless, or
    ``if_not_exists="create"``) also goes through ``threads.create``, so it has the same
    owner stamps as one made by ``POST /threads``. The user's configurable keys are attached.

    Returns:
        ``spec`` with ``metadata``, ``thread_metadata`` and ``auth`` set.

    Raises:
        AuthRefused: a handler refused.
        ThreadNotFound: the thread exists but the filter hides it.
    """
    auth = auth_configurable(request)
    if auth is None and getattr(request.app.state, "custom_auth", None) is None:
        return spec
    value: dict[str, Any] = {
        "thread_id": spec.thread_id, "assistant_id": spec.assistant_id, "run_id": None,
        "status": "pending", "metadata": dict(spec.metadata),
        "prevent_insert_if_inflight": spec.multitask_strategy == "reject",
        "multitask_strategy": str(spec.multitask_strategy),
        "if_not_exists": spec.if_not_exists, "after_seconds": spec.after_seconds,
        "kwargs": {"input": spec.input, "command": spec.command, "config": spec.config,
                   "context": spec.context, "stream_mode": list(spec.stream_mode)},
    }
    found = await authorize(request, "threads", "create_run", value)
    metadata = value["metadata"] if isinstance(value.get("metadata"), dict) else spec.metadata
    await _guard_run_assistant(request, spec)
    exists = False
    if spec.thread_id is not None:
        try:
            thread = await runtime_of(request).store.get_thread(spec.thread_id)
            exists = True
        except ThreadNotFound:
            pass
        if exists and found is not None and not found.matches(thread.metadata):
            raise (missing or _missing_for_run)(spec.thread_id)
    thread_metadata: dict[str, Any] = {}
    if not exists and (spec.thread_id is None or spec.if_not_exists == "create"):
        thread_metadata, _ = await create_thread_metadata(request, spec.thread_id,
                                                          dict(metadata), "do_nothing")
    # checked again in the admission's transaction: a thread someone else creates between
    # this look and the admission is refused, not joined. Not when the thread this run would
    # create fails the filter itself (a handler that stamps nothing): the run goes ahead as in
    # the reference, its thread hidden from its creator.
    recheck = found if exists or found is None or found.matches(thread_metadata) else None
    return replace(spec, metadata=dict(metadata), thread_metadata=thread_metadata, auth=auth,
                   thread_filter=recheck)


