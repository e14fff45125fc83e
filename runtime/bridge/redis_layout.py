"""The Redis key layout of ``RedisStreamBridge``: one Redis Stream per run, its entries and its
markers, shared by the writer (runtime/bridge/redis.py, redis_writer.py) and the reader
(runtime/bridge/redis_reader.py).

Key layout (``key_prefix`` defaults to ``gw:``):

``<prefix>run:<run_id>``: a Redis Stream, one entry per event, with the EXPLICIT id
    ``<ms>-<seq>`` of the event (so a ``Last-Event-ID`` is a Redis id) and the fields
    ``event`` (the SSE event name) and ``data`` (the payload bytes). Besides events:
    a start marker ``<ms>-0 {start: 1}`` written by ``open`` (below every event id of that
    attempt: a join between ``open`` and the first event waits instead of ending; ``announce``
    writes one at admission for a run another process may execute), and one end
    marker ``<ms>-<last seq + 1> {end: closed|aborted}`` written by ``close`` / ``abort`` /
    ``discard`` (or with a Redis-made id by ``end_stream``, for a run whose owner died).
    While the run is live the key has a rolling TTL of ``live_ttl_s`` (refreshed with every
    batch and every ``live_ttl_s / 4`` for every open run, so a crashed owner's stream still
    expires); after the end marker, ``retention_s``.
"""

from __future__ import annotations

# the fields of a stream entry, and the two values of an end marker
_FIELD_EVENT, _FIELD_DATA, _FIELD_END, _FIELD_START = b"event", b"data", b"end", b"start"
_CLOSED, _ABORTED = b"closed", b"aborted"


def _parse_id(raw: bytes | str) -> tuple[int, int]:
    """A stream entry id ``<ms>-<seq>`` as ``(ms, seq)`` (a bare ``<ms>`` is seq 0)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _fields(flat: list[bytes]) -> dict[bytes, bytes]:
    """An entry's flat ``[field, value, ...]`` reply as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
