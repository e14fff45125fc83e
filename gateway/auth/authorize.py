"""Authorization: runs the user's ``@auth.on...`` handlers for one endpoint's action.

Every protected endpoint calls ``authorize(request, resource, action, value)`` with the
LangGraph Platform's (resource, action, value) for that endpoint (the table in README
"Authentication"). The most specific handler registered on the ``langgraph_sdk.Auth`` object
runs, in the reference's order: ``(resource, action)``, ``(resource, "*")``, ``("*", action)``,
``("*", "*")``, the global ``@auth.on``; none registered means allowed.

The handler's result:

- ``None`` or ``True``: allowed, no filter;
- ``False``: 403 ``{"detail": "Forbidden"}``;
- a dict: an ``AuthFilter`` the caller enforces on the resource's metadata (threads,
  assistants, crons) or on a store item's value (store search); a resource it hides answers
  exactly as a missing one;
- a raised ``Auth.exceptions.HTTPException``: its status, detail and headers; a failed
  ``assert``: 403 with the assertion's message;
- anything else, or a filter the gateway cannot enforce: 500 naming the problem (fail
  closed).

Mutations the handler makes to ``value`` are kept: the caller reads ``value["metadata"]`` (or
``value["namespace"]`` for the store) back after the call, which is how an owner handler
stamps ``metadata.owner`` on what is created.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from gateway.auth.custom import CustomAuth, current_user
from gateway.errors import AuthRefused
from runtime.auth_filter import AuthFilter, AuthFilterError

__all__ = ["authorize", "auth_configured"]


def _custom(request: Request) -> CustomAuth | None:
    return getattr(request.app.state, "custom_auth", None)


def auth_configured(request: Request) -> bool:
    """True when a ``langgraph_sdk.Auth`` object guards this gateway."""
    return _custom(request) is not None


async def authorize(
    request: Request, resource: str, action: str, value: dict[str, Any],
) -> AuthFilter | None:
    """Run the handler for ``(resource, action)`` on ``value`` (mutated in place).

    Args:
        request: the current request (its authenticated user is read from the scope).
        resource: ``threads``, ``assistants``, ``crons`` or ``store``.
        action: ``create``, ``read``, ``update``, ``delete``, ``search``, ``create_run``,
            ``put``, ``get``, ``list_namespaces``.
        value: the endpoint's value dict (README "Authentication" lists them); handlers may
            mutate it.

    Returns:
        The filter to enforce, or None (no custom auth, no handler, or no filter).

    Raises:
        AuthRefused: the handler refused (403 ``Forbidden``, or the status it raised), or it
            returned something that cannot be enforced (500 naming it).
    """
    custom = _custom(request)
    if custom is None:
        return None
    handler = custom.handler_for(resource, action)
    if handler is None:
        return None
    user = current_user(request)
    result = await custom.call_handler(handler, user, resource, action, value)
    if result is None or result is True:
        return None
    if result is False:
        raise AuthRefused(403, "Forbidden")
    if isinstance(result, dict):
        try:
            return AuthFilter.parse(result)
        except AuthFilterError as exc:
            raise AuthRefused(500, f"Your auth handler returned an unsupported filter: {exc}") \
                from exc
    raise AuthRefused(500, "Auth handler returned invalid result. Expected filter dict, None, "
                           f"or boolean. Got {type(result)} instead.")
