"""API-key authentication, the built-in simple mode (``auth: {api_keys: [...]}``; issue 13).

With keys configured, every request needs one of them, as the official SDKs send it:
``X-Api-Key: <key>`` (``get_client(api_key=...)``, ``new Client({apiKey})``) or
``Authorization: Bearer <key>``. A request without a valid key gets 401
``{"detail": "..."}`` with ``WWW-Authenticate: Bearer``, and nothing else happens. Keys are
compared in constant time.

Public, as in the reference: ``/ok``, ``/info``, ``/metrics`` (they name no thread, run or
user), ``/openapi.json``, ``/docs``, the chat page's static files under ``/ui``, and CORS
preflights (``OPTIONS``). Keys come from ``config.yaml`` / ``langgraph.json``
(``auth.api_keys``; an entry may be a ``${{ env.NAME }}`` template) and from the environment
variable ``GATEWAY_API_KEYS`` (comma-separated), which is added to them.

Every key here is the same, all-powerful user; per-user identities and authorization come
from a ``langgraph_sdk.Auth`` object (gateway/auth/custom.py), which can sit beside the keys:
the key is checked first, then the handler.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.responses import json_response

PUBLIC_PATHS = frozenset({"/ok", "/info", "/metrics", "/openapi.json", "/docs"})


def is_public(scope: Scope) -> bool:
    """True for the requests no authentication guards (module docstring)."""
    path = scope["path"]
    return (scope["method"] == "OPTIONS" or path in PUBLIC_PATHS or path == "/ui"
            or path.startswith("/ui/"))


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class ApiKeyAuth:
    """ASGI middleware requiring one of ``keys`` (module docstring); no keys: no check."""

    def __init__(self, app: ASGIApp, keys: tuple[str, ...]) -> None:
        self.app = app
        self.keys = tuple(k.encode() for k in keys if k)

    def _valid(self, presented: str) -> bool:
        given = presented.encode()
        ok = False
        for key in self.keys:  # no early exit: the time does not tell which key matched
            ok |= hmac.compare_digest(given, key)
        return ok and bool(given)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.keys or scope["type"] != "http" or is_public(scope):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        presented = headers.get("x-api-key") or _bearer(headers.get("authorization", ""))
        if self._valid(presented):
            await self.app(scope, receive, send)
            return
        detail = "Invalid API key" if presented else (
            "Missing API key: send X-Api-Key (or Authorization: Bearer)")
        response = json_response({"detail": detail}, 401,
                                  headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)
