"""The one table from errors to HTTP responses; every error body is ``{"detail": "..."}``.

Resolved by the exception's MRO, most specific class first. Anything unexpected becomes a
500 with a generic detail (and a logged traceback) — tests assert no request reaches it.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.responses import json_response
from runtime import errors as rt

logger = logging.getLogger(__name__)


class InvalidJson(Exception):
    """The request body is not valid JSON (or is empty where a body is required)."""


class InvalidField(Exception):
    """A request field failed validation; ``str(exc)`` names the field."""


class BodyTooLarge(Exception):
    """The request body is larger than ``max_body_mb`` (gateway/limits.py) -> 413."""

    def __init__(self, max_body_bytes: int) -> None:
        super().__init__(f"Request body larger than {max_body_bytes / (1024 * 1024):g} MB")
        self.max_body_bytes = max_body_bytes


class InvalidId(Exception):
    """A path id is not a UUID; ``kind`` is ``thread``, ``run`` or ``assistant``."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"Invalid {kind} ID: must be a UUID")


class AuthRefused(Exception):
    """An authentication or authorization handler refused the request (gateway/auth/):
    ``status`` and ``detail`` as the handler gave them (401, 403, or any status it raised;
    500 for a handler result the gateway cannot enforce), ``headers`` passed through."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


STATUS_BY_ERROR: list[tuple[type[BaseException], int]] = [
    (InvalidJson, 422),
    (InvalidField, 422),
    (InvalidId, 422),
    (BodyTooLarge, 413),
    (AuthRefused, 403),
    (rt.NothingToCancel, 404),
    (rt.NotFound, 404),
    (rt.Conflict, 409),
    (rt.InvalidRequest, 422),
    (rt.BadRequest, 400),
    (rt.Unavailable, 503),
]


def status_for(exc: BaseException) -> int | None:
    """HTTP status of a known error class, or None."""
    for cls in type(exc).__mro__:
        for known, status in STATUS_BY_ERROR:
            if cls is known:
                return status
    return None


def error_response(exc: BaseException) -> Response | None:
    """The ``{"detail"}`` response of a known error class, or None for an unexpected one."""
    if isinstance(exc, AuthRefused):
        return json_response({"detail": exc.detail}, exc.status, headers=exc.headers)
    status = status_for(exc)
    if status is None:
        return None
    return json_response({"detail": str(exc) if not isinstance(exc, InvalidJson) else
                          "Invalid JSON in request body"}, status)


async def handle_error(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for every error above and for HTTPException."""
    if isinstance(exc, HTTPException):
        return json_response({"detail": exc.detail}, exc.status_code, headers=exc.headers)
    response = error_response(exc)
    if response is None:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return json_response({"detail": "Internal server error"}, 500)
    return response
