"""Runs: create (background, stream, wait; on a thread or stateless), list, get, delete, join,
join-stream and cancel.

Headers follow the reference (protocol.md section 2): every create and every join stream sets
``Content-Location: /threads/{t}/runs/{r}`` (stateless: ``/runs/{r}``), the stream endpoints set
``Location`` to the join-stream path and ``/wait`` to the join path, which the SDKs use to
reconnect. ``on_disconnect`` applies only to the creating request; a join never cancels unless
``cancel_on_disconnect`` is set (design.md 4.6).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.auth import auth_configured, authorize
from gateway.auth.guards import guard_run_create, guard_thread
from gateway.errors import InvalidField
from gateway.responses import json_response, raw_json_response
from gateway.routes.common import check_webhook, path_uuid, query_flag, runtime_of
from gateway.schemas import (
    BulkCancel,
    CancelQuery,
    RunCreate,
    RunListQuery,
    parse_body,
    validate,
)
from gateway.sse import encode_plain, frames, parse_stream_modes, sse_response
from gateway.wait import WaitResponse, interrupt_run
from runtime.bridge.protocol import FROM_START, LIVE, parse_last_event_id
from runtime.errors import NothingToCancel, RunNotFound, ThreadNotFound, Unavailable
from runtime.runs import RunManager
from runtime.serialization import dumps
from runtime.types import CancelAction, Run

KEEPALIVE_S = 5.0


def _paths(run: Run, stateless: bool) -> tuple[str, str]:
    """(Content-Location, join-stream path) of a run."""
    if stateless:
        return f"/runs/{run.run_id}", f"/runs/{run.run_id}/stream"
    base = f"/threads/{run.thread_id}/runs/{run.run_id}"
    return base, base + "/stream"


async def _create(request: Request, stateless: bool) -> tuple[Run, RunCreate]:
    thread_id = None if stateless else path_uuid(request, "thread_id", "thread")
    body = await parse_body(request, RunCreate)
    await check_webhook(request, body.webhook)
    spec = await guard_run_create(request, body.to_spec(thread_id))
    run = await runtime_of(request).manager.create(spec)
    return run, body


def _no_run(thread_id: str) -> Exception:
    """What the run endpoints answer for a run of a missing (or hidden) thread."""
    return RunNotFound(thread_id)


def _nothing_to_cancel(thread_id: str) -> Exception:
    return NothingToCancel()


async def guard_stateless_run(request: Request, run: Run) -> None:
    """``threads.read`` for ``GET /runs/{r}/stream``: the run's thread (its metadata, or the
    run's own while the temporary thread is gone) must pass the filter, else RunNotFound."""
    found = await authorize(request, "threads", "read",
                            {"thread_id": run.thread_id, "run_id": run.run_id})
    if found is None:
        return
    try:
        metadata = (await runtime_of(request).store.get_thread(run.thread_id)).metadata
    except ThreadNotFound:
        metadata = run.metadata
    if not found.matches(metadata):
        raise RunNotFound(run.run_id)


async def visible_for_cancel(request: Request, run_ids: list[str] | None,
                             thread_id: str | None, action: str) -> tuple[list[str] | None, bool]:
    """``POST /runs/cancel`` under authorization: ``threads.update`` on every thread named
    or owning a named run. Returns ``(the run ids the caller may cancel, whether the named
    thread is visible)``; hidden runs are left out as if missing."""
    thread_ok = True
    if thread_id is not None:
        try:
            await guard_thread(request, "update", {"thread_id": thread_id, "action": action})
        except ThreadNotFound:
            thread_ok = False
    if not run_ids:
        return run_ids, thread_ok
    store = runtime_of(request).store
    visible = []
    for run_id in run_ids:
        run = await store.get_run(run_id)
        if run is None:
            continue
        try:
            await guard_thread(request, "update", {"thread_id": run.thread_id,
                                                   "run_id": run_id, "action": action})
        except ThreadNotFound:
            continue
        visible.append(run_id)
    return visible, thread_ok


def _canceller(manager: RunManager, run: Run) -> Callable[[], Awaitable[None]]:
    return partial(interrupt_run, manager, run)


async def create_background(request: Request) -> Response:
    """``POST /threads/{t}/runs`` and ``POST /runs`` -> 200 Run (``pending``)."""
    stateless = "thread_id" not in request.path_params
    run, _ = await _create(request, stateless)
    content_location, _ = _paths(run, stateless)
    return json_response(run.to_api(), headers={"Content-Location": content_location})


async def create_stream(request: Request) -> Response:
    """``POST /threads/{t}/runs/stream`` and ``POST /runs/stream`` -> SSE of the whole run."""
    stateless = "thread_id" not in request.path_params
    run, body = await _create(request, stateless)
    rt = runtime_of(request)
    content_location, location = _paths(run, stateless)
    cancel = _canceller(rt.manager, run) if body.on_disconnect == "cancel" else None
    return sse_response(
        frames(rt.manager.subscribe(run.run_id, FROM_START)),
        headers={"Location": location, "Content-Location": content_location},
        ping_interval_s=request.app.state.settings.ping_interval_s,
        on_client_close=cancel,
    )


