"""create_app(settings) -> the Starlette application: route table, CORS, errors, lifespan.

The lifespan opens the runtime (stores, graphs, recovery, scheduler) before the first request
and shuts it down in order (see ``runtime.core.open_runtime``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from gateway import openapi
from gateway.auth import PUBLIC_PATHS, ApiKeyAuth, CustomAuth, CustomAuthMiddleware
from gateway.errors import STATUS_BY_ERROR, handle_error
from gateway.limits import BodyLimit
from gateway.routes import assistants, crons, runs, store, system, threads, ui
from gateway.settings import Settings
from runtime.core import open_runtime

EXPOSED_HEADERS = ["content-location", "location", "x-pagination-total", "x-pagination-next"]
ALLOWED_HEADERS = ["content-type", "last-event-id", "x-api-key", "authorization"]


def begin_shutdown(app: Starlette) -> None:
    """Shutdown step 1: refuse new runs (503) from now on. Safe to call from a signal
    handler and before the runtime is open."""
    rt = getattr(app.state, "runtime", None)
    if rt is not None:
        rt.manager.begin_shutdown()


def create_app(settings: Settings) -> Starlette:
    """The gateway application for ``settings``."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(settings.runtime_config()) as rt:
            app.state.runtime = rt
            yield

    auth_path = settings.auth_path()
    custom_auth = CustomAuth.load(auth_path, settings.base_dir) if auth_path else None
    handlers = {cls: handle_error for cls, _ in STATUS_BY_ERROR}
    handlers[HTTPException] = handle_error
    handlers[Exception] = handle_error
    app = Starlette(
        routes=[*system.routes, *assistants.routes, *threads.routes, *crons.routes,
                *runs.routes, *store.routes, *openapi.routes, *ui.routes],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors.allow_origins,
                allow_methods=["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"],
                allow_headers=[*ALLOWED_HEADERS, *settings.cors.allow_headers],
                expose_headers=EXPOSED_HEADERS,
                max_age=600,
            ),
            # inside CORS, so a browser can read the 401 and 413 of a cross-origin request
            Middleware(ApiKeyAuth, keys=settings.api_keys()),
            Middleware(CustomAuthMiddleware, custom=custom_auth),
            Middleware(BodyLimit, max_body_bytes=round(settings.max_body_mb * 1024 * 1024)),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.custom_auth = custom_auth
    app.state.webhooks = settings.webhook_config()
    app.state.openapi = openapi.build_openapi(
        app.routes, "LangGraph run gateway",
        secured=bool(custom_auth is not None or settings.api_keys()), public=PUBLIC_PATHS)
    return app
