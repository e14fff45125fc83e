"""The served API description: ``GET /openapi.json`` (OpenAPI 3.1) and ``GET /docs`` (a
readable page of it, with no script and nothing fetched from a CDN).

Generated, not hand-written: the paths and methods come from the app's route table; each
operation's summary and description from its endpoint's docstring; its request body and query
schema from the pydantic model the endpoint reads, found in the endpoint's source (or the
module helper it calls with the request) as ``parse_body(request, Model)`` and
``validate(Model, dict(request.query_params))``; the schemas from the models themselves
(``pydantic.json_schema``), so a field added to a model is in the document at once. Path
parameters named ``*_id`` are UUIDs. Errors are ``{"detail": str}`` (components
``ErrorDetail``).
"""

from __future__ import annotations

import html
import inspect
import re
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.responses import json_response

_BODY = re.compile(r"parse_body\(\s*request,\s*(\w+)")
_QUERY = re.compile(r"validate\(\s*(\w+),\s*dict\(request\.query_params\)")
_CALL = re.compile(r"\b(_\w+)\(\s*request")
_PARAM = re.compile(r"{(\w+)}")
ERRORS = {str(code): {"description": text, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/ErrorDetail"}}}}
    for code, text in ((400, "Invalid for the current state"), (404, "Not found"),
                       (409, "Conflict"), (413, "Body too large"),
                       (422, "A field is invalid (the detail names it)"))}


def _sources(func: Callable[..., Any]) -> str:
    """The endpoint's source and that of the module helpers it calls with the request."""
    try:
        text = inspect.getsource(func)
    except (OSError, TypeError):
        return ""
    module = inspect.getmodule(func)
    for name in set(_CALL.findall(text)):
        helper = getattr(module, name, None)
        if callable(helper):
            try:
                text += inspect.getsource(helper)
            except (OSError, TypeError):
                continue
    return text


def _model(func: Callable[..., Any], pattern: re.Pattern[str]) -> type[BaseModel] | None:
    module = inspect.getmodule(func)
    for name in pattern.findall(_sources(func)):
        model = getattr(module, name, None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model
    return None


def _doc(func: Callable[..., Any]) -> tuple[str, str]:
    doc = inspect.getdoc(func) or ""
    first, _, rest = doc.partition("\n")
    return first.strip(), rest.strip()


SECURITY_SCHEMES = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key",
               "description": "What the official SDKs send (api_key=...)."},
    "bearer": {"type": "http", "scheme": "bearer"},
}


def build_openapi(routes: list[BaseRoute], title: str, secured: bool = False,
                  public: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (module docstring). ``secured``: the gateway
    requires credentials (API keys or custom auth), so the document declares the
    ``X-Api-Key`` and bearer schemes for every path but ``public`` ones, and a 401."""
    operations: list[tuple[str, str, Callable[..., Any]]] = []
    for route in routes:
        if not isinstance(route, Route) or route.path.startswith("/ui"):
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            operations.append((route.path, method.lower(), route.endpoint))
    models: dict[str, type[BaseModel]] = {}
    for _, _, func in operations:
        for pattern in (_BODY, _QUERY):
            model = _model(func, pattern)
            if model is not None:
                models[model.__name__] = model
    keys, defs = models_json_schema([(m, "validation") for m in models.values()],
                                    ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["ErrorDetail"] = {"type": "object", "required": ["detail"],
                              "properties": {"detail": {"type": "string"}}}
    paths: dict[str, dict[str, Any]] = {}
    for path, method, func in operations:
        summary, description = _doc(func)
        op: dict[str, Any] = {
            "operationId": f"{method}_{path.strip('/').replace('/', '_').replace('{', '')}"
                           .replace("}", "") or method,
            "summary": summary, "responses": {"200": {"description": "OK"}, **ERRORS}}
        if description:
            op["description"] = description
        if secured:
            if path in public:
                op["security"] = []
            else:
                op["responses"]["401"] = {
                    "description": "No or invalid credentials", "content": {
                        "application/json": {"schema": {
                            "$ref": "#/components/schemas/ErrorDetail"}}}}
                op["responses"]["403"] = {"description": "Forbidden by an auth handler"}
        params = [{"name": name, "in": "path", "required": True,
                   "schema": {"type": "string", "format": "uuid"} if name.endswith("_id")
                   else {"type": "string"}} for name in _PARAM.findall(path)]
        query = _model(func, _QUERY)
        if query is not None:
            for name, field in query.model_fields.items():
                params.append({"name": name, "in": "query", "required": field.is_required(),
                               "schema": {}})
        if params:
            op["parameters"] = params
        body = _model(func, _BODY)
        if body is not None and method in ("post", "put", "patch", "delete"):
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": keys[(body, "validation")]}}}
        paths.setdefault(path, {})[method] = op
    try:
        api_version = version("langgraph-run-gateway")
    except PackageNotFoundError:
        api_version = "0"
    document: dict[str, Any] = {"openapi": "3.1.0",
                                "info": {"title": title, "version": api_version},
                                "paths": paths, "components": {"schemas": schemas}}
    if secured:
        document["components"]["securitySchemes"] = SECURITY_SCHEMES
        document["security"] = [{"apiKey": []}, {"bearer": []}]
    return document


async def openapi_json(request: Request) -> Response:
    """``GET /openapi.json``: the OpenAPI 3.1 document, generated from the routes and models."""
    return json_response(request.app.state.openapi)


async def docs(request: Request) -> Response:
    """``GET /docs``: every endpoint with its summary, parameters and body fields."""
    spec = request.app.state.openapi
    schemas = spec["components"]["schemas"]
    rows = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            fields = ""
            ref = (op.get("requestBody", {}).get("content", {}).get("application/json", {})
                   .get("schema", {}).get("$ref", ""))
            model = schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else {}
            required = set(model.get("required", []))
            if model.get("properties"):
                fields = ", ".join(f"<code>{html.escape(name)}</code>"
                                   f"{'*' if name in required else ''}"
                                   for name in model["properties"])
            rows.append(f"<tr><td><b>{method.upper()}</b></td><td><code>{html.escape(path)}"
                        f"</code></td><td>{html.escape(op.get('summary', ''))}</td>"
                        f"<td>{fields}</td></tr>")
    page = ("<!doctype html><meta charset=utf-8><title>API</title><style>body{font-family:"
            "sans-serif;margin:2em}td{padding:4px 8px;vertical-align:top;border-bottom:1px "
            "solid #ddd}</style>"
            f"<h1>{html.escape(spec['info']['title'])}</h1><p>OpenAPI document: "
            "<a href='/openapi.json'>/openapi.json</a>. Body fields marked * are required; "
            "errors are <code>{\"detail\": \"...\"}</code>.</p><table>"
            "<tr><th>method</th><th>path</th><th>what it does</th><th>body</th></tr>"
            + "".join(rows) + "</table>")
    return HTMLResponse(page)


routes = [Route("/openapi.json", openapi_json, methods=["GET"]),
          Route("/docs", docs, methods=["GET"])]
