"""A worked ``langgraph_sdk.Auth`` for the gateway: bearer tokens, one owner per thread.

Serve it with ``auth: {path: ./examples/auth.py:auth}`` in ``config.yaml`` (or
``"auth": {"path": "./examples/auth.py:auth"}`` in ``langgraph.json``). Then:

    from langgraph_sdk import get_client
    alice = get_client(url=URL, headers={"Authorization": "Bearer alice-token"})
    bob = get_client(url=URL, api_key="bob-token")     # X-Api-Key works as well

What each part does:

- ``authenticate`` turns the token into a user (``identity``, ``permissions``, any extra
  field); an unknown token is a 401 with the detail given here. Tokens come from the
  environment variable ``EXAMPLE_AUTH_TOKENS`` (``token=identity,...``) so nothing secret sits
  in the code; the default holds the demo users alice, bob and carol (read-only).
- ``owner_only`` is the canonical owner handler: whatever is created gets
  ``metadata.owner = <identity>``, and the returned filter ``{"owner": <identity>}`` hides
  every other user's threads, runs and crons (they answer 404, and searches and counts leave
  them out). Users whose permissions lack ``write`` cannot create or change anything (403).
- ``own_namespace`` scopes the Store: every namespace a user names is placed under their
  identity, so ``["notes"]`` is ``["alice", "notes"]`` for alice and ``["bob", "notes"]``
  for bob, for put, get, delete, search and namespace listing alike. Graphs see the same store
  without this rewrite: a node that wants to write where the user reads writes under
  ``(config["configurable"]["langgraph_auth_user_id"], ...)``.
"""

from __future__ import annotations

import os
from typing import Any

from langgraph_sdk import Auth

auth = Auth()

DEMO_TOKENS = "alice-token=alice,bob-token=bob,carol-token=carol"
READ_ONLY = {"carol"}


def _tokens() -> dict[str, str]:
    pairs = (p.split("=", 1) for p in os.environ.get("EXAMPLE_AUTH_TOKENS", DEMO_TOKENS)
             .split(",") if "=" in p)
    return {token.strip(): identity.strip() for token, identity in pairs}


@auth.authenticate
async def authenticate(authorization: str | None,
                       headers: dict[bytes, bytes]) -> Auth.types.MinimalUserDict:
    """The user of a bearer token (``Authorization: Bearer`` or ``X-Api-Key``)."""
    token = None
    if authorization and authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
    elif b"x-api-key" in headers:
        token = headers[b"x-api-key"].decode()
    if not token:
        raise Auth.exceptions.HTTPException(401, "Missing token: send Authorization: Bearer")
    identity = _tokens().get(token)
    if identity is None:
        raise Auth.exceptions.HTTPException(401, "Invalid token")
    permissions = ["read"] if identity in READ_ONLY else ["read", "write"]
    return {"identity": identity, "permissions": permissions, "display_name": identity.title()}


WRITES = {"create", "update", "delete", "create_run"}


@auth.on
async def owner_only(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType:
    """Stamp the owner on what is created; show each user only what they own."""
    if ctx.action in WRITES and "write" not in ctx.permissions:
        raise Auth.exceptions.HTTPException(403, f"{ctx.user.identity} may not {ctx.action}")
    owner = {"owner": ctx.user.identity}
    if isinstance(value, dict) and isinstance(value.get("metadata"), dict):
        value["metadata"].update(owner)
    return owner


@auth.on.store
async def own_namespace(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Every store namespace lives under the caller's identity."""
    namespace = tuple(value.get("namespace") or ())
    if ctx.action == "put" and "write" not in ctx.permissions:
        raise Auth.exceptions.HTTPException(403, f"{ctx.user.identity} may not write")
    value["namespace"] = (ctx.user.identity, *namespace)
