"""Custom authentication: the user's ``langgraph_sdk.Auth`` object, as ``langgraph.json``'s
``"auth": {"path": "./auth.py:auth"}`` (or the same key in ``config.yaml``) names it.

``@auth.authenticate`` runs once per request on every route except the public ones (``/ok``,
``/info``, ``/metrics``, ``/openapi.json``, ``/docs``, ``/ui/*``, CORS preflights). Its
arguments are injected by parameter name, as the reference does: ``request``, ``path``,
``method``, ``path_params`` (``{}``: authentication runs before routing), ``query_params``,
``headers`` (``dict[bytes, bytes]``, lower-case keys), ``authorization`` (``str | None``),
``scope``, ``scopes`` (``[]``), ``user`` (None). It may be sync or async. It returns the user:
a string (the identity), a dict with ``identity`` (``permissions``, ``display_name``,
``is_authenticated`` and any extra fields), an object with ``.identity``, or a
``(permissions, user)`` tuple.

Refusals: ``Auth.exceptions.HTTPException`` passes through with its status, detail and headers,
whatever the status (the reference turns any status but 401/403 into a 500 text/plain,
which the JS SDK then retries); any other exception is a 401 ``Unauthorized`` (logged), since
an authenticate handler that fails has not authenticated anyone. Nothing of the request runs
after a refusal.

Differences from the reference, on purpose: there is no ``x-auth-scheme: langsmith``
(Studio) bypass; the identity is only what the handler returned, never a header.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread
from langgraph_sdk import Auth
from langgraph_sdk.auth.types import AuthContext
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.auth.api_keys import is_public
from gateway.errors import AuthRefused
from gateway.responses import json_response
from runtime.graphs import GraphLoadError, import_attr

logger = logging.getLogger(__name__)

SCOPE_KEY = "gateway.auth_user"
"""Where the authenticated user lives in the ASGI scope."""

_INJECTABLE = frozenset({"request", "path", "method", "path_params", "query_params", "headers",
                         "authorization", "user", "scopes", "scope", "body"})


ACTIONS = {
    "threads": ("create", "read", "update", "delete", "search", "create_run"),
    "assistants": ("create", "read", "update", "delete", "search"),
    "crons": ("create", "read", "update", "delete", "search"),
    "store": ("put", "get", "search", "delete", "list_namespaces"),
}
"""Every (resource, action) an endpoint authorizes (README "Authentication")."""


class AuthUser:
    """The authenticated user (``langgraph_sdk``'s ``BaseUser`` protocol): ``identity``,
    ``display_name``, ``is_authenticated``, ``permissions``, and the handler's extra fields as
    attributes and items (``user.org``, ``user["org"]``)."""

    __slots__ = ("identity", "display_name", "is_authenticated", "permissions", "_extra")

    def __init__(self, identity: str, *, permissions: Sequence[str] = (),
                 display_name: str | None = None, is_authenticated: bool = True,
                 extra: Mapping[str, Any] | None = None) -> None:
        self.identity = identity
        self.display_name = display_name if display_name is not None else identity
        self.is_authenticated = bool(is_authenticated)
        self.permissions = [str(p) for p in permissions]
        self._extra = dict(extra or {})

    def __getattr__(self, name: str) -> Any:
        try:
            return self._extra[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    def __iter__(self) -> Any:
        return iter(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """``{"identity", "is_authenticated", "display_name", "permissions", **extra}``: what
        a run's ``config.configurable.langgraph_auth_user`` holds."""
        return {**self._extra, "identity": self.identity,
                "is_authenticated": self.is_authenticated,
                "display_name": self.display_name, "permissions": list(self.permissions)}

    @classmethod
    def from_result(cls, result: Any) -> AuthUser:
        """Normalise what ``@auth.authenticate`` returned (module docstring).

        Raises:
            ValueError: no identity can be found in it.
        """
        permissions: Sequence[str] = ()
        if isinstance(result, tuple) and len(result) == 2:
            permissions, result = result
        if isinstance(result, str):
            return cls(result, permissions=permissions)
        if isinstance(result, Mapping):
            if not isinstance(result.get("identity"), str):
                raise ValueError("the user dict has no string 'identity'")
            extra = {k: v for k, v in result.items() if k not in
                     ("identity", "permissions", "display_name", "is_authenticated")}
            return cls(result["identity"],
                       permissions=result.get("permissions") or permissions,
                       display_name=result.get("display_name"),
                       is_authenticated=result.get("is_authenticated", True), extra=extra)
        identity = getattr(result, "identity", None)
        if isinstance(identity, str):
            return cls(identity, permissions=getattr(result, "permissions", None) or permissions,
                       display_name=getattr(result, "display_name", None),
                       is_authenticated=getattr(result, "is_authenticated", True))
        raise ValueError(f"authenticate returned {type(result).__name__}, not a user")


def current_user(request: Request) -> AuthUser | None:
    """The user ``@auth.authenticate`` returned for this request, or None without custom
    auth."""
    user = request.scope.get(SCOPE_KEY)
    return user if isinstance(user, AuthUser) else None


class CustomAuth:
    """A loaded ``Auth`` object: authentication and the authorization handler lookup.

    Raises (at construction):
        GraphLoadError: the path cannot be imported, does not name an ``Auth`` instance, has
            no ``@auth.authenticate`` handler, or that handler wants an argument the gateway
            cannot give.
    """

    def __init__(self, auth: Any) -> None:
        if not isinstance(auth, Auth):
            raise GraphLoadError(f"auth.path must name a langgraph_sdk.Auth instance, got "
                                 f"{type(auth).__name__}")
        handler = auth._authenticate_handler
        if handler is None:
            raise GraphLoadError("the Auth object has no @auth.authenticate handler")
        params = inspect.signature(handler).parameters
        unknown = [n for n, p in params.items() if n not in _INJECTABLE
                   and p.default is inspect.Parameter.empty
                   and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if unknown or "body" in params and params["body"].default is inspect.Parameter.empty:
            raise GraphLoadError(f"@auth.authenticate asks for {unknown or ['body']}: the "
                                 f"gateway can pass {sorted(_INJECTABLE - {'body'})}")
        self.auth = auth
        self._authenticate: Callable[..., Any] = handler
        self._wanted = [n for n in params if n in _INJECTABLE and n != "body"]
        self._is_async = inspect.iscoroutinefunction(handler)
        uncovered = self.uncovered()
        if uncovered:
            logger.warning("custom auth: no authorization handler covers %s; those requests "
                           "are allowed for any authenticated user",
                           ", ".join(f"{r}.{a}" for r, a in uncovered))

    def uncovered(self) -> list[tuple[str, str]]:
        """The ``(resource, action)`` pairs no handler covers (allowed, as the reference)."""
        return [(resource, action) for resource, actions in ACTIONS.items()
                for action in actions if self.handler_for(resource, action) is None]

    @classmethod
    def load(cls, path: str, base_dir: Path) -> CustomAuth:
        """Import ``"./auth.py:auth"`` (relative to ``base_dir``) or ``"pkg.module:auth"``.

        Raises:
            GraphLoadError: see the class docstring.
        """
        try:
            target = import_attr(path, base_dir)
        except GraphLoadError:
            raise
        except Exception as exc:  # the module itself failed to import
            raise GraphLoadError(f"{path}: importing it raised {exc!r}") from exc
        return cls(target)

    async def authenticate(self, scope: Scope) -> AuthUser:
        """Run ``@auth.authenticate`` for one request.

        Raises:
            AuthRefused: the handler raised (its status/detail/headers, or 401) or returned
                no user.
        """
        request = Request(scope)
        raw_headers = scope.get("headers", [])
        auth_header = next((v.decode("latin-1") for k, v in raw_headers
                            if k.lower() == b"authorization"), None)
        available: dict[str, Any] = {
            "request": request, "path": scope["path"], "method": scope["method"],
            "path_params": {}, "query_params": request.query_params,
            "headers": {k.lower(): v for k, v in raw_headers},
            "authorization": auth_header, "user": None, "scopes": [], "scope": scope,
        }
        kwargs = {name: available[name] for name in self._wanted}
        try:
            if self._is_async:
                result = await self._authenticate(**kwargs)
            else:
                result = await anyio.to_thread.run_sync(lambda: self._authenticate(**kwargs))
            return AuthUser.from_result(result)
        except Auth.exceptions.HTTPException as exc:
            raise AuthRefused(exc.status_code, str(exc.detail), dict(exc.headers or {})) \
                from exc
        except Exception as exc:
            logger.warning("@auth.authenticate failed on %s %s: %r", scope["method"],
                           scope["path"], exc)
            raise AuthRefused(401, "Unauthorized") from exc

    def handler_for(self, resource: str, action: str) -> Callable[..., Any] | None:
        """The most specific handler for ``(resource, action)`` (gateway/auth/authorize.py)."""
        handlers = self.auth._handlers
        for key in ((resource, action), (resource, "*"), ("*", action), ("*", "*")):
            found = handlers.get(key)
            if found:
                return found[-1]
        return self.auth._global_handlers[-1] if self.auth._global_handlers else None

    async def call_handler(self, handler: Callable[..., Any], user: AuthUser | None,
                           resource: str, action: str, value: dict[str, Any]) -> Any:
        """Call an authorization handler; its refusals become ``AuthRefused``.

        Raises:
            AuthRefused: the handler raised ``HTTPException`` (its status), failed an
                ``assert`` (403) or raised anything else (500, logged).
        """
        ctx = AuthContext(permissions=list(user.permissions) if user else [],
                          user=user,  # type: ignore[arg-type]
                          resource=resource, action=action)  # type: ignore[arg-type]
        try:
            return await handler(ctx=ctx, value=value)
        except Auth.exceptions.HTTPException as exc:
            raise AuthRefused(exc.status_code, str(exc.detail), dict(exc.headers or {})) \
                from exc
        except AssertionError as exc:
            raise AuthRefused(403, str(exc) or "Forbidden") from exc
        except Exception as exc:
            logger.exception("the auth handler for %s.%s raised", resource, action)
            raise AuthRefused(500, f"The auth handler for {resource}.{action} failed") from exc


class CustomAuthMiddleware:
    """ASGI middleware: authenticates every non-public request with ``custom`` and puts the
    user in the scope (``current_user``); a refusal is answered here, with nothing done."""

    def __init__(self, app: ASGIApp, custom: CustomAuth | None) -> None:
        self.app = app
        self.custom = custom

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.custom is None or scope["type"] != "http" or is_public(scope):
            await self.app(scope, receive, send)
            return
        try:
            user = await self.custom.authenticate(scope)
        except AuthRefused as exc:
            response = json_response({"detail": exc.detail}, exc.status, headers=exc.headers)
            await response(scope, receive, send)
            return
        scope[SCOPE_KEY] = user
        await self.app(scope, receive, send)
