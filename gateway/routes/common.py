"""Request helpers shared by the route modules: the runtime, UUID path ids, query flags."""

from __future__ import annotations

import uuid

import anyio
from starlette.requests import Request

from gateway.errors import InvalidId
from runtime.core import Runtime
from runtime.webhooks.policy import check_url
from runtime.webhooks.sender import WebhookConfig


def runtime_of(request: Request) -> Runtime:
    """The runtime opened by the app's lifespan."""
    rt: Runtime = request.app.state.runtime
    return rt


def path_uuid(request: Request, name: str, kind: str) -> str:
    """The path parameter ``name`` as a canonical UUID string.

    Raises:
        InvalidId: not a UUID -> 422 ``Invalid <kind> ID: must be a UUID``.
    """
    try:
        return str(uuid.UUID(request.path_params[name]))
    except (ValueError, KeyError):
        raise InvalidId(kind) from None


def query_flag(request: Request, name: str, default: bool = False) -> bool:
    """A boolean query parameter: ``1``/``true``/``yes`` are true."""
    value = request.query_params.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


async def check_webhook(request: Request, url: str | None) -> None:
    """Check a run's or cron's ``webhook`` against the URL policy before anything is stored
    (runtime/webhooks/policy.py; DNS in a worker thread). Nothing to check when webhooks are
    disabled (``http.disable_webhooks``: the run runs, nothing is sent).

    Raises:
        WebhookRefused: the URL is not allowed -> 422 with the reason.
    """
    config: WebhookConfig = request.app.state.webhooks
    if url is None or config.disabled:
        return
    await anyio.to_thread.run_sync(check_url, url, config.policy)
