"""SSE responses of run streams: sse-starlette's EventSourceResponse with the protocol's framing.

Frame (protocol.md section 4): ``event: <name>\\r\\ndata: <json>\\r\\nid: <ms>-<seq>\\r\\n\\r\\n``;
``data`` is compact one-line JSON, so the frame is assembled by concatenation (the payload was
encoded once by the runtime). The stream ends by closing the body; there is no ``end`` event.

Deliberate differences from the reference (protocol.md section 10):
1. Every event carries ``id:``.
2. A ``Last-Event-ID`` older than the retained log yields ``event: gap``
   ``{"requested_id", "first_id", "dropped"}`` before the replay continues.
3. The heartbeat is the comment line ``: heartbeat`` without a blank line after it, so the JS
   SDK never dispatches a phantom empty event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import orjson
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Message

from gateway.errors import InvalidField
from runtime.metrics import STREAMS_OPEN
from runtime.serialization import dumps
from runtime.types import StreamEvent, StreamGap


class _Heartbeat(ServerSentEvent):
    """The keep-alive comment, sent without a dispatching blank line."""

    def encode(self) -> bytes:
        return b": heartbeat\r\n"


def encode_event(event: StreamEvent) -> bytes:
    """One SSE frame: event, data, id, blank line (CRLF)."""
    return (
        b"event: " + event.event.encode() + b"\r\ndata: " + event.data + b"\r\nid: "
        + event.id.encode() + b"\r\n\r\n"
    )


def encode_plain(name: str, payload: Any) -> bytes:
    """A frame without an id (errors of a stream that has no run log)."""
    return b"event: " + name.encode() + b"\r\ndata: " + dumps(payload) + b"\r\n\r\n"


def encode_gap(gap: StreamGap) -> bytes:
    """The ``gap`` frame (difference 2)."""
    return encode_plain("gap", {"requested_id": gap.requested_id, "first_id": gap.first_id,
                                "dropped": gap.dropped})


def parse_stream_modes(values: list[str]) -> set[str] | None:
    """``stream_mode`` query values -> the set of modes to keep, or None for all.

    Accepts repeated parameters (Python SDK) and a JSON array string (JS SDK).

    Raises:
        InvalidField: a value starting with ``[`` that is not a JSON array of strings
            (``[[[...`` thousands deep used to raise RecursionError, a 500) -> 422.
    """
    modes: set[str] = set()
    for value in values:
        value = value.strip()
        if value.startswith("["):
            try:
                parsed = orjson.loads(value)  # iterative: depth cannot exhaust the stack
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
                raise InvalidField("stream_mode: expected a JSON array of strings")
            modes.update(v for v in parsed if v)
        elif value:
            modes.update(v.strip() for v in value.split(",") if v.strip())
    return modes or None


def keeps(modes: set[str] | None, event_name: str) -> bool:
    """True if an event named ``event_name`` passes the ``stream_mode`` filter."""
    if modes is None:
        return True
    base = event_name.split("|", 1)[0]
    if base in ("error", "gap"):
        return True
    if base.startswith("messages"):
        return "messages" in modes or "messages-tuple" in modes
    return base in modes


async def frames(
    events: AsyncIterator[StreamEvent | StreamGap], modes: set[str] | None = None
) -> AsyncIterator[bytes]:
    """SSE frames of a subscription, filtered by ``modes``."""
    async for item in events:
        if isinstance(item, StreamGap):
            yield encode_gap(item)
        elif keeps(modes, item.event):
            yield encode_event(item)


async def _counted(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``body``, counted in ``gateway_streams_open`` while it is being sent."""
    STREAMS_OPEN.inc()
    try:
        async for chunk in body:
            yield chunk
    finally:
        STREAMS_OPEN.dec()


def sse_response(
    body: AsyncIterator[bytes],
    *,
    headers: Mapping[str, str] | None = None,
    ping_interval_s: float = 5.0,
    on_client_close: Callable[[], Awaitable[None]] | None = None,
) -> EventSourceResponse:
    """An SSE response streaming ``body`` (already framed), with heartbeats.

    Args:
        on_client_close: awaited when the client disconnects (``on_disconnect=cancel``,
            ``cancel_on_disconnect``); not called when the stream ends normally.
    """

    async def closed(_: Message) -> None:
        if on_client_close is not None:
            await on_client_close()

    return EventSourceResponse(
        _counted(body),
        headers=dict(headers or {}),
        ping=ping_interval_s,
        ping_message_factory=lambda: _Heartbeat(),
        sep="\r\n",
        client_close_handler_callable=closed if on_client_close else None,
    )
