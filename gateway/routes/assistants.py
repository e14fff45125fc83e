"""Assistants: the system assistants (one per configured graph, read-only) and stored ones
with versions (runtime/assistants/directory.py).

``POST /assistants``, ``GET|PATCH|DELETE /assistants/{id}``, ``POST /assistants/{id}/versions``,
``POST /assistants/{id}/latest``, ``POST /assistants/search``, ``POST /assistants/count``; the
graph sub-resources (``/graph``, ``/schemas``, ``/subgraphs``) are in assistant_graphs.py and
accept a graph id as well as a UUID, as the reference does. By-id endpoints want a UUID (422
``Invalid assistant ID: must be a UUID`` otherwise).

Every endpoint calls the ``assistants`` authorization handler first (gateway/auth): an
assistant its filter does not match answers as a missing one (404), searches and counts leave
it out in the query.

Deliberate differences from the reference (directory.py): system assistants cannot be
changed or deleted (409), and ``/latest`` restores the whole version.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.assistant_schemas import (
    AssistantCreate,
    AssistantLatest,
    AssistantPatch,
    AssistantQuery,
    AssistantVersionsQuery,
)
from gateway.auth import authorize
from gateway.errors import InvalidId
from gateway.responses import json_response
from gateway.routes.assistant_graphs import directory_of, graph, schemas, subgraphs
from gateway.routes.common import path_uuid, query_flag, runtime_of
from gateway.schemas import parse_body
from runtime.assistants.edit import AssistantChanges
from runtime.assistants.types import API_FIELDS, AssistantRecord
from runtime.auth_filter import AuthFilter


def _config(model: Any) -> dict[str, Any] | None:
    return model.model_dump(exclude_unset=True) if model is not None else None


def _body_uuid(value: str | None) -> str | None:
    """A body ``assistant_id`` in canonical form. Raises InvalidId (422) for a non-UUID."""
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidId("assistant") from None


async def create(request: Request) -> Response:
    """``POST /assistants`` -> 200 Assistant (version 1). 404 unknown graph, 409 id taken
    (a system assistant's too) unless ``if_exists: do_nothing``, 400 ``context`` together
    with ``config.configurable``, 422 a non-UUID ``assistant_id``."""
    body = await parse_body(request, AssistantCreate)
    assistant_id = _body_uuid(body.assistant_id) or str(uuid.uuid4())
    config, context = _config(body.config), body.context
    value: dict[str, Any] = {"assistant_id": assistant_id, "graph_id": body.graph_id,
                             "config": config, "context": context,
                             "metadata": dict(body.metadata or {}), "name": body.name}
    auth = await authorize(request, "assistants", "create", value)
    made = await directory_of(request).create(
        assistant_id, body.graph_id, config=config, context=context,
        metadata=value.get("metadata"), name=body.name, description=body.description,
        if_exists=body.if_exists, auth=auth)
    return json_response(made.to_api())


async def get(request: Request) -> Response:
    """``GET /assistants/{id}`` -> Assistant (current version); 404 ``Not Found``."""
    assistant_id = path_uuid(request, "assistant_id", "assistant")
    auth = await authorize(request, "assistants", "read", {"assistant_id": assistant_id})
    return json_response((await directory_of(request).get(assistant_id, auth, "Not Found")
                          ).to_api())


async def patch(request: Request) -> Response:
    """``PATCH /assistants/{id}`` -> Assistant at a new version (every PATCH, ``{}`` too).
    ``metadata`` merges; ``context`` replaces context and ``config.configurable``; a
    non-empty ``config`` replaces config; ``name``/``description``/``graph_id`` replace.
    404 missing; 409 a system assistant (read-only)."""
    assistant_id = path_uuid(request, "assistant_id", "assistant")
    body = await parse_body(request, AssistantPatch, optional=True)
    config = _config(body.config)
    value: dict[str, Any] = {"assistant_id": assistant_id, "graph_id": body.graph_id,
                             "config": config, "context": body.context,
                             "metadata": dict(body.metadata or {}), "name": body.name}
    auth = await authorize(request, "assistants", "update", value)
    metadata = value.get("metadata")
    changes = AssistantChanges(
        graph_id=body.graph_id, config=config, context=body.context,
        metadata=metadata if isinstance(metadata, dict) else None, name=body.name,
        description=body.description)
    return json_response((await directory_of(request).update(assistant_id, changes, auth)
                          ).to_api())


async def delete(request: Request) -> Response:
    """``DELETE /assistants/{id}[?delete_threads=true]`` -> 204. Its versions and crons go
    with it; its pending and running runs are cancelled; with ``delete_threads`` the threads
    whose ``metadata.assistant_id`` is it are deleted too. 404 missing; 409 a system
    assistant (read-only)."""
    assistant_id = path_uuid(request, "assistant_id", "assistant")
    auth = await authorize(request, "assistants", "delete", {"assistant_id": assistant_id})
    await directory_of(request).delete(
        assistant_id, runtime_of(request).manager,
        delete_threads=query_flag(request, "delete_threads"), auth=auth)
    return Response(status_code=204)


async def versions(request: Request) -> Response:
    """``POST /assistants/{id}/versions`` ``{metadata?, limit, offset}`` -> AssistantVersion
    list, newest first. 404 ``Assistant <id> not found``."""
    assistant_id = path_uuid(request, "assistant_id", "assistant")
    body = await parse_body(request, AssistantVersionsQuery)
    auth = await authorize(request, "assistants", "read", {"assistant_id": assistant_id})
    found = await directory_of(request).versions(
        assistant_id, metadata=body.metadata, limit=body.limit, offset=body.offset, auth=auth)
    return json_response([v.to_api() for v in found])


async def latest(request: Request) -> Response:
    """``POST /assistants/{id}/latest`` ``{version}`` -> Assistant: that version becomes the
    current one, all of it (graph, config, context, metadata, name, description; unlike the
    reference, which keeps the newer context and graph). 404 unknown assistant or version;
    409 a system assistant."""
    assistant_id = path_uuid(request, "assistant_id", "assistant")
    body = await parse_body(request, AssistantLatest, optional=True)
    auth = await authorize(request, "assistants", "update",
                           {"assistant_id": assistant_id, "version": body.version})
    return json_response((await directory_of(request).set_latest(
        assistant_id, body.version, auth)).to_api())


def _projected(assistant: AssistantRecord, select: Sequence[str] | None) -> dict[str, Any]:
    api = assistant.to_api()
    return api if not select else {k: api[k] for k in API_FIELDS if k in select}


async def search(request: Request) -> Response:
    """``POST /assistants/search`` -> Assistant list (system and stored), newest first by
    default, with ``X-Pagination-Total`` (and ``X-Pagination-Next`` when more follow).
    ``name``: case-insensitive substring; ``metadata``: containment; ``select``: the fields
    to return. 404 an unknown ``graph_id``."""
    q = await parse_body(request, AssistantQuery, optional=True)
    auth = await _search_auth(request, q)
    page, total = await directory_of(request).search(
        graph_id=q.graph_id, name=q.name, metadata=q.metadata, limit=q.limit,
        offset=q.offset, sort_by=q.sort_by or "created_at", sort_order=q.sort_order or "desc",
        auth=auth)
    headers = {"X-Pagination-Total": str(total)}
    if q.offset + len(page) < total:
        headers["X-Pagination-Next"] = str(q.offset + len(page))
    return json_response([_projected(a, q.select) for a in page], headers=headers)


async def count(request: Request) -> Response:
    """``POST /assistants/count`` -> how many assistants match (a bare integer)."""
    q = await parse_body(request, AssistantQuery, optional=True)
    auth = await _search_auth(request, q)
    return json_response(await directory_of(request).count(
        graph_id=q.graph_id, name=q.name, metadata=q.metadata, auth=auth))


async def _search_auth(request: Request, q: AssistantQuery) -> AuthFilter | None:
    return await authorize(request, "assistants", "search", {
        "graph_id": q.graph_id, "metadata": dict(q.metadata or {}), "limit": q.limit,
        "offset": q.offset})


routes = [
    Route("/assistants", create, methods=["POST"]),
    Route("/assistants/search", search, methods=["POST"]),
    Route("/assistants/count", count, methods=["POST"]),
    Route("/assistants/{assistant_id}", get, methods=["GET"]),
    Route("/assistants/{assistant_id}", patch, methods=["PATCH"]),
    Route("/assistants/{assistant_id}", delete, methods=["DELETE"]),
    Route("/assistants/{assistant_id}/versions", versions, methods=["POST"]),
    Route("/assistants/{assistant_id}/latest", latest, methods=["POST"]),
    Route("/assistants/{assistant_id}/graph", graph, methods=["GET"]),
    Route("/assistants/{assistant_id}/schemas", schemas, methods=["GET"]),
    Route("/assistants/{assistant_id}/subgraphs", subgraphs, methods=["GET"]),
    Route("/assistants/{assistant_id}/subgraphs/{namespace}", subgraphs, methods=["GET"]),
]
