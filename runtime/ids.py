"""Identifiers and timestamps: UUIDv7 ids (as the reference generates) and ISO-8601 UTC times."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

_last_v7 = 0


def uuid7() -> str:
    """A UUIDv7 string: 48-bit unix ms, then random bits; strictly increasing in this process.

    Run and thread ids are UUIDv7 on LangGraph Platform, so ids sort by creation time.
    """
    global _last_v7
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a = rand >> 68  # 12 bits
    rand_b = rand & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0x2 << 62) | rand_b
    if value <= _last_v7:  # same ms and a smaller random part: keep ids increasing
        value = _last_v7 + 1
    _last_v7 = value
    return str(uuid.UUID(int=value))


def now_iso() -> str:
    """Current UTC time as ``2026-11-21T12:13:15.322693+00:00`` (the reference's format)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def is_uuid(value: str) -> bool:
    """True if ``value`` parses as a UUID (any version)."""
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True
