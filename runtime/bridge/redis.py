"""RedisStreamBridge: the in-memory bridge plus one Redis Stream per run, so that N gateway
processes share run streams (``redis_url``; design.md 9, scale-out.md (b) step 8).

What it owns: the Redis copy of every run log this process publishes, and the reading of run
logs that other processes publish. The process that executes a run publishes into its local
in-memory log (``MemoryStreamBridge``: local subscribers are served from memory with no Redis
round trip) and a flusher task (``run``) copies each event into Redis in pipelined batches (one
Lua call per run per batch appends its events, trims and rolls the TTL). A subscription to a
run that is not in local memory reads the run's Redis Stream: replay after the cursor, then
live, until the end marker.

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

Reader design: ONE READER TASK PER PROCESS (inside ``run``) serves every remote subscriber.
The first subscription to a remote run loads the stream (``XRANGE`` in chunks) into a local
replica, a memory log with the owner's bounds; later subscriptions to that run share it. The
reader task follows every replica with one ``XREAD BLOCK`` over all of their keys on a dedicated
connection (scale-out.md 5.2), feeds the replicas, and is woken with ``CLIENT UNBLOCK`` when a
new replica must join the read. Remote subscribers are memory cursors on a replica (memory.py's
``_read``), so they get memory's cursor table, gaps and fan-out unchanged; a paused one never
holds anything in Redis. A replica is dropped when its last subscriber leaves or its stream
ends (a later join loads it again).

Invariants (in addition to runtime/bridge/memory.py's, which local subscribers get unchanged):
1. The stored log is the latest attempt's: ``open`` of a run this process does not hold deletes
   the run's stream first (a run re-executed after a crash), as sqlite.py invariant 1.
2. Redis holds exactly what the local log holds: events the local log has dropped
   (``max_events_per_run`` or ``max_bytes_per_run``) are trimmed from the stream with an exact
   ``XTRIM MINID <first retained id>`` in the next batch; ``XADD MAXLEN ~ max_events_per_run
   + 2`` bounds it too when the local log is gone. So the stream is bounded in bytes as the memory
   log is (the newest event always stays, plus the markers).
3. Ordering: Redis ops (delete + start marker, events, end marker, trims, TTLs) are queued in
   the order ``open``/``publish``/``close`` happened and sent in that order on one pipeline;
   a batch that deletes a stream (``open`` of a re-executed run, ``discard``) is one
   ``MULTI``/``EXEC``, so no reader sees the stream missing between the delete and the new
   start.
4. ``publish`` never waits and never raises because of Redis (design.md 4.5): it appends to
   memory and to the queue. The flusher logs a failed batch and retries it with a backoff; when
   Redis stays away and more than ``max_queued`` ops are waiting, the oldest are dropped (with a
   warning): a remote reader then sees a gap.
5. A remote reader never hangs: it ends at the end marker (``StreamAborted`` on ``aborted``);
   an unknown or expired stream yields nothing at once; a stream that disappears under a live
   reader (Redis flushed or restarted, TTL expired after the owner died), or Redis unreachable,
   ends the reader with a ``StreamGap`` (``first_id`` None, ``dropped`` None) once that has
   lasted ``gone_grace_s`` (checked every ``block_ms``); a stream that comes back (the owner
   publishes again after a flush) is followed on, with an exact ``StreamGap`` for the events
   the reader never saw (``seq`` is the 1-based position).
6. Remote readers follow memory.py invariant 5's cursor table: a gap when the requested id was
   trimmed (the first retained entry's seq > requested seq + 1), and the ``REPLAY`` rule (an
   ``error`` entry already in the replica when the subscription starts is withheld).

Limits:
1. ``subscribe_thread`` / ``publish_thread`` (``GET /threads/{id}/stream``) stay process-local
   (inherited from memory): a thread stream sees only the runs executed by its own process.
2. A remote subscription's start position is fixed when it starts iterating (after the replica
   is loaded), not when ``subscribe`` is called (memory fixes it at the call): for ``LIVE`` and
   for what ``REPLAY`` counts as "already logged".
3. A replica knows when its attempt started only from the start marker; once that is trimmed,
   an id from an earlier attempt is placed by its seq (a gap, never a silent skip, in
   practice), where memory replays the whole log.
4. A run re-executed elsewhere (a new start marker, a seq going back, or a stream replaced
   below the reader's position, found by the quiet check every ``block_ms``) cuts the readers
   of the old attempt with ``StreamAborted``, as a restart does. Their reconnect replays the
   new attempt from its start only if its ids are above the old ones: the claiming process
   calls ``prepare_open`` before ``open`` to make sure of it; without it, a new owner whose
   clock is behind places an old ``Last-Event-ID`` by its seq (events skipped).
5. A remote join of an aborted run (a shutdown handed it back) waits up to ``gone_grace_s``
   for its next attempt and follows that one; if none starts, it replays the aborted attempt
   and raises ``StreamAborted`` (memory forgets an aborted log at once: a local join yields
   nothing); the client reconnects, which is what an abort asks of it.
6. ``RedisStreamBridge.connect(url, limits, key_prefix=...)`` builds the bridge (an async
   context manager, as ``SqliteStreamBridge.connect``); ``open`` is the StreamBridge method.
7. Nothing fences a stale owner's writes yet (scale-out.md (b) step 6): a zombie's ``XADD`` of
   an id at or below the stream's top is refused by Redis and logged at debug level.
8. A run only ``announce``d (admitted, not yet executed) has a stream that nobody refreshes:
   joins of a run pending longer than ``live_ttl_s`` end with a gap.
9. Memory: a process holds a replica of every remote run it has subscribers for, bounded as
   the owner's log (``max_events_per_run``, ``max_bytes_per_run``).
10. One Redis, not a Cluster: the reader's one ``XREAD`` names keys of many runs, which a
    cluster refuses (``CROSSSLOT``) unless they share a hash tag.

Deliberate differences from the reference:
1. Ids are today's ``<ms>-<seq>`` given explicitly to ``XADD`` (the reference's v2 streams use
   Redis-generated ids), so a ``Last-Event-ID`` from any process is a Redis id and a gap is
   counted exactly.
2. A trimmed ``Last-Event-ID`` yields an explicit gap (memory.py difference 2), never a silent
   replay from the first retained entry (what ``XREAD`` alone would do).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from runtime.bridge.memory import MemoryStreamBridge, _read, _RunLog
from runtime.bridge.protocol import FROM_START, REPLAY, BridgeLimits, Cursor
from runtime.types import StreamEvent, StreamGap

logger = logging.getLogger(__name__)

# KEYS[1]: a run's stream; ARGV: maxlen, ttl_ms ("" = keep), minid ("" = no trim), then
# (id, event, data) per event. One call per run per batch: one reply, not one per event.
# Returns how many XADDs Redis refused (an id at or below the top: a retried batch).
_APPEND_LUA = """
local refused = 0
for i = 4, #ARGV, 3 do
  local r = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[i],
                        'event', ARGV[i + 1], 'data', ARGV[i + 2])
  if type(r) == 'table' and r.err then refused = refused + 1 end
