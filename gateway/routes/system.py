"""``GET /ok`` and ``GET /info``."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.responses import json_response


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


async def ok(request: Request) -> Response:
    """Liveness: ``{"ok": true, "services": {}}``."""
    return json_response({"ok": True, "services": {}})


async def info(request: Request) -> Response:
    """Server versions and feature flags, shaped like the reference's ``/info``."""
    return json_response({
        "version": _version("langgraph-run-gateway"),
        "langgraph_py_version": _version("langgraph"),
        "flags": {"assistants": True, "crons": False, "langsmith": False,
                  "langsmith_tracing_replicas": False},
        "host": {"kind": "self-hosted", "project_id": None, "host_revision_id": None,
                 "revision_id": None, "tenant_id": None},
    })


routes = [Route("/ok", ok, methods=["GET"]), Route("/info", info, methods=["GET"])]