async def _wait_body(
    manager: RunManager, run: Run, cancel_on_disconnect: bool
) -> AsyncIterator[bytes]:
    done = False
    try:
        try:
            while (result := await manager.wait_result(run.thread_id, run.run_id,
                                                       KEEPALIVE_S)) is None:
                yield b"\n"
        except Unavailable:  # shutdown re-queued the run: break the response, never fake a result
            done = True
            raise
        except RunNotFound:  # deleted (e.g. rolled back) while we waited
            result = dumps({"__error__": {"error": "HTTPException",
                                          "message": "404: Run not found"}})
        done = True
        yield result
    finally:
        if not done and cancel_on_disconnect:  # we are being cancelled (client left)
            await interrupt_run(manager, run)


async def create_wait(request: Request) -> Response:
    """``POST /threads/{t}/runs/wait`` and ``POST /runs/wait`` -> the final values as JSON.

    A ``\\n`` is written every 5 s while the run is going (leading-whitespace keep-alive);
    a failed run gives 200 ``{"__error__": {"error", "message"}}`` as the reference.
    """
    stateless = "thread_id" not in request.path_params
    run, body = await _create(request, stateless)
    rt = runtime_of(request)
    content_location, _ = _paths(run, stateless)
    return _wait_response(rt.manager, run, body.on_disconnect == "cancel", {
        "Location": f"/threads/{run.thread_id}/runs/{run.run_id}/join",
        "Content-Location": content_location})


def _wait_response(manager: RunManager, run: Run, cancel_on_disconnect: bool,
                   headers: dict[str, str] | None = None) -> Response:
    """The ``/wait``/``/join`` body: ``WaitResponse`` for a run live here, else the generic
    streamed body (a run finished or recovered elsewhere, read from the store)."""
    result = manager.result_future(run.thread_id, run.run_id)
    if result is not None:
        return WaitResponse(manager, run, result, cancel_on_disconnect, KEEPALIVE_S, headers)
    return StreamingResponse(_wait_body(manager, run, cancel_on_disconnect),
                             media_type="application/json", headers=headers)


async def list_runs(request: Request) -> Response:
    """``GET /threads/{t}/runs?limit&offset&status`` -> runs, newest first."""
    thread_id = path_uuid(request, "thread_id", "thread")
    q = validate(RunListQuery, dict(request.query_params))
    rt = runtime_of(request)
    await guard_thread(request, "read", {"thread_id": thread_id})
    await rt.store.get_thread(thread_id)
    runs = await rt.store.list_runs(thread_id, status=q.status, limit=q.limit, offset=q.offset)
    return json_response([(await rt.manager.get(thread_id, r.run_id)).to_api()
                          if r.status in ("pending", "running") else r.to_api() for r in runs])


async def get_run(request: Request) -> Response:
    """``GET /threads/{t}/runs/{r}`` -> Run; 404 ``Not Found``."""
    thread_id = path_uuid(request, "thread_id", "thread")
    run_id = path_uuid(request, "run_id", "run")
    await guard_thread(request, "read", {"thread_id": thread_id, "run_id": run_id},
                       lambda t: RunNotFound(run_id, "Not Found"))
    return json_response((await runtime_of(request).manager.get(thread_id, run_id)).to_api())


async def delete_run(request: Request) -> Response:
    """``DELETE /threads/{t}/runs/{r}`` -> 204; 404 ``Run not found``."""
    thread_id = path_uuid(request, "thread_id", "thread")
    run_id = path_uuid(request, "run_id", "run")
    await guard_thread(request, "delete", {"thread_id": thread_id, "run_id": run_id}, _no_run)
    await runtime_of(request).manager.delete(thread_id, run_id)
    return Response(status_code=204)


async def join(request: Request) -> Response:
    """``GET /threads/{t}/runs/{r}/join`` -> final values (``\\n`` keep-alives while waiting).

    Unknown run: 200 ``{"__error__": {"error": "HTTPException", "message": "404: ..."}}``.
    """
    thread_id = path_uuid(request, "thread_id", "thread")
    run_id = path_uuid(request, "run_id", "run")
    rt = runtime_of(request)
    try:
        await guard_thread(request, "read", {"thread_id": thread_id, "run_id": run_id},
                           _no_run)
        run = await rt.manager.get(thread_id, run_id)
    except RunNotFound:
        return raw_json_response(dumps({"__error__": {"error": "HTTPException",
                                                      "message": "404: Run not found"}}))
    return _wait_response(rt.manager, run, query_flag(request, "cancel_on_disconnect"))


