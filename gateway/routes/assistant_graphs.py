"""The graph behind an assistant: ``GET /assistants/{id}/graph``, ``/schemas``,
``/subgraphs[/{namespace}]``. The path names a system assistant by graph id or any assistant
(system or stored) by UUID; a stored assistant shows the graph of its current version.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import authorize
from gateway.errors import InvalidField
from gateway.responses import json_response
from gateway.routes.common import query_flag, runtime_of
from runtime.assistants.directory import AssistantDirectory
from runtime.assistants.types import AssistantRecord
from runtime.serialization import to_jsonable


def directory_of(request: Request) -> AssistantDirectory:
    """System + stored assistants of the request's runtime."""
    rt = runtime_of(request)
    return AssistantDirectory(rt.graphs, rt.store.assistants)


async def _assistant(request: Request) -> AssistantRecord:
    """The assistant the path names (a graph id or a UUID), after ``assistants.read``.

    Raises:
        InvalidAssistant: neither (422); AssistantNotFound: unknown or hidden (404).
    """
    name = request.path_params["assistant_id"]
    auth = await authorize(request, "assistants", "read", {"assistant_id": name})
    return await directory_of(request).resolve(name, auth)


async def graph(request: Request) -> Response:
    """The graph's drawing ``{"nodes": [...], "edges": [...]}`` (``?xray=`` for subgraphs)."""
    assistant = await _assistant(request)
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
    assistant = await _assistant(request)
    compiled = runtime_of(request).graphs.graph(assistant.graph_id)
    return json_response(_schemas(assistant.graph_id, compiled))


async def subgraphs(request: Request) -> Response:
    """``{namespace: schemas}`` of the graph's subgraphs (``?recurse=``)."""
    assistant = await _assistant(request)
    compiled = runtime_of(request).graphs.graph(assistant.graph_id)
    namespace = request.path_params.get("namespace")
    out = {}
    async for ns, sub in compiled.aget_subgraphs(namespace=namespace,
                                                 recurse=query_flag(request, "recurse")):
        out[ns] = _schemas(assistant.graph_id, sub)
    return json_response(out)
