"""``GET /ok``, ``GET /info`` and ``GET /metrics``."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.responses import json_response
from gateway.routes.common import runtime_of
from runtime.metrics import RUNS_ACTIVE, RUNS_PENDING


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
        "flags": {"assistants": True, "crons": True, "langsmith": False,
                  "langsmith_tracing_replicas": False},
        "host": {"kind": "self-hosted", "project_id": None, "host_revision_id": None,
                 "revision_id": None, "tenant_id": None},
    })


async def metrics(request: Request) -> Response:
    """``GET /metrics``: this process's Prometheus metrics (runtime/metrics.py), text format.
    Public, as ``/ok``: it names no thread, run or user."""
    manager = runtime_of(request).manager
    RUNS_ACTIVE.set(manager.active_count)
    RUNS_PENDING.set(await manager.pending_count())
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/ok", ok, methods=["GET"]), Route("/info", info, methods=["GET"]),
          Route("/metrics", metrics, methods=["GET"])]