async def join_stream(request: Request) -> Response:
    """``GET /threads/{t}/runs/{r}/stream`` (and ``/runs/{r}/stream``): join the run's SSE.

    ``Last-Event-ID`` resumes after that id; ``-1`` replays from the start but withholds the
    terminal ``error`` of a run that had already failed (the reference never replays it);
    without it the whole run is sent from its first event, ``error`` included: a fresh joiner
    has seen nothing (deliberate difference, runtime/bridge/memory.py invariant 5). ``stream_mode``
    filters (repeated or JSON-array form). A finished run whose log is gone ends at once; an
    unknown run yields one ``error`` event.
    """
    rt = runtime_of(request)
    run_id = path_uuid(request, "run_id", "run")
    try:
        cursor = parse_last_event_id(request.headers.get("last-event-id"))
    except ValueError:
        raise InvalidField("Invalid last-event-id: must be '-1' or '<ms>-<seq>'") from None
    if cursor == LIVE:  # no Last-Event-ID: everything from the first event
        cursor = FROM_START
    modes = parse_stream_modes(request.query_params.getlist("stream_mode"))
    try:
        if "thread_id" in request.path_params:
            thread_id = path_uuid(request, "thread_id", "thread")
            await guard_thread(request, "read", {"thread_id": thread_id, "run_id": run_id},
                               _no_run)
            run = await rt.manager.get(thread_id, run_id)
        else:
            run = await rt.manager.find(run_id)
            await guard_stateless_run(request, run)
    except RunNotFound:
        async def missing() -> AsyncIterator[bytes]:
            yield encode_plain("error", {"error": "HTTPException",
                                         "message": "404: Run not found"})

        return sse_response(missing())
    cancel = _canceller(rt.manager, run) if query_flag(request, "cancel_on_disconnect") else None
    content_location, location = _paths(run, "thread_id" not in request.path_params)
    return sse_response(
        frames(rt.manager.join_events(run, cursor), modes),
        # the SDKs reconnect to Location with Last-Event-ID
        headers={"Location": location, "Content-Location": content_location},
        ping_interval_s=request.app.state.settings.ping_interval_s,
        on_client_close=cancel,
    )


async def cancel(request: Request) -> Response:
    """``POST /threads/{t}/runs/{r}/cancel?wait=0|1&action=interrupt|rollback``.

    202 empty without ``wait``; 200 with the run's last values once it has stopped with it;
    404 if the run is not pending or running.
    """
    thread_id = path_uuid(request, "thread_id", "thread")
    run_id = path_uuid(request, "run_id", "run")
    q = validate(CancelQuery, dict(request.query_params))
    await guard_thread(request, "update", {"thread_id": thread_id, "run_id": run_id,
                                           "action": q.action}, _nothing_to_cancel)
    body = await runtime_of(request).manager.cancel(thread_id, run_id, CancelAction(q.action),
                                                    wait=q.wait)
    if q.wait:
        return raw_json_response(body or b"{}")
    return Response(status_code=202)


async def cancel_many(request: Request) -> Response:
    """``POST /runs/cancel?action=`` ``{run_ids?, thread_id?, status?}`` -> 204; 404 if none."""
    body = await parse_body(request, BulkCancel)
    if not body.run_ids and not body.thread_id:
        raise InvalidField("run_ids or thread_id is required")
    q = validate(CancelQuery, dict(request.query_params))
    run_ids = body.run_ids
    if auth_configured(request):
        run_ids, thread_ok = await visible_for_cancel(request, body.run_ids, body.thread_id,
                                                      q.action)
        if not thread_ok or (body.run_ids and not run_ids):
            raise NothingToCancel()
    await runtime_of(request).manager.cancel_many(
        CancelAction(q.action), run_ids=run_ids, thread_id=body.thread_id,
        status=body.status,
    )
    return Response(status_code=204)


routes = [
    Route("/threads/{thread_id}/runs", create_background, methods=["POST"]),
    Route("/threads/{thread_id}/runs", list_runs, methods=["GET"]),
    Route("/threads/{thread_id}/runs/stream", create_stream, methods=["POST"]),
    Route("/threads/{thread_id}/runs/wait", create_wait, methods=["POST"]),
    Route("/threads/{thread_id}/runs/{run_id}", get_run, methods=["GET"]),
    Route("/threads/{thread_id}/runs/{run_id}", delete_run, methods=["DELETE"]),
    Route("/threads/{thread_id}/runs/{run_id}/join", join, methods=["GET"]),
    Route("/threads/{thread_id}/runs/{run_id}/stream", join_stream, methods=["GET"]),
    Route("/threads/{thread_id}/runs/{run_id}/cancel", cancel, methods=["POST"]),
    Route("/runs", create_background, methods=["POST"]),
    Route("/runs/stream", create_stream, methods=["POST"]),
    Route("/runs/wait", create_wait, methods=["POST"]),
    Route("/runs/cancel", cancel_many, methods=["POST"]),
    Route("/runs/{run_id}/stream", join_stream, methods=["GET"]),
]
