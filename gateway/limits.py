"""Request body size limit: a pure ASGI middleware that answers 413 before a large body is read.

``BodyLimit`` refuses a body larger than ``max_body_mb`` (gateway/settings.py, default 25 MB as
``client_max_body_size`` in nginx.conf) with 413 ``{"detail": "Request body larger than N MB"}``:

1. A ``Content-Length`` over the limit is refused at once: the application is never called
   and not one body byte is read (uvicorn stops reading the socket once its small buffer is
   full, and closes the connection after the response).
2. A chunked body (no ``Content-Length``) is counted as it streams through ``receive``: the
   chunk that crosses the limit raises ``BodyTooLarge`` inside the handler reading it (the one
   error table, gateway/errors.py, maps it to 413). At most the limit plus one chunk is ever
   held, never the rest of the body.
3. If the response has already started when the limit is crossed (a streaming handler that
   never reads its body), the client is treated as gone: ``receive`` answers
   ``http.disconnect``, as it would for a dropped connection.

Nothing here buffers: every message is passed on as it arrives.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import BodyTooLarge, error_response


class BodyLimit:
    """ASGI middleware bounding the request body of every HTTP request to ``max_body_bytes``."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _error(self) -> BodyTooLarge:
        return BodyTooLarge(self.max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _refuse(self._error(), scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    if started:  # too late for a 413 (point 3)
                        return {"type": "http.disconnect"}
                    raise self._error()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:  # raised outside the app's error handlers
            if started:
                raise
            await _refuse(exc, scope, receive, send)


async def _refuse(exc: BodyTooLarge, scope: Scope, receive: Receive, send: Send) -> None:
    """Send the 413 of gateway/errors.py's table. The unread body is left unread: uvicorn
    closes the connection after a response whose request body was not consumed."""
    response = error_response(exc)
    assert response is not None  # BodyTooLarge is in STATUS_BY_ERROR
    await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` as an int, or None when absent or unparsable (the
    server rejects a malformed one itself; a body is then counted as it streams)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
