"""JSON responses encoded with orjson (compact, like the reference server)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from runtime.serialization import dumps


def json_response(
    content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A compact JSON response of ``content`` (any value ``runtime.serialization`` encodes)."""
    return Response(dumps(content), status_code, headers=headers, media_type="application/json")


def raw_json_response(
    body: bytes, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response of bytes that are already JSON (encode-once results)."""
    return Response(body, status_code, headers=headers, media_type="application/json")
