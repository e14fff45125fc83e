"""Crons: ``POST /runs/crons``, ``POST /threads/{thread_id}/runs/crons``,
``POST /runs/crons/search``, ``POST /runs/crons/count``, ``GET|PATCH|DELETE /runs/crons/{id}``
(the Platform API; shapes and details from crons-webhooks.md).

A create returns 200 with the Cron object and fires nothing until the first tick
(runtime/crons/scheduler.py fires). Deliberate differences from the reference (README):

1. A body without ``schedule`` or ``assistant_id`` is a 422 naming the field (the reference
   answers 500); ``end_time`` must be an ISO-8601 date-time (the reference stores any string,
   ``"tomorrow"`` included, and its scheduler then crashes), and is printed in UTC
   (``+00:00``), not echoed as sent.
2. ``schedule`` also takes ``@every <duration>`` and ``@at <time>`` (runtime/crons/schedule.py).
   A ``webhook`` is checked against the URL policy at create and PATCH (422), as for runs.
3. A daily job at a fixed hour fires once on the autumn daylight-saving change (the
   reference fires it twice).
4. Optional per-cron policies in the body or ``metadata.x_gateway``: ``max_concurrency``,
   ``on_max_concurrency``, ``retry`` (runtime/crons/policy.py), checked when written (422).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.auth import auth_configured, authorize, current_user
from gateway.auth.guards import guard_run_create
from gateway.cron_schemas import (
    DROPPED_METADATA_KEYS,
    CronCount,
    CronCreate,
    CronPatch,
    CronSearch,
    validate_run_fields,
)
from gateway.errors import InvalidField
from gateway.responses import json_response
from gateway.routes.common import check_webhook, path_uuid, runtime_of
from gateway.schemas import parse_body
from runtime.assistants.directory import resolve_for_run
from runtime.crons.policy import PolicyError, policy_of
from runtime.crons.schedule import (
    NoNextDate,
    ScheduleError,
    from_stored,
    parse,
    parse_end_time,
    stored,
)
from runtime.crons.types import AUTH_PAYLOAD_KEY, Cron
from runtime.crons.util import thread_detail
from runtime.errors import BadRequest, CronNotFound, ThreadNotFound
from runtime.ids import now_iso, uuid7
from runtime.spec import RunSpec


def _schedule_error(exc: ScheduleError) -> InvalidField:
    return InvalidField(str(exc))


def _first_tick(schedule: str, tz: str | None, now: datetime, anchor: datetime) -> str | None:
    """The first tick after ``now`` (stored text). Raises InvalidField (422) for a schedule or
    zone that cannot be read, BadRequest (400) for one that never fires."""
    try:
        parsed = parse(schedule)
        nxt = parsed.next_after(now, tz, anchor=anchor)
    except ScheduleError as exc:
        raise _schedule_error(exc) from None
    except NoNextDate as exc:
        raise BadRequest(str(exc)) from None
    if nxt is None:  # an @at in the past
        raise BadRequest("failed to find next date: the @at time has passed")
    return stored(nxt)


def _end_time(value: Any) -> str | None:
    try:
        return stored(parse_end_time(value))
    except ScheduleError as exc:
        raise _schedule_error(exc) from None


def _check_policy(payload: dict[str, Any], metadata: Any) -> None:
    """422 naming the field for a wrong per-cron policy (runtime/crons/policy.py)."""
    try:
        policy_of(payload, metadata if isinstance(metadata, dict) else None)
    except PolicyError as exc:
        raise InvalidField(str(exc)) from None


def _metadata(value: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (value or {}).items() if k not in DROPPED_METADATA_KEYS}


async def _raw_body(request: Request) -> dict[str, Any]:
    """The body as parsed JSON (``parse_body`` has validated it; an empty optional body is
    ``{}``)."""
    raw = await request.body()
    data = orjson.loads(raw) if raw.strip() else {}
    return data if isinstance(data, dict) else {}


async def _create(request: Request, thread_id: str | None) -> Response:
    body = await parse_body(request, CronCreate)
    raw = await _raw_body(request)
    await check_webhook(request, body.webhook)
    rt = runtime_of(request)
    assistant = await resolve_for_run(rt.graphs, rt.store.assistants, body.assistant_id)
    now = datetime.now(UTC)
    _first_tick(body.schedule, body.timezone, now, now)  # 422/400 before anything else
    cron_id = uuid7()
    raw.pop(AUTH_PAYLOAD_KEY, None)
    config = dict(raw.get("config") or {})
    config["configurable"] = {**(config.get("configurable") or {}), "cron_id": cron_id}
    payload = {**raw, "assistant_id": assistant.assistant_id, "config": config}
    if thread_id is None:
        payload.setdefault("on_run_completed", body.on_run_completed or "delete")
    spec = validate_run_fields(payload, thread_id)  # the run it will create is a valid run
    _check_policy(payload, raw.get("metadata"))
    metadata, user_id = await _authorize_create(request, body, payload, thread_id, spec)
    created = now_iso()
    cron = Cron(
        cron_id=cron_id, assistant_id=assistant.assistant_id, thread_id=thread_id,
        user_id=user_id,
        end_time=_end_time(body.end_time), schedule=body.schedule, timezone=body.timezone,
        payload=payload,
        next_run_date=_first_tick(body.schedule, body.timezone, now,
                                  from_stored(created) or now),
        metadata=metadata,
        on_run_completed=(body.on_run_completed or "delete") if thread_id is None else None,
        enabled=body.enabled, created_at=created, updated_at=created,
    )
    return json_response((await rt.crons.create_cron(cron)).to_api())


async def _authorize_create(request: Request, body: CronCreate, payload: dict[str, Any],
                            thread_id: str | None, spec: RunSpec) -> tuple[dict[str, Any], str]:
    """``crons.create`` (and ``threads.create_run`` on the cron's thread): the metadata after
    the handler's stamps and the creator's ``user_id``. With custom auth, the payload keeps
    the creator's user and the stamps of the threads its fires create (``AUTH_PAYLOAD_KEY``).

    Raises:
        AuthRefused: a handler refused. ThreadNotFound: the thread is hidden (as missing).
    """
    value: dict[str, Any] = {
        "thread_id": thread_id, "assistant_id": body.assistant_id, "schedule": body.schedule,
        "payload": {k: v for k, v in payload.items() if k != AUTH_PAYLOAD_KEY},
        "metadata": _metadata(body.metadata), "end_time": body.end_time, "user_id": None}
    await authorize(request, "crons", "create", value)
    metadata = _metadata(value["metadata"] if isinstance(value.get("metadata"), dict)
                         else body.metadata)
    if not auth_configured(request):
        return metadata, ""
    run_spec = await guard_run_create(request, spec, lambda t: ThreadNotFound(
        t, thread_detail(t)))
    payload[AUTH_PAYLOAD_KEY] = {"auth": run_spec.auth,
                                 "thread_metadata": run_spec.thread_metadata}
    user = current_user(request)
    return metadata, user.identity if user else ""


async def _guard_cron(request: Request, action: str, cron: Cron,
                      changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """``crons.<action>`` on ``cron``: a filter that hides it answers as a missing cron (the
    detail of a PATCH on a missing cron differs from the others', as the stores give it).

    Returns:
        The value the handler saw (and may have changed, e.g. stamped ``metadata``).

    Raises:
        AuthRefused: the handler refused. CronNotFound: hidden.
    """
    value: dict[str, Any] = {"cron_id": cron.cron_id, **(changes or {})}
    found = await authorize(request, "crons", action, value)
    if found is not None and not found.matches(cron.metadata):
        if action == "update":
            raise CronNotFound(cron.cron_id, f"Cron '{cron.cron_id}' not found")
        raise CronNotFound(cron.cron_id)
    return value


async def create_stateless(request: Request) -> Response:
    """``POST /runs/crons`` -> 200 Cron (a new thread per fire)."""
    return await _create(request, None)


async def create_for_thread(request: Request) -> Response:
    """``POST /threads/{thread_id}/runs/crons`` -> 200 Cron; 404 for an unknown thread."""
    return await _create(request, path_uuid(request, "thread_id", "thread"))


async def get_cron(request: Request) -> Response:
    """``GET /runs/crons/{cron_id}`` -> Cron; 404 ``Not Found``."""
    cron_id = path_uuid(request, "cron_id", "cron")
    cron = await runtime_of(request).crons.get_cron(cron_id)
    await _guard_cron(request, "read", cron)
    return json_response(cron.to_api())


async def delete_cron(request: Request) -> Response:
    """``DELETE /runs/crons/{cron_id}`` -> 204; 404 ``Not Found``. Its runs stay."""
    cron_id = path_uuid(request, "cron_id", "cron")
    if auth_configured(request):
        try:
            cron = await runtime_of(request).crons.get_cron(cron_id)
        except CronNotFound:
            raise CronNotFound(cron_id) from None
        await _guard_cron(request, "delete", cron)
    if not await runtime_of(request).crons.delete_cron(cron_id):
        raise CronNotFound(cron_id)
    return Response(status_code=204)


async def patch_cron(request: Request) -> Response:
    """``PATCH /runs/crons/{cron_id}`` -> Cron. ``{}`` is a 400; ``metadata`` merges; a new
    ``schedule`` or ``timezone`` recomputes ``next_run_date`` (enabling does not: a stale tick
    fires at once, as in the reference); ``end_time: null`` clears it; other keys are merged
    into the payload (``assistant_id`` and ``config.configurable.cron_id`` kept)."""
    cron_id = path_uuid(request, "cron_id", "cron")
    body = await parse_body(request, CronPatch, optional=True)
    raw = await _raw_body(request)
    if not raw:
        raise BadRequest("Request body cannot be empty")
    raw.pop(AUTH_PAYLOAD_KEY, None)
    metadata_patch = _metadata(body.metadata)
    if auth_configured(request):
        try:
            cron = await runtime_of(request).crons.get_cron(cron_id)
        except CronNotFound:  # as update_cron answers a missing cron
            raise CronNotFound(cron_id, f"Cron '{cron_id}' not found") from None
        value = await _guard_cron(request, "update", cron,
                                  {**raw, "metadata": dict(body.metadata or {})})
        if isinstance(value.get("metadata"), dict):  # the handler's stamps are kept
            metadata_patch = _metadata(value["metadata"])
    if isinstance(raw.get("webhook"), str):
        await check_webhook(request, raw["webhook"])
    rt = runtime_of(request)
    end_time = _end_time(body.end_time) if "end_time" in raw else None
    now = datetime.now(UTC)

    def apply(cron: Cron) -> Cron:
        schedule = body.schedule if body.schedule is not None else cron.schedule
        tz = body.timezone if "timezone" in raw else cron.timezone
        next_run = cron.next_run_date
        if body.schedule is not None or "timezone" in raw:
            next_run = _first_tick(schedule, tz, now, from_stored(cron.created_at) or now)
        payload = {**cron.payload, **raw, "assistant_id": cron.assistant_id}
        config = dict(payload.get("config") or {})
        config["configurable"] = {**(config.get("configurable") or {}), "cron_id": cron_id}
        payload["config"] = config
        validate_run_fields(payload, cron.thread_id)
        _check_policy(payload, {**cron.metadata, **metadata_patch})
        on_completed = cron.on_run_completed
        if cron.thread_id is None and body.on_run_completed is not None:
            on_completed = body.on_run_completed
        return cron.replace(
            schedule=schedule, timezone=tz, next_run_date=next_run, payload=payload,
            end_time=end_time if "end_time" in raw else cron.end_time,
            enabled=cron.enabled if body.enabled is None else body.enabled,
            metadata={**cron.metadata, **metadata_patch},
            on_run_completed=on_completed, updated_at=now_iso())

    return json_response((await rt.crons.update_cron(cron_id, apply)).to_api())


async def search(request: Request) -> Response:
    """``POST /runs/crons/search`` -> [Cron] (``select`` trims keys), ``X-Pagination-*``."""
    q = await parse_body(request, CronSearch, optional=True)
    found = await authorize(request, "crons", "search", {
        "assistant_id": q.assistant_id, "thread_id": q.thread_id, "metadata": q.metadata or {},
        "limit": q.limit, "offset": q.offset})
    crons, more = await runtime_of(request).crons.search_crons(
        assistant_id=q.assistant_id, thread_id=q.thread_id, enabled=q.enabled,
        metadata=q.metadata, limit=q.limit, offset=q.offset, sort_by=q.sort_by,
        sort_order=q.sort_order, auth=found)
    items = [c.to_api() for c in crons]
    if q.select:
        items = [{k: v for k, v in item.items() if k in q.select} for item in items]
    headers = {"X-Pagination-Total": str(q.offset + len(items))}
    if more:  # the reference's convention: Total = Next + 1 when more rows exist
        headers["X-Pagination-Next"] = str(q.offset + q.limit)
        headers["X-Pagination-Total"] = str(q.offset + q.limit + 1)
    return json_response(items, headers=headers)


async def count(request: Request) -> Response:
    """``POST /runs/crons/count`` -> a bare integer."""
    q = await parse_body(request, CronCount, optional=True)
    found = await authorize(request, "crons", "search", {
        "assistant_id": q.assistant_id, "thread_id": q.thread_id, "metadata": q.metadata or {},
        "limit": None, "offset": 0})
    return json_response(await runtime_of(request).crons.count_crons(
        assistant_id=q.assistant_id, thread_id=q.thread_id, metadata=q.metadata, auth=found))


routes = [
    Route("/runs/crons", create_stateless, methods=["POST"]),
    Route("/runs/crons/search", search, methods=["POST"]),
    Route("/runs/crons/count", count, methods=["POST"]),
    Route("/runs/crons/{cron_id}", get_cron, methods=["GET"]),
    Route("/runs/crons/{cron_id}", patch_cron, methods=["PATCH"]),
    Route("/runs/crons/{cron_id}", delete_cron, methods=["DELETE"]),
    Route("/threads/{thread_id}/runs/crons", create_for_thread, methods=["POST"]),
]
