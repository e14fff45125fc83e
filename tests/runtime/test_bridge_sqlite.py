"""Unit tests of the durable StreamBridge (runtime/bridge/sqlite.py): a run served from SQLite
after a restart follows the same cursor rules as the in-memory log (runtime/bridge/memory.py
invariant 5), the terminal ``error`` included."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from runtime.bridge.protocol import (
    FROM_START,
    LIVE,
    REPLAY,
    BridgeLimits,
    Cursor,
    parse_last_event_id,
)
from runtime.bridge.sqlite import SqliteStreamBridge
from runtime.types import StreamEvent, StreamGap


async def collect(bridge: SqliteStreamBridge, cursor: Cursor) -> list[StreamEvent | StreamGap]:
    with anyio.fail_after(5):
        return [item async for item in bridge.subscribe("r", cursor)]


@pytest.mark.anyio
@pytest.mark.timeout(20)
async def test_stored_failed_run_follows_the_error_rules(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    first = await SqliteStreamBridge.connect(path)
    first.open("r")
    published = [first.publish("r", "metadata", b'{"run_id":"r","attempt":1}'),
                 first.publish("r", "values", b'{"x":1}'),
                 first.publish("r", "error", b'{"error":"ValueError","message":"boom"}')]
    first.close("r")
    await first.aclose()

    second = await SqliteStreamBridge.connect(path)  # a restart: the log is only in SQLite
    try:
        assert not second.has("r")
        assert await collect(second, FROM_START) == published
        assert await collect(second, REPLAY) == published[:2]
        assert published[0] is not None
        assert await collect(second, parse_last_event_id(published[0].id)) == published[1:]
        assert await collect(second, LIVE) == []
        assert await collect(second, (2**63 - 1, 2**63 - 1)) == []
    finally:
        await second.aclose()


@pytest.mark.anyio
@pytest.mark.timeout(20)
async def test_stored_log_is_bounded_like_the_memory_log(tmp_path: Path) -> None:
    """Rows the in-memory log dropped are deleted from SQLite too; a replay from before the
    first stored row says so with a gap."""
    path = tmp_path / "events.sqlite"
    first = await SqliteStreamBridge.connect(path, BridgeLimits(max_bytes_per_run=1000))
    first.open("r")
    published = [first.publish("r", "custom", b'"' + b"x" * 398 + b'"') for _ in range(10)]
    first.close("r")
    await first.aclose()
    second = await SqliteStreamBridge.connect(path)
    try:
        got = await collect(second, FROM_START)
        kept = [e for e in published if e is not None][-2:]  # 2 x 400 bytes fit in 1000
        assert got == [StreamGap("-1", kept[0].id, 8), *kept]
        assert await collect(second, parse_last_event_id(kept[0].id)) == kept[1:]
    finally:
        await second.aclose()
