"""The StreamBridge Protocol: per-run event logs fanned out to any number of subscribers.

What every implementation (``memory``, ``sqlite``, and the cross-process ones to come) shares:
the cursor vocabulary of ``Last-Event-ID``, the bounds, and the interface the run manager, the
thread state and the HTTP edge talk to. Invariants every implementation keeps (design.md 4.4,
4.5; runtime/bridge/memory.py spells them out):

1. A run's log is opened at admission, before the run starts; nothing published is lost.
2. Every event has an id ``"<ms>-<seq>"``, unique and strictly increasing within its run.
3. ``publish`` never waits on a consumer; a reader that falls out of the bounded log gets a
   ``StreamGap``, never a silent partial replay.
4. A closed log ends every subscription once drained; an aborted one raises ``StreamAborted``.
5. Where a subscription starts and whether it sees the terminal ``error`` depend on the
   cursor (``FROM_START``, ``(ms, seq)``, ``REPLAY`` withholds an ``error`` already logged,
   ``LIVE``): the table in runtime/bridge/memory.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from runtime.types import StreamEvent, StreamGap

FROM_START: Literal["start"] = "start"
REPLAY: Literal["replay"] = "replay"
LIVE: Literal["live"] = "live"
Cursor = tuple[int, int] | Literal["start", "replay", "live"]
_MAX_ID_PART = 2**63 - 1  # ids are stored as SQLite INTEGERs (bridge: sqlite)


def parse_last_event_id(value: str | None) -> Cursor:
    """Cursor for a ``Last-Event-ID`` header value.

    ``None``/empty -> ``LIVE``: the caller decides what a client that sent no id gets (a run
    join replays from the start, the thread stream is live). ``"-1"``/``"0"`` -> ``REPLAY``;
    ``"<ms>-<seq>"`` or ``"<ms>"`` -> events strictly after that id (invariant 5).

    Raises:
        ValueError: a value of neither form, or a part above ``2**63 - 1``.
    """
    if value is None or value.strip() == "":
        return LIVE
    value = value.strip()
    if value in ("-1", "0"):
        return REPLAY
    ms_text, sep, seq_text = value.partition("-")
    if not (ms_text.isascii() and ms_text.isdigit()) or (
            sep and not (seq_text.isascii() and seq_text.isdigit())):
        raise ValueError(f"invalid Last-Event-ID {value!r}")
    ms, seq = int(ms_text), int(seq_text) if sep else -1
    if ms > _MAX_ID_PART or seq > _MAX_ID_PART:
        raise ValueError(f"invalid Last-Event-ID {value!r}: out of range")
    return (ms, seq)


class StreamAborted(Exception):
    """The run's log was aborted (shutdown): the subscriber must not treat it as the end."""



@dataclass(frozen=True, slots=True)
class BridgeLimits:
    """Bounds of every bridge's logs.

    Attributes:
        max_events_per_run: events retained per run; older ones are dropped (gap on resume).
        retention_s: seconds a finished run's log is kept for joins and resumes.
        max_bytes_per_run: payload bytes retained per run, the same way: a run whose events
            are large (``messages`` mode re-sends the whole message so far with every token)
            would otherwise hold ``max_events_per_run`` copies of it.
    """

    max_events_per_run: int = 10_000
    retention_s: float = 120.0
    max_bytes_per_run: int = 64 * 1024 * 1024


class StreamBridge(Protocol):
    """The interface of a bridge (``runtime.bridge.memory.MemoryStreamBridge`` documents each
    method's contract in full)."""

    limits: BridgeLimits

    def open(self, run_id: str, thread_id: str | None = None) -> None:
        """Open the run's log (idempotent), at admission."""

    def has(self, run_id: str) -> bool:
        """True while this process holds the run's log."""

    def publish(self, run_id: str, event: str, data: bytes) -> StreamEvent | None:
        """Append one event (never waits); None if the log is closed or gone."""

    def publish_thread(self, thread_id: str, event: str, data: bytes) -> None:
        """Append to the thread's log only (``state_update``), if it is watched."""

    def subscribe(
        self, run_id: str, cursor: Cursor = FROM_START
    ) -> AsyncIterator[StreamEvent | StreamGap]:
        """The run's events after ``cursor``, then live ones, until the log closes."""

    def subscribe_thread(
        self, thread_id: str, cursor: Cursor = LIVE
    ) -> AsyncIterator[StreamEvent | StreamGap]:
        """Endless stream of every run of the thread, while subscribed."""

    def close(self, run_id: str) -> None:
        """End the run's stream (subscribers finish after draining)."""

    def abort(self, run_id: str) -> None:
        """End the run's stream without an end (shutdown): readers raise StreamAborted."""

    def discard(self, run_id: str) -> None:
        """Close and drop the log at once (a deleted or rolled-back run)."""


class SharedStreamBridge(StreamBridge, Protocol):
    """A bridge whose streams every process of a deployment reads (Redis:
    ``runtime.bridge.redis.RedisStreamBridge`` documents each method): what the cluster run
    manager needs beyond ``StreamBridge``."""

    async def announce(self, run_id: str, timeout_s: float = 2.0) -> bool:
        """Make a new run's stream exist before any process executes it (at admission)."""

    async def prepare_open(self, run_id: str, timeout_s: float = 2.0) -> None:
        """Before ``open`` of a run that may have run elsewhere: ids above the old stream's."""

    async def end_stream(self, run_id: str, *, aborted: bool = False) -> None:
        """End the stream of a run this process does not hold (a dead owner's)."""

    def set_fence(self, may_write: Callable[[str], bool]) -> None:
        """Drop the queued writes of every run for which ``may_write(run_id)`` is False."""

    def forget(self, run_id: str) -> None:
        """Drop the run's local log and queued writes, writing nothing (taken over)."""
