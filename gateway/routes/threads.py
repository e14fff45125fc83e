"""Threads: create, get, patch, delete, search, count, copy, state and history.

Follows the Platform endpoints ``/threads``, ``/threads/{id}``, ``/threads/search``,
``/threads/count``, ``/threads/{id}/copy``, ``/threads/{id}/state[/{checkpoint_id}]``,
``/threads/{id}/state/checkpoint`` and ``/threads/{id}/history``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.auth import auth_configured, authorize
from gateway.auth.guards import check_existing_is_visible, create_thread_metadata, guard_thread
from gateway.errors import InvalidField
from gateway.responses import json_response
from gateway.routes.common import path_uuid, query_flag, runtime_of
from gateway.schemas import (
    HistoryRequest,
    StateAtCheckpoint,
    StateUpdate,
    ThreadCount,
    ThreadCreate,
    ThreadPatch,
    ThreadSearch,
    parse_body,
    validate,
)
from gateway.sse import encode_event, encode_gap, sse_response
from runtime.bridge.protocol import parse_last_event_id
from runtime.ids import uuid7
from runtime.types import StreamGap


async def create(request: Request) -> Response:
    """``POST /threads`` -> 200 Thread; 409 if it exists and ``if_exists`` is ``raise``."""
    body = await parse_body(request, ThreadCreate, optional=True)
    metadata, found = await create_thread_metadata(request, body.thread_id, body.metadata,
                                                   body.if_exists)
    thread_id = body.thread_id or uuid7()  # canonical already (schemas.CanonicalUuid)
    thread = await runtime_of(request).store.create_thread(thread_id, metadata, body.if_exists)
    if body.if_exists == "do_nothing" and auth_configured(request):
        await check_existing_is_visible(request, thread, found)
    return json_response(thread.to_api())


async def get(request: Request) -> Response:
    """``GET /threads/{id}``."""
    thread_id = path_uuid(request, "thread_id", "thread")
    await guard_thread(request, "read", {"thread_id": thread_id})
    return json_response((await runtime_of(request).store.get_thread(thread_id)).to_api())


async def patch(request: Request) -> Response:
    """``PATCH /threads/{id}``: shallow-merge ``metadata``."""
    thread_id = path_uuid(request, "thread_id", "thread")
    body = await parse_body(request, ThreadPatch, optional=True)
    value: dict[str, Any] = {"thread_id": thread_id, "metadata": dict(body.metadata)}
    await guard_thread(request, "update", value)
    thread = await runtime_of(request).store.patch_thread_metadata(thread_id, value["metadata"])
    return json_response(thread.to_api())


async def delete(request: Request) -> Response:
    """``DELETE /threads/{id}`` -> 204; cancels its active runs, drops its checkpoints."""
    thread_id = path_uuid(request, "thread_id", "thread")
    await guard_thread(request, "delete", {"thread_id": thread_id})
    await runtime_of(request).manager.delete_thread(thread_id)
    return Response(status_code=204)


async def search(request: Request) -> Response:
    """``POST /threads/search`` with ``X-Pagination-Total`` (and ``-Next`` when more exist)."""
    q = await parse_body(request, ThreadSearch, optional=True)
    found = await authorize(request, "threads", "search", {
        "metadata": dict(q.metadata or {}), "values": q.values, "status": q.status,
        "limit": q.limit, "offset": q.offset, "ids": q.ids, "thread_id": None})
    threads, more = await runtime_of(request).store.search_threads(
        ids=q.ids, metadata=q.metadata, values=q.values, status=q.status, limit=q.limit,
        offset=q.offset, sort_by=q.sort_by, sort_order=q.sort_order, auth=found,
    )
    headers = {"X-Pagination-Total": str(q.offset + len(threads))}
    if more:  # the reference's convention: Total = Next + 1 when more rows exist
        headers["X-Pagination-Next"] = str(q.offset + q.limit)
        headers["X-Pagination-Total"] = str(q.offset + q.limit + 1)
    return json_response([t.to_api() for t in threads], headers=headers)


async def count(request: Request) -> Response:
    """``POST /threads/count`` -> a bare integer."""
    q = await parse_body(request, ThreadCount, optional=True)
    found = await authorize(request, "threads", "search", {
        "metadata": dict(q.metadata or {}), "values": q.values, "status": q.status})
    n = await runtime_of(request).store.count_threads(metadata=q.metadata, values=q.values,
                                                      status=q.status, auth=found)
    return json_response(n)


async def copy(request: Request) -> Response:
    """``POST /threads/{id}/copy`` -> the new Thread with the same state."""
    thread_id = path_uuid(request, "thread_id", "thread")
    await guard_thread(request, "read", {"thread_id": thread_id})
    metadata = None
    if auth_configured(request):
        source = await runtime_of(request).store.get_thread(thread_id)
        metadata, _ = await create_thread_metadata(request, None, source.metadata, "raise")
    return json_response((await runtime_of(request).state.copy(thread_id, metadata)).to_api())


async def get_state(request: Request) -> Response:
    """``GET /threads/{id}/state[/{checkpoint_id}]`` -> ThreadState."""
    thread_id = path_uuid(request, "thread_id", "thread")
    await guard_thread(request, "read", {"thread_id": thread_id})
    checkpoint_id = request.path_params.get("checkpoint_id")
    checkpoint = {"checkpoint_id": checkpoint_id} if checkpoint_id else None
    state = await runtime_of(request).state.get(thread_id, checkpoint,
                                                subgraphs=query_flag(request, "subgraphs"))
    return json_response(state)


async def post_state_checkpoint(request: Request) -> Response:
    """``POST /threads/{id}/state/checkpoint`` ``{checkpoint: {checkpoint_id}}``."""
    thread_id = path_uuid(request, "thread_id", "thread")
    body = await parse_body(request, StateAtCheckpoint)
    await guard_thread(request, "read", {"thread_id": thread_id})
    state = await runtime_of(request).state.get(thread_id, body.checkpoint.model_dump(),
                                                subgraphs=body.subgraphs)
    return json_response(state)


async def update_state(request: Request) -> Response:
    """``POST /threads/{id}/state`` ``{values, as_node?, checkpoint?}``."""
    thread_id = path_uuid(request, "thread_id", "thread")
    body = await parse_body(request, StateUpdate)
    await guard_thread(request, "update", {"thread_id": thread_id})
    checkpoint = body.checkpoint.model_dump() if body.checkpoint else None
    if body.checkpoint_id:
        checkpoint = {"checkpoint_id": body.checkpoint_id}
    result = await runtime_of(request).state.update(thread_id, body.values, body.as_node,
                                                    checkpoint)
    return json_response(result)


async def history(request: Request) -> Response:
    """``GET|POST /threads/{id}/history`` -> ThreadState list, newest first."""
    thread_id = path_uuid(request, "thread_id", "thread")
    if request.method == "GET":
        q = validate(HistoryRequest, dict(request.query_params))
    else:
        q = await parse_body(request, HistoryRequest, optional=True)
    await guard_thread(request, "read", {"thread_id": thread_id})
    states = await runtime_of(request).state.history(
        thread_id, limit=q.limit, before=q.before, metadata=q.metadata,
        checkpoint=q.checkpoint.model_dump() if q.checkpoint else None,
    )
    return json_response(states)


routes = [
    Route("/threads", create, methods=["POST"]),
    Route("/threads/search", search, methods=["POST"]),
    Route("/threads/count", count, methods=["POST"]),
    Route("/threads/{thread_id}", get, methods=["GET"]),
    Route("/threads/{thread_id}", patch, methods=["PATCH"]),
    Route("/threads/{thread_id}", delete, methods=["DELETE"]),
    Route("/threads/{thread_id}/copy", copy, methods=["POST"]),
    Route("/threads/{thread_id}/state", get_state, methods=["GET"]),
    Route("/threads/{thread_id}/state", update_state, methods=["POST"]),
    Route("/threads/{thread_id}/state/checkpoint", post_state_checkpoint, methods=["POST"]),
    Route("/threads/{thread_id}/state/{checkpoint_id}", get_state, methods=["GET"]),
    Route("/threads/{thread_id}/history", history, methods=["GET", "POST"]),
]


THREAD_STREAM_MODES = {"run_modes", "lifecycle", "state_update"}


def _thread_stream_keeps(modes: set[str], event_name: str) -> bool:
    if event_name == "state_update":
        return "state_update" in modes
    if "run_modes" in modes:
        return True
    return "lifecycle" in modes and event_name == "metadata"


async def join_thread_stream(request: Request) -> Response:
    """``GET /threads/{id}/stream?stream_modes=run_modes,lifecycle,state_update``.

    An endless SSE of the events of every run of the thread started while subscribed (every
    event has an id), ``metadata {"status": "run_done", "run_id"}`` after each run, and
    ``state_update {"state": ...}`` after ``POST /threads/{id}/state``. ``Last-Event-ID``
    resumes (protocol.md section 5.4).
    """
    thread_id = path_uuid(request, "thread_id", "thread")
    raw = ",".join(request.query_params.getlist("stream_modes")) or "run_modes"
    modes = {m.strip() for m in raw.split(",") if m.strip()}
    for mode in modes:
        if mode not in THREAD_STREAM_MODES:
            raise InvalidField(f"Invalid stream mode: {mode}")
    try:
        cursor = parse_last_event_id(request.headers.get("last-event-id"))
    except ValueError:
        raise InvalidField("Invalid last-event-id: must be '-1' or '<ms>-<seq>'") from None
    rt = runtime_of(request)
    await guard_thread(request, "read", {"thread_id": thread_id})
    await rt.store.get_thread(thread_id)

    events = rt.manager.bridge.subscribe_thread(thread_id, cursor)  # before headers go out

    async def body() -> AsyncIterator[bytes]:
        async for item in events:
            if isinstance(item, StreamGap):
                yield encode_gap(item)
            elif _thread_stream_keeps(modes, item.event):
                yield encode_event(item)

    return sse_response(body(), ping_interval_s=request.app.state.settings.ping_interval_s)


routes.append(Route("/threads/{thread_id}/stream", join_thread_stream, methods=["GET"]))
