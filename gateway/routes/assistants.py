"""Assistants: one read-only system assistant per configured graph.

``POST /assistants/search``, ``POST /assistants/count``, ``GET /assistants/{id}``,
``GET /assistants/{id}/graph``, ``/schemas``, ``/subgraphs[/{namespace}]``. The sub-resources
accept the graph id as well as the UUID, as the reference does; ``GET /assistants/{id}`` wants
a UUID (422 otherwise).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import InvalidField
from gateway.responses import json_response
from gateway.routes.common import path_uuid, query_flag, runtime_of
from gateway.schemas import AssistantSearch, parse_body
from runtime.graphs import Assistant
from runtime.serialization import to_jsonable
from runtime.store.filters import check_filter


def _matching(request: Request, query: AssistantSearch) -> list[Assistant]:
    check_filter("metadata", query.metadata)  # the same bounds as thread search
    found = []
    for assistant in runtime_of(request).graphs.assistants():
        if query.graph_id and assistant.graph_id != query.graph_id:
            continue
        if query.name and query.name not in assistant.graph_id:
            continue
        if query.metadata and any(assistant.metadata.get(k) != v
                                  for k, v in query.metadata.items()):
            continue
        found.append(assistant)
    return found


async def search(request: Request) -> Response:
    """Assistants matching ``graph_id``/``name``/``metadata``, with ``X-Pagination-*``."""
    query = await parse_body(request, AssistantSearch, optional=True)
    found = _matching(request, query)
    page = found[query.offset:query.offset + query.limit]
    headers = {"X-Pagination-Total": str(len(found))}
    if query.offset + query.limit < len(found):
        headers["X-Pagination-Next"] = str(query.offset + query.limit)
    return json_response([a.to_api() for a in page], headers=headers)


async def count(request: Request) -> Response:
    """How many assistants match (a bare integer)."""
    query = await parse_body(request, AssistantSearch, optional=True)
    return json_response(len(_matching(request, query)))


async def get(request: Request) -> Response:
    """One assistant by UUID."""
    assistant_id = path_uuid(request, "assistant_id", "assistant")
    return json_response(runtime_of(request).graphs.get(assistant_id).to_api())


def _assistant(request: Request) -> Assistant:
    return runtime_of(request).graphs.resolve(request.path_params["assistant_id"])


async def graph(request: Request) -> Response:
    """The graph's drawing ``{"nodes": [...], "edges": [...]}`` (``?xray=`` for subgraphs)."""
    assistant = _assistant(request)
    compiled = runtime_of(request).graphs.graph(assistant.graph_id)
    drawable = await compiled.aget_graph(xray=_xray(request.query_params.get("xray")))
    return json_response(drawable.to_json())


MAX_XRAY = 1000
"""Deepest ``xray`` level: subgraphs are drawn this many levels down at most."""


def _xray(text: str | None) -> bool | int:
    """``?xray=``: ``true``/``false`` or a subgraph depth ``0..MAX_XRAY``.

    Raises:
        InvalidField: anything else (``2.5``, ``-1``, ``²``...) -> 422 naming ``xray``.
    """
    if text is None:
        return False
    value = text.strip().lower()
    if value in ("true", "false"):
        return value == "true"
    # isascii: str.isdigit() is also true of "²", which int() refuses
    if value.isascii() and value.isdigit() and int(value) <= MAX_XRAY:
        return int(value)
    raise InvalidField(f"xray: expected true, false or an integer 0..{MAX_XRAY}, got {text!r}")


def _schemas(graph_id: str, compiled: Any) -> dict[str, Any]:
    def safe(getter: str) -> Any:
        try:
            return to_jsonable(getattr(compiled, getter)())
        except Exception:
            return None

    return {
        "graph_id": graph_id,
        "input_schema": safe("get_input_jsonschema"),
        "output_schema": safe("get_output_jsonschema"),
        "state_schema": safe("get_output_jsonschema") if not hasattr(compiled, "builder")
        else _state_schema(compiled),
        "config_schema": safe("get_config_jsonschema"),
        "context_schema": safe("get_context_jsonschema"),
    }


def _state_schema(compiled: Any) -> Any:
    try:
        from pydantic import TypeAdapter

        return to_jsonable(TypeAdapter(compiled.builder.state_schema).json_schema())
    except Exception:
        try:
            return to_jsonable(compiled.get_output_jsonschema())
        except Exception:
            return None


async def schemas(request: Request) -> Response:
    """Input, output, state, config and context JSON schemas of the graph."""
    assistant = _assistant(request)
    compiled = runtime_of(request).graphs.graph(assistant.graph_id)
    return json_response(_schemas(assistant.graph_id, compiled))


async def subgraphs(request: Request) -> Response:
    """``{namespace: schemas}`` of the graph's subgraphs (``?recurse=``)."""
    assistant = _assistant(request)
    compiled = runtime_of(request).graphs.graph(assistant.graph_id)
    namespace = request.path_params.get("namespace")
    out = {}
    async for ns, sub in compiled.aget_subgraphs(namespace=namespace,
                                                 recurse=query_flag(request, "recurse")):
        out[ns] = _schemas(assistant.graph_id, sub)
    return json_response(out)


routes = [
    Route("/assistants/search", search, methods=["POST"]),
    Route("/assistants/count", count, methods=["POST"]),
    Route("/assistants/{assistant_id}", get, methods=["GET"]),
    Route("/assistants/{assistant_id}/graph", graph, methods=["GET"]),
    Route("/assistants/{assistant_id}/schemas", schemas, methods=["GET"]),
    Route("/assistants/{assistant_id}/subgraphs", subgraphs, methods=["GET"]),
    Route("/assistants/{assistant_id}/subgraphs/{namespace}", subgraphs, methods=["GET"]),
]
