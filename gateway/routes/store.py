"""The Store API: ``PUT/GET/DELETE /store/items``, ``POST /store/items/search``,
``POST /store/namespaces`` (the Platform API; shapes from auth-store-assistants.md 2.1), over
runtime/kvstore.py (langgraph's stores, shared with the graphs).

Shapes as the reference: a missing item is 200 ``null`` (the JS SDK parses every body), PUT and
DELETE are 204, search returns ``{"items": [...]}`` (each with ``score``), namespaces
``{"namespaces": [[...]]}``. Namespace labels are non-empty strings without ``.`` (422 naming
the field); an empty namespace is a 400. Differences: a search without ``namespace_prefix``
searches everything (the reference answers 500); ``limit: 0`` is a 422, not silently 10.

Authorization (``@auth.on.store``, gateway/auth/): the handler sees the reference's values and
may rewrite ``value["namespace"]`` (e.g. under the caller's identity); the rewritten namespace
is validated again. Unlike the reference, a filter it returns guards every action, not only
search: get answers ``null`` and delete does nothing for an item whose value it hides, put
needs the new and the replaced value to pass it (403), and namespace listings only show
namespaces holding a visible item.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictStr, field_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.auth import authorize
from gateway.errors import AuthRefused, InvalidField
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


def _scoped(value: dict[str, Any], allow_empty: bool = False) -> tuple[str, ...]:
    """``value["namespace"]`` after the store handler ran (it may rewrite it, e.g. under the
    user's identity), checked again as a namespace.

    Raises:
        InvalidField: a label that is not a non-empty string without ``.`` (422).
        BadRequest: an empty namespace where one is required (400).
    """
    labels = value.get("namespace")
    if labels is None:
        labels = ()
    if not isinstance(labels, list | tuple) or not all(isinstance(x, str) for x in labels):
        raise InvalidField("namespace: the auth handler set a namespace that is not a list "
                           "of strings")
    try:
        _labels(list(labels), "namespace")
    except ValueError as exc:
        raise InvalidField(f"namespace: {exc}") from None
    return tuple(labels) if allow_empty else _namespace(list(labels))


async def put_item(request: Request) -> Response:
    """``PUT /store/items`` -> 204. Under an authorization filter, the new value must pass it
    and so must the item it replaces (else 403, nothing written)."""
    body = await parse_body(request, ItemPut)
    value: dict[str, Any] = {"namespace": _namespace(body.namespace), "key": body.key,
                             "value": body.value, "index": body.index, "ttl": body.ttl}
    found = await authorize(request, "store", "put", value)
    namespace = _scoped(value)
    item_value = value.get("value")
    if not isinstance(item_value, dict):
        raise AuthRefused(500, "the store handler left value['value'] that is not an object")
    items = runtime_of(request).items
    if found is not None:
        existing = await items.get(namespace, body.key)
        if not found.matches(item_value) or (
                existing is not None and not found.matches(existing["value"])):
            raise AuthRefused(403, "Forbidden: the item's value does not pass the store "
                                   "filter of the auth handler")
    await items.put(namespace, body.key, item_value, index=body.index, ttl=body.ttl)
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
    refresh_ttl = None if refresh is None else refresh.lower() in ("1", "true", "yes")
    value: dict[str, Any] = {"namespace": _namespace(labels), "key": key,
                             "refresh_ttl": refresh_ttl}
    found = await authorize(request, "store", "get", value)
    item = await runtime_of(request).items.get(_scoped(value), key, refresh_ttl=refresh_ttl)
    if item is not None and found is not None and not found.matches(item["value"]):
        item = None  # hidden: answers as a missing item
    return json_response(item)


async def delete_item(request: Request) -> Response:
    """``DELETE /store/items`` with ``{namespace, key}`` -> 204 (idempotent)."""
    body = await parse_body(request, ItemDelete)
    value: dict[str, Any] = {"namespace": _namespace(body.namespace), "key": body.key}
    found = await authorize(request, "store", "delete", value)
    items = runtime_of(request).items
    namespace = _scoped(value)
    if found is not None:
        existing = await items.get(namespace, body.key)
        if existing is not None and not found.matches(existing["value"]):
            return Response(status_code=204)  # hidden: as deleting a missing item
    await items.delete(namespace, body.key)
    return Response(status_code=204)


async def search_items(request: Request) -> Response:
    """``POST /store/items/search`` -> ``{"items": [SearchItem]}``."""
    q = await parse_body(request, ItemSearch, optional=True)
    value: dict[str, Any] = {"namespace": tuple(q.namespace_prefix), "filter": q.filter,
                             "limit": q.limit, "offset": q.offset, "query": q.query,
                             "refresh_ttl": q.refresh_ttl}
    found = await authorize(request, "store", "search", value)
    items = await runtime_of(request).items.search(
        _scoped(value, allow_empty=True), filter=q.filter, limit=q.limit, offset=q.offset,
        query=q.query, refresh_ttl=q.refresh_ttl, auth=found)
    return json_response({"items": items})


async def list_namespaces(request: Request) -> Response:
    """``POST /store/namespaces`` -> ``{"namespaces": [[label, ...]]}``."""
    q = await parse_body(request, NamespaceSearch, optional=True)
    value: dict[str, Any] = {"namespace": tuple(q.prefix) if q.prefix else None,
                             "suffix": tuple(q.suffix) if q.suffix else None,
                             "max_depth": q.max_depth, "limit": q.limit, "offset": q.offset}
    auth = await authorize(request, "store", "list_namespaces", value)
    if q.limit == 0:
        return json_response({"namespaces": []})
    prefix = _scoped(value, allow_empty=True) if value.get("namespace") is not None else None
    found = await runtime_of(request).items.namespaces(
        prefix=prefix or None, suffix=tuple(q.suffix) if q.suffix else None,
        max_depth=q.max_depth, limit=q.limit, offset=q.offset, auth=auth)
    return json_response({"namespaces": found})


routes = [
    Route("/store/items", put_item, methods=["PUT"]),
    Route("/store/items", get_item, methods=["GET"]),
    Route("/store/items", delete_item, methods=["DELETE"]),
    Route("/store/items/search", search_items, methods=["POST"]),
    Route("/store/namespaces", list_namespaces, methods=["POST"]),
]
