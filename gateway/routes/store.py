"""The Store API: ``PUT/GET/DELETE /store/items``, ``POST /store/items/search``,
``POST /store/namespaces`` (the Platform API; shapes from auth-store-assistants.md 2.1), over
runtime/kvstore.py (langgraph's stores, shared with the graphs).

Shapes as the reference: a missing item is 200 ``null`` (the JS SDK parses every body), PUT and
DELETE are 204, search returns ``{"items": [...]}`` (each with ``score``), namespaces
``{"namespaces": [[...]]}``. Namespace labels are non-empty strings without ``.`` (422 naming
the field); an empty namespace is a 400. Differences: a search without ``namespace_prefix``
searches everything (the reference answers 500); ``limit: 0`` is a 422, not silently 10.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictStr, field_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import InvalidField
from gateway.responses import json_response
from gateway.routes.common import runtime_of
from gateway.schemas import _Model, parse_body
from runtime.errors import BadRequest


def _labels(value: list[str] | None, field: str) -> list[str] | None:
    for label in value or []:
        if not label or "." in label:
            raise ValueError(f"Namespace label '{label}' must be a non-empty string without "
                             "periods")
    return value


class ItemPut(_Model):
    """``PUT /store/items``."""

    namespace: list[StrictStr]
    key: StrictStr
    value: dict[str, Any]
    index: Any = None
    ttl: float | None = Field(None, gt=0, le=10 * 365 * 24 * 60)

    _check = field_validator("namespace")(lambda v: _labels(v, "namespace"))


class ItemDelete(_Model):
    """``DELETE /store/items``."""

    namespace: list[StrictStr]
    key: StrictStr

    _check = field_validator("namespace")(lambda v: _labels(v, "namespace"))


class ItemSearch(_Model):
    """``POST /store/items/search``."""

    namespace_prefix: list[StrictStr] = Field(default_factory=list)
    filter: dict[str, Any] | None = None
    limit: int = Field(10, ge=1, le=10_000)
    offset: int = Field(0, ge=0, le=2**31)
    query: str | None = None
    refresh_ttl: bool | None = None

    _check = field_validator("namespace_prefix")(lambda v: _labels(v, "namespace_prefix"))


class NamespaceSearch(_Model):
    """``POST /store/namespaces``."""

    prefix: list[StrictStr] | None = None
    suffix: list[StrictStr] | None = None
    max_depth: int | None = Field(None, ge=0, le=1000)
    limit: int = Field(100, ge=0, le=10_000)
    offset: int = Field(0, ge=0, le=2**31)


def _namespace(labels: list[str]) -> tuple[str, ...]:
    if not labels:
        raise BadRequest("Namespace cannot be empty.")
    return tuple(labels)


async def put_item(request: Request) -> Response:
    """``PUT /store/items`` -> 204."""
    body = await parse_body(request, ItemPut)
    await runtime_of(request).items.put(_namespace(body.namespace), body.key, body.value,
                                        index=body.index, ttl=body.ttl)
    return Response(status_code=204)


async def get_item(request: Request) -> Response:
    """``GET /store/items?namespace=a.b&key=k[&refresh_ttl=true]`` -> Item or ``null``."""
    key = request.query_params.get("key")
    if not key:
        raise BadRequest("Key is required")
    raw = request.query_params.get("namespace") or ""
    labels = raw.split(".") if raw else []
    if any(not label for label in labels):
        raise InvalidField(f"namespace: label '' of '{raw}' must be a non-empty string")
    refresh = request.query_params.get("refresh_ttl")
    item = await runtime_of(request).items.get(
        _namespace(labels), key,
        refresh_ttl=None if refresh is None else refresh.lower() in ("1", "true", "yes"))
    return json_response(item)


async def delete_item(request: Request) -> Response:
    """``DELETE /store/items`` with ``{namespace, key}`` -> 204 (idempotent)."""
    body = await parse_body(request, ItemDelete)
    await runtime_of(request).items.delete(_namespace(body.namespace), body.key)
    return Response(status_code=204)


async def search_items(request: Request) -> Response:
    """``POST /store/items/search`` -> ``{"items": [SearchItem]}``."""
    q = await parse_body(request, ItemSearch, optional=True)
    items = await runtime_of(request).items.search(
        tuple(q.namespace_prefix), filter=q.filter, limit=q.limit, offset=q.offset,
        query=q.query, refresh_ttl=q.refresh_ttl)
    return json_response({"items": items})


async def list_namespaces(request: Request) -> Response:
    """``POST /store/namespaces`` -> ``{"namespaces": [[label, ...]]}``."""
    q = await parse_body(request, NamespaceSearch, optional=True)
    if q.limit == 0:
        return json_response({"namespaces": []})
    found = await runtime_of(request).items.namespaces(
        prefix=tuple(q.prefix) if q.prefix else None,
        suffix=tuple(q.suffix) if q.suffix else None, max_depth=q.max_depth, limit=q.limit,
        offset=q.offset)
    return json_response({"namespaces": found})


routes = [
    Route("/store/items", put_item, methods=["PUT"]),
    Route("/store/items", get_item, methods=["GET"]),
    Route("/store/items", delete_item, methods=["DELETE"]),
    Route("/store/items/search", search_items, methods=["POST"]),
    Route("/store/namespaces", list_namespaces, methods=["POST"]),
]
