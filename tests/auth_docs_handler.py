"""The LangGraph docs' canonical owner handler, verbatim (``@auth.on`` ``add_owner``), with a
token authenticator: tests/e2e/test_auth_cases.py checks that every SDK call works under it
(it calls ``value.setdefault("metadata", {}).update(...)`` on every value, so a value whose
``metadata`` is None would break it)."""

from __future__ import annotations

from langgraph_sdk import Auth

auth = Auth()


@auth.authenticate
async def get_current_user(authorization: str | None) -> Auth.types.MinimalUserDict:
    if not authorization or not authorization.startswith("Bearer "):
        raise Auth.exceptions.HTTPException(status_code=401, detail="Invalid token")
    # "Bearer alice" and "Bearer alice-token" are both alice (the latter as examples/auth.py)
    return {"identity": authorization[7:].removesuffix("-token"), "is_authenticated": True}


@auth.on
async def add_owner(ctx: Auth.types.AuthContext, value: dict) -> dict:  # type: ignore[type-arg]
    """Make resources private to their creator."""
    filters = {"owner": ctx.user.identity}
    metadata = value.setdefault("metadata", {})
    metadata.update(filters)
    return filters
