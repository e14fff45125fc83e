"""runtime/serialization.py: event payloads are encoded once and kept in run logs for
``stream_retention_s``, so what ``dumps`` returns must hold no more memory than its bytes."""

from __future__ import annotations

import tracemalloc

import pytest

from runtime.serialization import dumps, loads

pytestmark = pytest.mark.timeout(20)


def _held_per_item(make: object, n: int) -> float:
    """Bytes still allocated per result after ``n`` calls of ``make(i)``, results kept."""
    assert callable(make)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [make(i) for i in range(n)]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(kept) == n
    return held / n


def test_a_small_event_holds_about_its_size() -> None:
    """orjson's own result of ``{"i": 1}`` held a 4 KB buffer; a run log keeps thousands."""
    assert loads(dumps({"i": 1})) == {"i": 1}
    assert _held_per_item(lambda i: dumps({"i": i}), 2000) < 200


def test_a_long_event_holds_about_its_size() -> None:
    """For a 30 KB string orjson held several times the output."""
    text = "x" * 30_000
    assert _held_per_item(lambda i: dumps({"text": text, "i": i}), 50) < 1.2 * 30_000
