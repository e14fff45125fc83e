"""A ``langgraph_sdk.Auth`` for the edge cases of tests/e2e/test_auth.py (the main isolation
tests use examples/auth.py, the worked example).

Tokens (``X-Api-Key`` or ``Authorization: Bearer``):

- ``alice``, ``bob``: users of those identities (a dict result with an extra ``org``);
- ``tuple-dave``: a ``(permissions, user)`` tuple; ``obj-erin``: an object with ``.identity``;
- ``teapot``: ``HTTPException(418)``, ``disabled``: 403 with a header; ``boom``: a plain error;
- every call appends the token to the file named by ``AUTH_CALLS_FILE``, when set, so a test
  can count how many requests a client sent.

Authorization: threads are visible to their ``owner`` and to listed ``participants``
(``$or`` + ``$contains``); ``threads.delete`` is refused with ``False`` unless the caller owns
the thread via the filter; crons and assistants use the owner filter; a ``weird`` permission
makes the thread handlers return a string (a bad result); ``ne`` makes them return ``$ne``.
"""

from __future__ import annotations

import os
from typing import Any

from langgraph_sdk import Auth

auth = Auth()


class _ObjUser:
    identity = "erin"
    permissions = ["p-obj"]
    display_name = "Erin Obj"
    is_authenticated = True


@auth.authenticate
def authenticate(headers: dict[bytes, bytes], authorization: str | None, path: str,
                 method: str) -> Any:
    token = headers.get(b"x-api-key", b"").decode()
    if not token and authorization and authorization.lower().startswith("bearer "):
        token = authorization[7:]
    calls = os.environ.get("AUTH_CALLS_FILE")
    if calls:
        with open(calls, "a") as f:
            f.write(f"{method} {path} {token}\n")
    if token in ("alice", "bob", "weird", "ne"):
        perms = ["weird"] if token == "weird" else ["ne"] if token == "ne" else ["rw"]
        return {"identity": token, "permissions": perms, "org": f"org-of-{token}",
                "teams": frozenset({"red"})}  # not JSON: the gateway encodes it
    if token == "tuple-dave":
        return (["p1", "p2"], "dave")
    if token == "obj-erin":
        return _ObjUser()
    if token == "teapot":
        raise Auth.exceptions.HTTPException(418, "I am a teapot")
    if token == "disabled":
        raise Auth.exceptions.HTTPException(403, "Account disabled", headers={"X-Why": "off"})
    if token == "boom":
        raise RuntimeError("the identity provider is down")
    raise Auth.exceptions.HTTPException(401, "Invalid token")


def _owner(ctx: Auth.types.AuthContext, value: Any) -> dict[str, Any]:
    if isinstance(value, dict) and isinstance(value.get("metadata"), dict):
        value["metadata"]["owner"] = ctx.user.identity
    return {"owner": ctx.user.identity}


@auth.on.threads
async def threads(ctx: Auth.types.AuthContext, value: Any) -> Any:
    if "weird" in ctx.permissions:
        return "not a filter"
    if "ne" in ctx.permissions:
        return {"owner": {"$ne": "nobody"}}
    if ctx.action in ("create", "create_run"):
        return _owner(ctx, value)
    if ctx.action == "delete":
        return {"owner": ctx.user.identity}
    return {"$or": [{"owner": ctx.user.identity},
                    {"participants": {"$contains": ctx.user.identity}}]}


@auth.on.threads.delete
async def no_delete_for_dave(ctx: Auth.types.AuthContext, value: Any) -> Any:
    if ctx.user.identity == "dave":
        return False
    return {"owner": ctx.user.identity}


@auth.on.crons
async def crons(ctx: Auth.types.AuthContext, value: Any) -> Any:
    return _owner(ctx, value)


@auth.on.assistants
async def assistants(ctx: Auth.types.AuthContext, value: Any) -> Any:
    return _owner(ctx, value)
