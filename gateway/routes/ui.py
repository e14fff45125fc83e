"""``GET /ui``: the chat page (a React app using ``useStream``), served from ``ui/dist``.

The page is built by ``npm ci && npm run build`` in ``ui/`` (vite, ``base: "/ui/"``) and the
build output is committed, so serving it needs no Node. ``GATEWAY_UI_DIR`` points at another
build folder. ``/ui`` redirects to ``/ui/`` keeping the query string (``?thread=…``), so the
page's relative state survives. Without a build, ``/ui/`` answers 404 with a detail that says
how to build it.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.responses import json_response

UI_DIR = Path(os.environ.get("GATEWAY_UI_DIR") or Path(__file__).resolve().parents[2] / "ui/dist")


async def to_slash(request: Request) -> Response:
    """``/ui`` -> ``/ui/`` (same query string); a relative redirect, so proxies keep their host."""
    query = request.url.query
    return RedirectResponse("/ui/" + (f"?{query}" if query else ""), status_code=307)


async def not_built(request: Request) -> Response:
    """The page has not been built on this machine."""
    return json_response(
        {"detail": f"The chat page is not built ({UI_DIR} has no index.html): "
                   "run `npm ci && npm run build` in ui/."},
        status_code=404,
    )


def _page() -> BaseRoute:
    if (UI_DIR / "index.html").is_file():
        return Mount("/ui", app=StaticFiles(directory=UI_DIR, html=True), name="ui")
    return Mount("/ui", routes=[Route("/{path:path}", not_built, methods=["GET", "HEAD"])])


routes: list[BaseRoute] = [Route("/ui", to_slash, methods=["GET", "HEAD"]), _page()]