end
if ARGV[3] ~= '' then redis.call('XTRIM', KEYS[1], 'MINID', ARGV[3]) end
if ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return refused
"""

# KEYS[1]: a run's stream; ARGV: start marker id, ttl_ms. Creates the stream only if missing.
_ANNOUNCE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('XADD', KEYS[1], ARGV[1], 'start', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

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

    def __init__(
        self, client: aioredis.Redis, limits: BridgeLimits | None = None, *,
        key_prefix: str = "gw:", live_ttl_s: float | None = None, block_ms: int = 1000,
        gone_grace_s: float = 5.0, max_queued: int = 200_000,
    ) -> None:
        super().__init__(limits)
        self._redis = client
        self._append = client.register_script(_APPEND_LUA)
        self._announce = client.register_script(_ANNOUNCE_LUA)
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
        self._replicas: dict[str, _Replica] = {}  # run_id -> replica of a remote run
        self._watch_changed = anyio.Event()
        self._reader_id: int | None = None  # CLIENT ID of the reader's connection
        self._reading: dict[str, _Replica] = {}  # what the XREAD in flight follows
        self._round = 0

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, url: str, limits: BridgeLimits, *, key_prefix: str = "gw:",
        client_name: str | None = None, **options: Any,
    ) -> AsyncIterator[RedisStreamBridge]:
        """The bridge on a connection pool to ``url`` (``redis://host:port/db``).

        ``client_name`` names its connections (``CLIENT LIST``); ``options`` are the
        constructor's. On exit, what is queued is flushed (for at most 5 s) and the pool is
        closed.

        Raises:
            redis.exceptions.ConnectionError: Redis is not reachable at start-up.
        """
        client = aioredis.from_url(url, decode_responses=False, client_name=client_name,
                                   socket_connect_timeout=5, socket_timeout=30)
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

    def open(self, run_id: str, thread_id: str | None = None) -> None:
        """Open the run's log; a run this process does not hold yet gets a fresh Redis stream
        (its old one, a crashed attempt's, is deleted first: invariant 1)."""
        if not self.has(run_id):
            self._queue(("reset", run_id, f"{self._now_ms()}-0"))
            self._trimmed.pop(run_id, None)
        super().open(run_id, thread_id)

    async def prepare_open(self, run_id: str, timeout_s: float = 2.0) -> None:
        """Before ``open`` of a run that may have run elsewhere (a claim after a crash or a
        hand-back): lift this process's id clock above the run's old stream, so the new
        attempt's ids are above every id a client of the old one holds, whatever the clocks
        of the two machines. A reconnect with an old ``Last-Event-ID`` then replays the new
        attempt from its start (memory.py's "id of an earlier log" rule) instead of being
        placed by its seq. Best effort: Redis errors are logged, never raised (limit 4)."""
        with anyio.move_on_after(timeout_s):
            try:
                top: Any = await self._redis.xrevrange(self.key(run_id), "+", "-", count=1)
            except RedisError as exc:
                logger.warning("reading the old stream of run_id %s failed: %s", run_id, exc)
                return
            if top:
                self._last_ms = max(self._last_ms, _parse_id(top[0][0])[0] + 1)

    async def announce(self, run_id: str, timeout_s: float = 2.0) -> bool:
        """Make a NEW run's stream exist before any process executes it, so that a join on
        any process waits for its events instead of ending at once: a start marker, no local
        log. Await it at admission, before the response (a client that joins elsewhere after
        the response then finds the stream). A stream that exists already is left alone;
        the executing process's ``open`` replaces it. Its TTL is
        ``live_ttl_s``, refreshed by nobody until a process opens the run (limit 8).

        Returns:
            False if Redis did not take it within ``timeout_s`` (logged, never raised: joins
            of the run then end at once until its owner opens it).
        """
        key = self.key(run_id)
        with anyio.move_on_after(timeout_s):
            try:
                await self._announce(keys=[key], args=[f"{self._now_ms()}-0",
                                                       int(self.live_ttl_s * 1000)])
                return True
            except RedisError as exc:
                logger.warning("announcing the stream of run_id %s failed: %s", run_id, exc)
                return False
        logger.warning("announcing the stream of run_id %s timed out", run_id)
        return False

    async def end_stream(self, run_id: str, *, aborted: bool = False) -> None:
        """End the stream of a run that this process does not hold (the sweeper finishing a
        dead owner's run, scale-out.md (b) step 7): an end marker (``XADD *``, above any id,
        ``NOMKSTREAM``: a missing stream stays missing) and the ``retention_s`` TTL, so readers
        everywhere end (``StreamAborted`` with ``aborted``) instead of waiting for the TTL.

        Raises:
            redis.exceptions.RedisError: Redis did not take it.
        """
        key = self.key(run_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(key, {_FIELD_END: _ABORTED if aborted else _CLOSED}, nomkstream=True)
            pipe.pexpire(key, max(1, int(self.limits.retention_s * 1000)))
            await pipe.execute()

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
        """Close and drop the log at once (a deleted or rolled-back run), on any process: the
        Redis stream is replaced by a bare end marker (kept ``retention_s``), so readers
        everywhere end and later joins get nothing, even when this process does not hold
        the run (a finished run deleted through another process; the process that ran it
        keeps serving its local copy to its own joins until ``retention_s``)."""
        log = self._logs.get(run_id)
        self._queue(("discard", run_id, f"{self._now_ms()}-{log.end + 1 if log else 1}"))
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
        """The bridge's two tasks: the reader (``_read_loop``) and the flusher, which sends
        what is queued as soon as it is queued (one pipeline per batch: what accumulates while
        a batch is in flight makes the next one) and refreshes the TTL of every open run's
        stream every ``live_ttl_s / 4``. Never returns; cancel it to stop."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read_loop, name="redis stream reader")
            await self._flush_loop()

    async def _flush_loop(self) -> None:
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
                # a DEL and its new start in one MULTI/EXEC, so no reader sees the stream
                # missing in between (invariant 3); other batches need no transaction
                atomic = any(op[0] != "add" and op[0] != "end" for op in ops)
                async with self._redis.pipeline(transaction=atomic) as pipe:
                    trims: dict[str, int] = {}
                    labels = await self._build(pipe, ops, trims)
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
                if label[0] == "XADD" and isinstance(result, int) and result:
                    logger.debug("Redis refused %d event(s) of run_id %s", result, label[1])
                elif isinstance(result, ResponseError):
                    # an id at or below the top: a retried batch or a stale owner (limit 7)
                    logger.debug("Redis refused %s for run_id %s: %s", label[0], label[1],
                                 result)
                elif isinstance(result, Exception):
                    logger.warning("Redis %s for run_id %s failed: %s", label[0], label[1],
                                   result)

    async def _build(
        self, pipe: Any, ops: list[_Op], trims: dict[str, int]
    ) -> list[tuple[str, str]]:
        """Queue ``ops`` on ``pipe``: a run's consecutive events go in one ``_APPEND`` script
        call (with the trim and the rolling TTL), markers as plain commands, each run's ops
        in their order; the trims it adds go to ``trims`` (run_id -> base)."""
        maxlen = self.limits.max_events_per_run + 2  # + the markers
        live_ms = int(self.live_ttl_s * 1000)
        retention_ms = max(1, int(self.limits.retention_s * 1000))
        labels: list[tuple[str, str]] = []
        pending: dict[str, list[StreamEvent]] = {}

        async def append(run_id: str, ttl_ms: int | str) -> None:
            args: list[Any] = [maxlen, ttl_ms, self._minid(run_id, trims)]
            for item in pending.pop(run_id, ()):
                args += (item.id, item.event, item.data)
            await self._append(keys=[self.key(run_id)], args=args, client=pipe)
            labels.append(("XADD", run_id))

        for op in ops:
            run_id = op[1]
            if op[0] == "add":
                item = op[2]
                log = self._logs.get(run_id)
                if log is None or item.seq > log.base:  # else dropped locally (invariant 2)
                    pending.setdefault(run_id, []).append(item)
                continue
            if run_id in pending:
                await append(run_id, "")
            key = self.key(run_id)
            if op[0] == "reset":
                pipe.delete(key)
                pipe.xadd(key, {_FIELD_START: b"1"}, id=op[2])
                pipe.pexpire(key, live_ms)
                labels += [("DEL", run_id), ("XADD start", run_id), ("PEXPIRE", run_id)]
                continue
            if op[0] == "end":
                if minid := self._minid(run_id, trims):
                    pipe.xtrim(key, minid=minid, approximate=False)
                    labels.append(("XTRIM", run_id))
                pipe.xadd(key, {_FIELD_END: op[3]}, id=op[2])
            else:  # discard
                pipe.delete(key)
                pipe.xadd(key, {_FIELD_END: _CLOSED}, id=op[2])
                labels.append(("DEL", run_id))
            pipe.pexpire(key, retention_ms)
            labels += [("XADD end", run_id), ("PEXPIRE", run_id)]
            trims[run_id] = -1  # ended: forget it
        for run_id in list(pending):  # still live: trim to the local log, roll the TTL
            await append(run_id, live_ms)
        return labels

    def _minid(self, run_id: str, trims: dict[str, int]) -> str:
        """The id to trim the run's stream to (``XTRIM MINID``), or "" when nothing to trim."""
        log = self._logs.get(run_id)
        if log is None or not log.events or log.base <= max(self._trimmed.get(run_id, 0),
                                                           trims.get(run_id, 0)):
            return ""
        trims[run_id] = log.base
        return log.events[0].id

    # ---- reading ------------------------------------------------------------------------------

    def subscribe(
        self, run_id: str, cursor: Cursor = FROM_START
    ) -> AsyncIterator[StreamEvent | StreamGap]:
        """As ``MemoryStreamBridge.subscribe`` for a run this process holds; any other run is
        read from its Redis stream through this process's replica of it (reader design in
        the module docstring; invariants 5 and 6, limits 2 to 5).

        Raises (while iterating):
            StreamAborted: the run's stream ends with an abort marker, or the run is
                re-executed elsewhere while this subscription follows the old attempt.
            redis.exceptions.RedisError: Redis failed while the replica was first loaded.

        Cancellation: safe at any await.
        """
        if self.has(run_id):
            return super().subscribe(run_id, cursor)
        return self._remote(run_id, cursor)

    async def _remote(
        self, run_id: str, cursor: Cursor
    ) -> AsyncIterator[StreamEvent | StreamGap]:
        replica = await self._attach(run_id)
        if replica is None:
            return  # unknown or expired
        try:
            log = replica.log
            if log.aborted and not replica.vanished:
                # cut by a shutdown: the run is handed back and re-executed at once elsewhere;
                # join its next attempt if it starts soon (a reconnect lands here)
                with anyio.move_on_after(self.gone_grace_s):
                    while replica.log is log:
                        await replica.next_attempt.wait()
                log = replica.log
            last_id = "-1" if isinstance(cursor, str) else f"{cursor[0]}-{cursor[1]}"
            withhold = log.end if cursor == REPLAY else 0
            async for item in _read(log, log.position_after(cursor), last_id, withhold):
                if isinstance(item, StreamEvent):
                    last_id = item.id
                yield item
            if replica.vanished and log is replica.log:
                yield StreamGap(last_id, None, None)
        finally:
            replica.users -= 1
            if replica.users == 0 and self._replicas.get(run_id) is replica:
                del self._replicas[run_id]

    async def _attach(self, run_id: str) -> _Replica | None:
        """This process's replica of the run's stream, loaded up to the stream's top (the
        first subscriber loads it; later ones share it); None if the stream does not exist."""
        while True:
            replica = self._replicas.get(run_id)
            if replica is not None:
                await replica.loaded.wait()
                if replica.missing:
                    return None
                if replica.failed or not (replica.ended or self._replicas.get(run_id) is replica):
                    continue  # failed, or dropped while we waited: nobody feeds it any more
                replica.users += 1
                return replica
            replica = self._replicas[run_id] = _Replica(self.key(run_id), self.limits)
            try:
                await self._load(replica)
            except BaseException:
                replica.failed = True
                raise
            finally:
                if (replica.failed or replica.missing or replica.ended) and \
                        self._replicas.get(run_id) is replica:
                    del self._replicas[run_id]
                replica.loaded.set()
            if replica.missing:
                return None
            replica.users += 1
            if not replica.ended:
                try:
                    await self._watch(replica)
                except BaseException:  # cancelled: nobody will read it
                    replica.users -= 1
                    if replica.users == 0 and self._replicas.get(run_id) is replica:
                        del self._replicas[run_id]
                    raise
            return replica

    async def _load(self, replica: _Replica) -> None:
        start = "-"
        while True:
            entries: Any = await self._redis.xrange(replica.key, start, "+", count=_READ_COUNT)
            if not entries:
                if start == "-":
                    replica.missing = True
                return
            self._feed(replica, entries)
            if replica.ended or len(entries) < _READ_COUNT:
                return
            start = "(" + replica.pos

    def _feed(self, replica: _Replica, entries: list[Any]) -> None:
        """Append Redis entries ``[(id, {field: value})]`` to the replica's log."""
        replica.last_ok = time.monotonic()
        replica.gone_since = None
        for raw_id, fields in entries:
            ms, seq = _parse_id(raw_id)
            replica.pos = f"{ms}-{seq}"
            log = replica.log
            if _FIELD_END in fields:
                if not log.closed:
                    log.closed = True
                    log.aborted = fields[_FIELD_END] == _ABORTED
                    log.notify()
                # an aborted attempt is followed on: its next attempt comes soon (limit 5)
                replica.ended = not log.aborted
                continue
            if _FIELD_START in fields:
                if log.end or log.closed:
                    replica.new_attempt()
                replica.log.created_ms = ms
                replica.start_id = replica.pos
                continue
            if seq <= log.end or log.closed:  # a newer attempt whose start we did not see
                log = replica.new_attempt()
            if seq > log.end + 1:  # entries we never saw (trimmed or lost): readers get a gap
                log.events.clear()
                log.nbytes = 0
                log.base = seq - 1
            log.append(StreamEvent(ms, seq, fields[_FIELD_EVENT].decode(), fields[_FIELD_DATA]))

    def _vanish(self, replica: _Replica) -> None:
        logger.warning("stream %s vanished from Redis; ending its %d reader(s)",
                       replica.key, replica.users)
        replica.vanished = replica.ended = True
        replica.log.closed = True
        replica.log.notify()
        for run_id, other in list(self._replicas.items()):
            if other is replica:
                del self._replicas[run_id]

    async def _watch(self, replica: _Replica) -> None:
        """Have the reader task follow ``replica`` from ``replica.pos``: wake it when idle,
        unblock its ``XREAD`` when it blocks on a set of keys without this one."""
        self._watch_changed.set()
        round_ = self._round
        for _ in range(50):
            if self._round != round_ or self._reader_id is None or \
                    self._reading.get(replica.key) is replica:
                return
            try:
                if await self._redis.client_unblock(self._reader_id):
                    return
            except RedisError:
                return  # the reader's next round picks the replica up (<= block_ms)
            await anyio.sleep(0.002)  # the XREAD is on its way to Redis: unblock it once there

    async def _read_loop(self) -> None:
        """The reader task: one ``XREAD BLOCK`` on a dedicated connection over every watched
        stream; entries go into the replicas (whose readers are memory cursors), end markers
        end them, a stream gone for ``gone_grace_s`` (or Redis unreachable that long) ends
        them with a gap."""
        pool: Any = self._redis.connection_pool
        conn: Any = None
        retry_s = 0.0
        try:
            while True:
                watched = {r.key: r for r in self._replicas.values()
                           if r.loaded.is_set() and not r.ended}
                if not watched:
                    self._watch_changed = anyio.Event()
                    await self._watch_changed.wait()
                    continue
                try:
                    if conn is None:
                        conn = await pool.get_connection()
                    if not conn.is_connected or self._reader_id is None:
                        if not conn.is_connected:
                            await conn.connect()
                        await conn.send_command("CLIENT", "ID")
                        self._reader_id = int(await conn.read_response())
                    keys = list(watched)
                    self._round += 1
                    self._reading = watched
                    await conn.send_command(
                        "XREAD", "COUNT", _READ_COUNT, "BLOCK", self.block_ms, "STREAMS",
                        *keys, *(watched[k].pos for k in keys))
                    with anyio.fail_after(self.block_ms / 1000 + 10):  # a silent Redis
                        reply = await conn.read_response(timeout=math.inf)
                    self._reading = {}
                    # RESP3 (redis-py's default) answers a map, RESP2 a list of pairs
                    streams = reply.items() if isinstance(reply, dict) else reply or []
                    for raw_key, entries in streams:
                        replica = watched.get(raw_key.decode())
                        if replica is not None:
                            self._feed(replica, [(i, _fields(f)) for i, f in entries])
                    await self._check_gone(watched)
                    retry_s = 0.0
                except Exception as exc:  # never stop the bridge: Redis is a cache
                    self._reading, self._reader_id = {}, None
                    if conn is not None:  # a reply may be half read: start afresh
                        await conn.disconnect()
                    retry_s = min(max(0.05, retry_s * 2), 1.0)
                    logger.warning("reading streams from Redis failed (%s); retrying in %.2f s",
                                   exc, retry_s)
                    now = time.monotonic()
                    for replica in watched.values():  # unreachable counts as gone
                        if now - replica.last_ok >= self.gone_grace_s:
                            self._vanish(replica)
                    await anyio.sleep(retry_s)
        finally:
            self._reading, self._reader_id = {}, None
            if conn is not None:
                with anyio.CancelScope(shield=True):
                    await conn.disconnect()
                    await pool.release(conn)

    async def _check_gone(self, watched: dict[str, _Replica]) -> None:
        now = time.monotonic()
        period_s = self.block_ms / 1000
        idle = [r for r in watched.values()  # quiet for a block, not checked for a block
                if not r.ended and now - max(r.last_ok, r.last_check) >= period_s]
        if not idle:
            return
        for replica in idle:
            replica.last_check = now
        async with self._redis.pipeline(transaction=False) as pipe:
            for replica in idle:
                pipe.xrange(replica.key, "-", "+", count=1)
            found: Any = await pipe.execute()
        for replica, first in zip(idle, found, strict=True):
            if first:
                replica.last_ok, replica.gone_since = now, None
                raw_id, fields = first[0]
                first_id = raw_id.decode()
                if _FIELD_START in fields and first_id != replica.start_id:
                    # replaced by a new attempt whose ids are all below our position (its
                    # owner's clock is behind, or the same ms): read it from its start
                    logger.info("stream %s restarted below the reader's position", replica.key)
                    replica.new_attempt()
                    replica.pos = "0-0"
            elif replica.gone_since is None:
                replica.gone_since = now
            elif now - replica.gone_since >= self.gone_grace_s:
                self._vanish(replica)


def _fields(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class _Replica:
    """This process's copy of another process's run stream, fed by the reader task.

    ``log`` is a memory log (same bounds as the owner's), so remote subscribers are memory
    cursors with memory's rules (invariant 6); ``pos`` is the last Redis id read.
    """

    __slots__ = ("key", "limits", "log", "pos", "users", "loaded", "missing", "failed",
                 "ended", "vanished", "last_ok", "last_check", "gone_since", "start_id",
                 "next_attempt")

    def __init__(self, key: str, limits: BridgeLimits) -> None:
        self.key = key
        self.limits = limits
        self.log = self._new_log()
        self.pos = "0-0"
        self.users = 0
        self.loaded = anyio.Event()
        self.missing = self.failed = self.ended = self.vanished = False
        self.last_ok = time.monotonic()  # last sign of the stream (an entry, EXISTS)
        self.last_check = 0.0  # last EXISTS sent
        self.gone_since: float | None = None
        self.start_id: str | None = None  # the current attempt's start marker, once read
        self.next_attempt = anyio.Event()  # set when a new attempt replaces ``log``

    def _new_log(self) -> _RunLog:
        log = _RunLog(self.limits.max_events_per_run, self.limits.max_bytes_per_run)
        log.created_ms = 0  # unknown until a start marker is read: trust the seq of an id
        return log

    def new_attempt(self) -> _RunLog:
        """The run was re-executed elsewhere: readers of the old attempt raise
        StreamAborted (their clients reconnect and replay the new attempt)."""
        old = self.log
        if not old.closed:
            old.closed = old.aborted = True
            old.notify()
        self.log = self._new_log()
        self.start_id = None
        self.ended = False
        self.next_attempt.set()
        self.next_attempt = anyio.Event()
        return self.log
