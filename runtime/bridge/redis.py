"""RedisStreamBridge: the in-memory bridge plus one Redis Stream per run, so that N gateway
processes share run streams (``redis_url``; design.md 9, scale-out.md (b) step 8).

What it owns: the Redis copy of every run log this process publishes, and the reading of run
logs that other processes publish. The process that executes a run publishes into its local
in-memory log (``MemoryStreamBridge``: local subscribers are served from memory with no Redis
round trip) and a flusher task (``run``) copies each event into Redis in pipelined batches. A
subscription to a run that is not in local memory reads the run's Redis Stream: replay after
the cursor, then live, until the end marker.

Key layout (``key_prefix`` defaults to ``gw:``):

``<prefix>run:<run_id>``: a Redis Stream, one entry per event, with the EXPLICIT id
    ``<ms>-<seq>`` of the event (so a ``Last-Event-ID`` is a Redis id) and the fields
    ``event`` (the SSE event name) and ``data`` (the payload bytes). Besides events:
    a start marker ``<ms>-0 {start: 1}`` written by ``open`` (below every event id of that
    attempt: a join between ``open`` and the first event waits instead of ending), and one end
    marker ``<ms>-<last seq + 1> {end: closed|aborted}`` written by ``close`` / ``abort`` /
    ``discard``. While the run is live the key has a rolling TTL of ``live_ttl_s`` (refreshed
    with every batch and every ``live_ttl_s / 4`` for every open run, so a crashed owner's
    stream still expires); after the end marker, ``retention_s``.

Reader design: ONE ``XREAD BLOCK`` PER SUBSCRIPTION with a short block (``block_ms``): each
remote subscriber holds one pooled connection while it waits. The next step is one reader task
per process that multiplexes every locally watched stream in a single ``XREAD`` (scale-out.md
5.2: one XREAD reads many keys) and fans entries out to local cursors.

Invariants (in addition to runtime/bridge/memory.py's, which local subscribers get unchanged):
1. The stored log is the latest attempt's: ``open`` of a run this process does not hold deletes
   the run's stream first (a run re-executed after a crash), as sqlite.py invariant 1.
2. Redis holds exactly what the local log holds: events the local log has dropped
   (``max_events_per_run`` or ``max_bytes_per_run``) are trimmed from the stream with an exact
   ``XTRIM MINID <first retained id>`` at the next batch; ``XADD MAXLEN ~ max_events_per_run``
   bounds it too when the local log is gone. So the stream is bounded in bytes as the memory
   log is (the newest event always stays, plus the markers).
3. Ordering: Redis ops (delete + start marker, events, end marker, trims, TTLs) are queued in
   the order ``open``/``publish``/``close`` happened and sent in that order on one pipeline.
4. ``publish`` never waits and never raises because of Redis (design.md 4.5): it appends to
   memory and to the queue. The flusher logs a failed batch and retries it with a backoff; when
   Redis stays away and more than ``max_queued`` ops are waiting, the oldest are dropped (with a
   warning): a remote reader then sees a gap.
5. A remote reader never hangs: it ends at the end marker (``StreamAborted`` on ``aborted``);
   an unknown or expired stream yields nothing at once; a stream that disappears under a live
   reader (Redis flushed or restarted, TTL expired after the owner died) ends the reader with
   a ``StreamGap`` (``first_id`` None, ``dropped`` None) once it has been gone for
   ``gone_grace_s``; a stream that comes back (the owner publishes again after a flush) is
   followed on, with a ``StreamGap`` for the events lost (``seq`` is the 1-based position, so
   a jump is an exact count).
6. Remote readers follow memory.py invariant 5's cursor table, with a gap when the requested
   id was trimmed (the first retained entry's seq > requested seq + 1) and the ``REPLAY`` rule:
   an ``error`` entry already in the stream when the subscription starts is withheld.

Limits:
1. ``subscribe_thread`` / ``publish_thread`` (``GET /threads/{id}/stream``) stay process-local
   (inherited from memory): a thread stream sees only the runs executed by its own process.
2. A remote subscription's start position is fixed when it starts iterating (its first Redis
   read), not when ``subscribe`` is called (memory fixes it at the call): for ``LIVE`` and for
   what ``REPLAY`` counts as "already logged".
3. An id above the newest entry resumes from the newest entry (as memory's ``min(seq, end)``);
   an id from an earlier attempt (lower than every entry) replays the whole stream.
4. A remote join of an aborted run (before it is re-opened elsewhere) replays it and raises
   ``StreamAborted`` (memory forgets an aborted log at once: a local join yields nothing); the
   client reconnects, which is what an abort asks of it.
5. Nothing fences a stale owner's writes yet (scale-out.md (b) step 6): a zombie's ``XADD`` of
   an id at or below the stream's top is refused by Redis and logged at debug level.

Deliberate differences from the reference:
1. Ids are today's ``<ms>-<seq>`` given explicitly to ``XADD`` (the reference's v2 streams use
   Redis-generated ids), so a ``Last-Event-ID`` from any process is a Redis id and a gap is
   counted exactly.
2. A trimmed ``Last-Event-ID`` yields an explicit gap (memory.py difference 2), never a silent
   replay from the first retained entry (what ``XREAD`` alone would do).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, Protocol, overload

import anyio
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from runtime.bridge.memory import MemoryStreamBridge
from runtime.bridge.protocol import FROM_START, LIVE, REPLAY, BridgeLimits, Cursor, StreamAborted
from runtime.types import StreamEvent, StreamGap

logger = logging.getLogger(__name__)

_READ_COUNT = 512  # entries per XREAD
_FIELD_EVENT, _FIELD_DATA, _FIELD_END, _FIELD_START = b"event", b"data", b"end", b"start"
_CLOSED, _ABORTED = b"closed", b"aborted"

# queued ops, in order (invariant 3)
_Reset = tuple[Literal["reset"], str, str]  # DEL + start marker id
_Add = tuple[Literal["add"], str, StreamEvent]
_End = tuple[Literal["end"], str, str, bytes]  # marker id, closed/aborted
_Discard = tuple[Literal["discard"], str, str]  # DEL + end marker id
_Op = _Reset | _Add | _End | _Discard


def _parse_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class _OpenRun(Protocol):
    def __call__(self, run_id: str, thread_id: str | None = None) -> None: ...


class _OpenMethod:
    """``open`` is two things: on the class, ``RedisStreamBridge.open(url, limits,
    key_prefix=...)`` is ``connect`` (an async context manager, the runtime's call); on an
    instance, ``bridge.open(run_id, thread_id)`` is the StreamBridge method (``open_run``)."""

    @overload
    def __get__(
        self, obj: None, owner: type[RedisStreamBridge]
    ) -> Callable[..., AbstractAsyncContextManager[RedisStreamBridge]]: ...

    @overload
    def __get__(self, obj: RedisStreamBridge, owner: type[Any] | None = None) -> _OpenRun: ...

    def __get__(
        self, obj: RedisStreamBridge | None, owner: type[Any] | None = None
    ) -> Callable[..., AbstractAsyncContextManager[RedisStreamBridge]] | _OpenRun:
        if obj is None:
            assert owner is not None
            connect: Callable[..., AbstractAsyncContextManager[RedisStreamBridge]]
            connect = owner.connect
            return connect
        return obj.open_run


class RedisStreamBridge(MemoryStreamBridge):
    """Cross-process StreamBridge (``redis_url``). Run ``run`` in the runtime's task group.

    Args:
        client: a ``redis.asyncio.Redis`` (bytes responses: ``decode_responses=False``).
        limits: the bounds of every log, local and in Redis.
        key_prefix: prefix of every key (the key layout is in the module docstring).
        live_ttl_s: TTL of a live run's stream (default ``max(4 x retention_s, 60)``).
        block_ms: how long one remote reader's ``XREAD`` blocks before it checks that its
            stream still exists.
        gone_grace_s: how long a remote reader waits for its vanished stream to come back
            before it ends with a gap (invariant 5).
        max_queued: ops kept for Redis while it is unreachable (invariant 4).
    """

    open = _OpenMethod()

    def __init__(
        self, client: aioredis.Redis, limits: BridgeLimits | None = None, *,
        key_prefix: str = "gw:", live_ttl_s: float | None = None, block_ms: int = 1000,
        gone_grace_s: float = 5.0, max_queued: int = 200_000,
    ) -> None:
        super().__init__(limits)
        self._redis = client
        self.key_prefix = key_prefix
        self.live_ttl_s = live_ttl_s if live_ttl_s is not None else max(
            4 * self.limits.retention_s, 60.0)
        self.block_ms = block_ms
        self.gone_grace_s = gone_grace_s
        self.max_queued = max_queued
        self._ops: list[_Op] = []
        self._trimmed: dict[str, int] = {}  # run_id -> local log base already trimmed in Redis
        self._wake = anyio.Event()
        self._lock = anyio.Lock()
        self._retry_s = 0.0

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, url: str, limits: BridgeLimits, *, key_prefix: str = "gw:", **options: Any
    ) -> AsyncIterator[RedisStreamBridge]:
        """The bridge on a connection pool to ``url`` (``redis://host:port/db``).

        On exit, what is queued is flushed (for at most 5 s) and the pool is closed. Also
        reachable as ``RedisStreamBridge.open(url, limits, key_prefix=...)``.

        Raises:
            redis.exceptions.ConnectionError: Redis is not reachable at start-up.
        """
        client = aioredis.from_url(url, decode_responses=False)
        try:
            await client.ping()
            bridge = cls(client, limits, key_prefix=key_prefix, **options)
            try:
                yield bridge
            finally:
                with anyio.move_on_after(5, shield=True):
                    try:
                        await bridge.flush()
                    except RedisError:
                        logger.exception("flushing stream events to Redis at close failed")
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    def key(self, run_id: str) -> str:
        """The Redis key of the run's stream."""
        return f"{self.key_prefix}run:{run_id}"

    # ---- writing ------------------------------------------------------------------------------

    def open_run(self, run_id: str, thread_id: str | None = None) -> None:
        """Open the run's log; a run this process does not hold yet gets a fresh Redis stream
        (its old one, a crashed attempt's, is deleted first: invariant 1)."""
        if not self.has(run_id):
            self._queue(("reset", run_id, f"{self._now_ms()}-0"))
            self._trimmed.pop(run_id, None)
        super().open(run_id, thread_id)

    def publish(self, run_id: str, event: str, data: bytes) -> StreamEvent | None:
        """Publish in memory and queue the event for Redis (never waits, never raises)."""
        item = super().publish(run_id, event, data)
        if item is not None:
            self._queue(("add", run_id, item))
        return item

    def close(self, run_id: str) -> None:
        """End the run's stream: locally, and with an end marker and ``retention_s`` TTL."""
        log = self._logs.get(run_id)
        if log is not None and not log.closed:
            self._queue(("end", run_id, f"{self._now_ms()}-{log.end + 1}", _CLOSED))
        super().close(run_id)

    def abort(self, run_id: str) -> None:
        """End the run's stream without an end: readers everywhere raise ``StreamAborted``."""
        log = self._logs.get(run_id)
        if log is not None and not log.closed:
            self._queue(("end", run_id, f"{self._now_ms()}-{log.end + 1}", _ABORTED))
        super().abort(run_id)

    def discard(self, run_id: str) -> None:
        """Close and drop the log at once: the Redis stream is replaced by a bare end marker,
        so remote readers end and later joins get nothing."""
        log = self._logs.get(run_id)
        if log is not None:
            self._queue(("discard", run_id, f"{self._now_ms()}-{log.end + 1}"))
        super().discard(run_id)

    def _queue(self, op: _Op) -> None:
        self._ops.append(op)
        if len(self._ops) > self.max_queued:
            drop = len(self._ops) - self.max_queued
            logger.warning("Redis unreachable: dropping %d queued stream ops (run_id %s ...)",
                           drop, self._ops[0][1])
            del self._ops[:drop]
        self._wake.set()

    async def run(self) -> None:
        """The flusher: send what is queued as soon as it is queued (one pipeline per batch:
        what accumulates while a batch is in flight makes the next one), and refresh the TTL of
        every open run's stream every ``live_ttl_s / 4``. Never returns; cancel it to stop."""
        refresh_every = self.live_ttl_s / 4
        next_refresh = time.monotonic() + refresh_every
        while True:
            with anyio.move_on_after(max(0.0, next_refresh - time.monotonic())):
                await self._wake.wait()
            self._wake = anyio.Event()
            try:
                await self.flush()
                if time.monotonic() >= next_refresh:
                    await self._refresh_ttls()
                    next_refresh = time.monotonic() + refresh_every
                self._retry_s = 0.0
            except Exception:  # Redis is a cache: never stop the runs (invariant 4)
                self._retry_s = min(max(0.1, self._retry_s * 2), 2.0)
                logger.exception("writing stream events to Redis failed; retrying in %.1f s",
                                 self._retry_s)
                await anyio.sleep(self._retry_s)
                self._wake.set()

    async def _refresh_ttls(self) -> None:
        live = [run_id for run_id, log in self._logs.items() if not log.closed]
        if not live:
            return
        ttl_ms = int(self.live_ttl_s * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for run_id in live:
                pipe.pexpire(self.key(run_id), ttl_ms)
            await pipe.execute()

    async def flush(self) -> None:
        """Send every queued op now, in order (one pipeline).

        Raises:
            redis.exceptions.RedisError: the batch did not reach Redis; it is queued again.
        """
        async with self._lock:
            ops, self._ops = self._ops, []
            if not ops:
                return
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    trims: dict[str, int] = {}
                    labels = self._build(pipe, ops, trims)
                    results = await pipe.execute(raise_on_error=False)
            except BaseException:
                self._ops[:0] = ops  # sent again: a repeated XADD is refused, harmlessly
                raise
            for run_id, base in trims.items():
                if base < 0:
                    self._trimmed.pop(run_id, None)
                else:
                    self._trimmed[run_id] = base
            for label, result in zip(labels, results, strict=True):
                if isinstance(result, ResponseError):
                    # an id at or below the top: a retried batch or a stale owner (limit 5)
                    logger.debug("Redis refused %s for run_id %s: %s", label[0], label[1],
                                 result)
                elif isinstance(result, Exception):
                    logger.warning("Redis %s for run_id %s failed: %s", label[0], label[1],
                                   result)

    def _build(
        self, pipe: Any, ops: list[_Op], trims: dict[str, int]
    ) -> list[tuple[str, str]]:
        """Queue ``ops`` on ``pipe``; the trims it adds go to ``trims`` (run_id -> base)."""
        maxlen = self.limits.max_events_per_run + 2  # + the markers
        live_ms = int(self.live_ttl_s * 1000)
        retention_ms = max(1, int(self.limits.retention_s * 1000))
        labels: list[tuple[str, str]] = []
        touched: list[str] = []
        for op in ops:
            run_id = op[1]
            key = self.key(run_id)
            if op[0] == "reset":
                pipe.delete(key)
                pipe.xadd(key, {_FIELD_START: b"1"}, id=op[2])
                pipe.pexpire(key, live_ms)
                labels += [("DEL", run_id), ("XADD start", run_id), ("PEXPIRE", run_id)]
            elif op[0] == "add":
                item = op[2]
                log = self._logs.get(run_id)
                if log is not None and item.seq <= log.base:
                    continue  # already dropped locally (invariant 2)
                pipe.xadd(key, {_FIELD_EVENT: item.event.encode(), _FIELD_DATA: item.data},
                          id=item.id, maxlen=maxlen, approximate=True)
                labels.append(("XADD", run_id))
                if run_id not in touched:
                    touched.append(run_id)
            elif op[0] == "end":
                self._trim(pipe, run_id, labels, trims)
                pipe.xadd(key, {_FIELD_END: op[3]}, id=op[2])
                pipe.pexpire(key, retention_ms)
                labels += [("XADD end", run_id), ("PEXPIRE", run_id)]
                if run_id in touched:
                    touched.remove(run_id)
                trims[run_id] = -1  # ended: forget it
            else:  # discard
                pipe.delete(key)
                pipe.xadd(key, {_FIELD_END: _CLOSED}, id=op[2])
                pipe.pexpire(key, retention_ms)
                labels += [("DEL", run_id), ("XADD end", run_id), ("PEXPIRE", run_id)]
                if run_id in touched:
                    touched.remove(run_id)
                trims[run_id] = -1
        for run_id in touched:  # still live: trim to the local log and roll the TTL
            self._trim(pipe, run_id, labels, trims)
            pipe.pexpire(self.key(run_id), live_ms)
            labels.append(("PEXPIRE", run_id))
        return labels

    def _trim(self, pipe: Any, run_id: str, labels: list[tuple[str, str]],
              trims: dict[str, int]) -> None:
        log = self._logs.get(run_id)
        if log is None or not log.events or log.base <= self._trimmed.get(run_id, 0):
            return
        pipe.xtrim(self.key(run_id), minid=log.events[0].id, approximate=False)
        labels.append(("XTRIM", run_id))
        trims[run_id] = log.base

    # ---- reading ------------------------------------------------------------------------------

    def subscribe(
        self, run_id: str, cursor: Cursor = FROM_START
    ) -> AsyncIterator[StreamEvent | StreamGap]:
        """As ``MemoryStreamBridge.subscribe`` for a run this process holds; any other run is
        read from its Redis stream (invariants 5 and 6, limits 2 to 4).

        Raises (while iterating):
            StreamAborted: the run's stream ends with an abort marker.
            redis.exceptions.RedisError: Redis failed while reading.

        Cancellation: safe at any await (a blocked ``XREAD`` drops its connection).
        """
        if self.has(run_id):
            return super().subscribe(run_id, cursor)
        return self._remote(run_id, cursor)

    async def _remote(
        self, run_id: str, cursor: Cursor
    ) -> AsyncIterator[StreamEvent | StreamGap]:
        key = self.key(run_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xrange(key, "-", "+", count=1)
            pipe.xrevrange(key, "+", "-", count=1)
            replies: Any = await pipe.execute()
        first_entries, top_entries = replies
        if not top_entries:
            return  # unknown or expired
        first, top = _parse_id(first_entries[0][0]), _parse_id(top_entries[0][0])
        last_id = "-1" if isinstance(cursor, str) else f"{cursor[0]}-{cursor[1]}"
        expected: int | None  # seq of the next event, when it is known (gap check)
        if cursor == LIVE:
            pos, expected = top, top[1] + 1
        elif cursor == FROM_START or cursor == REPLAY:
            pos, expected = (0, 0), 1
        else:
            ms, seq = cursor
            if seq < 0:  # "<ms>": every event of that ms
                pos = (ms, 0)
                expected = 1 if first >= pos else None
            elif (ms, seq) > top:  # above the newest entry: from the newest (limit 3)
                pos, expected = top, top[1] + 1
            else:
                pos, expected = (ms, seq), seq + 1
        withhold = top if cursor == REPLAY else None
        gone_since: float | None = None
        while True:
            reply: Any = await self._redis.xread({key: f"{pos[0]}-{pos[1]}"}, count=_READ_COUNT,
                                            block=self.block_ms)
            if not reply:
                if await self._redis.exists(key):
                    gone_since = None
                    continue
                now = time.monotonic()
                if gone_since is None:
                    gone_since = now
                elif now - gone_since >= self.gone_grace_s:
                    logger.warning("stream of run_id %s vanished from Redis; ending a reader",
                                   run_id)
                    yield StreamGap(last_id, None, None)
                    return
                continue
            gone_since = None
            for raw_id, fields in reply[0][1]:
                entry = _parse_id(raw_id)
                pos = entry
                if _FIELD_END in fields:
                    if fields[_FIELD_END] == _ABORTED:
                        raise StreamAborted("the run's stream was cut by a shutdown")
                    return
                if _FIELD_START in fields:
                    expected = 1  # a (new) attempt starts
                    continue
                event = StreamEvent(entry[0], entry[1], fields[_FIELD_EVENT].decode(),
                                    fields[_FIELD_DATA])
                if expected is not None and event.seq != expected:
                    # a jump: trimmed; lower: a newer attempt whose start we did not see
                    dropped = (event.seq - expected if event.seq > expected
                               else event.seq - 1)
                    if dropped:
                        yield StreamGap(last_id, event.id, dropped)
                expected = event.seq + 1
                last_id = event.id
                if withhold is not None and event.event == "error" and entry <= withhold:
                    continue
                yield event
