"""RedisStreamBridge: the in-memory bridge plus one Redis Stream per run, so that N gateway
processes share run streams (``redis_url``; design.md 9, scale-out.md (b) step 8).

What it owns: the Redis copy of every run log this process publishes, and (through its
``RedisStreamReader``, runtime/bridge/redis_reader.py) the reading of run logs that other
processes publish. The process that executes a run publishes into its local
in-memory log (``MemoryStreamBridge``: local subscribers are served from memory with no Redis
round trip) and a flusher task (``run``; ``RedisStreamWriter``, runtime/bridge/redis_writer.py)
copies each event into Redis in pipelined batches (one Lua call per run per batch appends its
events, trims and rolls the TTL). A subscription to a run that is not in local memory reads the
run's Redis Stream: replay after the cursor, then live, until the end marker.

The key layout (one Redis Stream per run, ``<prefix>run:<run_id>``, its ids, start and end
markers and TTLs) is in runtime/bridge/redis_layout.py's docstring.

The reader half (one reader task per process, the replicas of remote runs) is
runtime/bridge/redis_reader.py: its docstring has the reader design, invariants 5-6 and limits
2-5 and 9-10 (the two docstrings share one numbering, hence the gaps below).

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

Limits:
1. ``subscribe_thread`` / ``publish_thread`` (``GET /threads/{id}/stream``) stay process-local
   (inherited from memory): a thread stream sees only the runs executed by its own process.
6. ``RedisStreamBridge.connect(url, limits, key_prefix=...)`` builds the bridge (an async
   context manager, as ``SqliteStreamBridge.connect``); ``open`` is the StreamBridge method.
7. Stream writes are fenced by the writer (``set_fence``: the cluster run manager's local
   lease deadline), not by a token in Redis: a process frozen past its lease drops what it
   queued when it wakes, but a batch already on the wire when it froze still lands (an
   ``XADD`` of an id at or below the stream's top is refused by Redis, logged at debug level).
8. A run only ``announce``d (admitted, not yet executed) has a stream that nobody refreshes:
   joins of a run pending longer than ``live_ttl_s`` end with a gap.

Deliberate differences from the reference:
1. Ids are today's ``<ms>-<seq>`` given explicitly to ``XADD`` (the reference's v2 streams use
   Redis-generated ids), so a ``Last-Event-ID`` from any process is a Redis id and a gap is
   counted exactly.
2. A trimmed ``Last-Event-ID`` yields an explicit gap (memory.py difference 2), never a silent
   replay from the first retained entry (what ``XREAD`` alone would do).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from runtime.bridge.memory import MemoryStreamBridge
from runtime.bridge.protocol import FROM_START, BridgeLimits, Cursor
from runtime.bridge.redis_layout import _ABORTED, _CLOSED, _FIELD_END, _parse_id
from runtime.bridge.redis_reader import RedisStreamReader, _Replica
from runtime.bridge.redis_writer import RedisStreamWriter, _Op
from runtime.types import StreamEvent, StreamGap

logger = logging.getLogger(__name__)

# KEYS[1]: a run's stream; ARGV: start marker id, ttl_ms. Creates the stream only if missing.
_ANNOUNCE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('XADD', KEYS[1], ARGV[1], 'start', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

class RedisStreamBridge(MemoryStreamBridge):
    """Cross-process StreamBridge (``redis_url``). Run ``run`` in the runtime's task group.

    Args:
        client: a ``redis.asyncio.Redis`` (bytes responses: ``decode_responses=False``).
        limits: the bounds of every log, local and in Redis.
        key_prefix: prefix of every key (the key layout is in redis_layout.py).
        live_ttl_s: TTL of a live run's stream (default ``max(4 x retention_s, 60)``).
        block_ms: how long one remote reader's ``XREAD`` blocks before it checks that its
            stream still exists.
        gone_grace_s: how long a remote reader waits for its vanished stream to come back
            before it ends with a gap (redis_reader.py invariant 5).
        max_queued: ops kept for Redis while it is unreachable (invariant 4).
    """

    def __init__(
        self, client: aioredis.Redis, limits: BridgeLimits | None = None, *,
        key_prefix: str = "gw:", live_ttl_s: float | None = None, block_ms: int = 1000,
        gone_grace_s: float = 5.0, max_queued: int = 200_000,
    ) -> None:
        super().__init__(limits)
        self._redis = client
        self._announce = client.register_script(_ANNOUNCE_LUA)
        self.key_prefix = key_prefix
        self._writer = RedisStreamWriter(
            client, self._logs, self.key, self.limits, max_queued=max_queued,
            live_ttl_s=live_ttl_s if live_ttl_s is not None else max(
                4 * self.limits.retention_s, 60.0))
        self._reader = RedisStreamReader(client, self.key, self.limits, block_ms=block_ms,
                                         gone_grace_s=gone_grace_s)
        self._replicas: dict[str, _Replica] = self._reader.replicas  # the same dict (tests)

    @property
    def live_ttl_s(self) -> float:
        """TTL of a live run's stream (constructor argument)."""
        return self._writer.live_ttl_s

    @property
    def max_queued(self) -> int:
        """Ops kept for Redis while it is unreachable (constructor argument)."""
        return self._writer.max_queued

    @property
    def _ops(self) -> list[_Op]:
        """The writer's queue, in order (tests)."""
        return self._writer.ops

    def set_fence(self, may_write: Callable[[str], bool]) -> None:
        """Fence this process's Redis writes (limit 7): ``may_write(run_id)`` is asked for
        every queued op of a run when its batch is sent, and the run's ops are dropped when
        it answers False (the cluster run manager: the attempt's lease expired locally or
        was lost, so the stream is another attempt's now)."""
        self._writer.may_write = may_write

    def forget(self, run_id: str) -> None:
        """Drop the run's local log and its queued Redis ops WITHOUT writing anything to
        Redis (the run was taken over by another process, which owns its stream now): local
        subscribers end with ``StreamAborted`` (their clients reconnect and are served from
        Redis)."""
        self._writer.forget(run_id)
        super().abort(run_id)

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

    @property
    def block_ms(self) -> int:
        """The reader's ``XREAD BLOCK`` (constructor argument)."""
        return self._reader.block_ms

    @block_ms.setter
    def block_ms(self, value: int) -> None:
        self._reader.block_ms = value

    @property
    def gone_grace_s(self) -> float:
        """How long a remote reader waits for a vanished stream (constructor argument)."""
        return self._reader.gone_grace_s

    @gone_grace_s.setter
    def gone_grace_s(self, value: float) -> None:
        self._reader.gone_grace_s = value

    # ---- writing ------------------------------------------------------------------------------

    def open(self, run_id: str, thread_id: str | None = None) -> None:
        """Open the run's log; a run this process does not hold yet gets a fresh Redis stream
        (its old one, a crashed attempt's, is deleted first: invariant 1)."""
        if not self.has(run_id):
            self._writer.reset(run_id, f"{self._now_ms()}-0")
        super().open(run_id, thread_id)

    async def prepare_open(self, run_id: str, timeout_s: float = 2.0) -> None:
        """Before ``open`` of a run that may have run elsewhere (a claim after a crash or a
        hand-back): lift this process's id clock above the run's old stream, so the new
        attempt's ids are above every id a client of the old one holds, whatever the clocks
        of the two machines. A reconnect with an old ``Last-Event-ID`` then replays the new
        attempt from its start (memory.py's "id of an earlier log" rule) instead of being
        placed by its seq. Best effort: Redis errors are logged, never raised
        (redis_reader.py limit 4)."""
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
            self._writer.queue(("add", run_id, item))
        return item

    def close(self, run_id: str) -> None:
        """End the run's stream: locally, and with an end marker and ``retention_s`` TTL."""
        log = self._logs.get(run_id)
        if log is not None and not log.closed:
            self._writer.queue(("end", run_id, f"{self._now_ms()}-{log.end + 1}", _CLOSED))
        super().close(run_id)

    def abort(self, run_id: str) -> None:
        """End the run's stream without an end: readers everywhere raise ``StreamAborted``."""
        log = self._logs.get(run_id)
        if log is not None and not log.closed:
            self._writer.queue(("end", run_id, f"{self._now_ms()}-{log.end + 1}", _ABORTED))
        super().abort(run_id)

    def discard(self, run_id: str) -> None:
        """Close and drop the log at once (a deleted or rolled-back run), on any process: the
        Redis stream is replaced by a bare end marker (kept ``retention_s``), so readers
        everywhere end and later joins get nothing, even when this process does not hold
        the run (a finished run deleted through another process; the process that ran it
        keeps serving its local copy to its own joins until ``retention_s``)."""
        log = self._logs.get(run_id)
        self._writer.queue(("discard", run_id, f"{self._now_ms()}-{log.end + 1 if log else 1}"))
        super().discard(run_id)

    async def run(self) -> None:
        """The bridge's two tasks: the reader (``RedisStreamReader.run``) and the flusher,
        which sends what is queued as soon as it is queued (one pipeline per batch: what
        accumulates while a batch is in flight makes the next one) and refreshes the TTL of
        every open run's stream every ``live_ttl_s / 4``. Never returns; cancel it to stop."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._reader.run, name="redis stream reader")
            await self._writer.run()

    async def flush(self) -> None:
        """Send every queued op now, in order (one pipeline: ``RedisStreamWriter.flush``).

        Raises:
            redis.exceptions.RedisError: the batch did not reach Redis; it is queued again.
        """
        await self._writer.flush()

    # ---- reading ------------------------------------------------------------------------------

    def subscribe(
        self, run_id: str, cursor: Cursor = FROM_START
    ) -> AsyncIterator[StreamEvent | StreamGap]:
        """As ``MemoryStreamBridge.subscribe`` for a run this process holds; any other run is
        read from its Redis stream through this process's replica of it
        (``RedisStreamReader.subscribe``; redis_reader.py: reader design, invariants 5 and 6,
        limits 2 to 5).

        Raises (while iterating):
            StreamAborted: the run's stream ends with an abort marker, or the run is
                re-executed elsewhere while this subscription follows the old attempt.
            redis.exceptions.RedisError: Redis failed while the replica was first loaded.

        Cancellation: safe at any await.
        """
        if self.has(run_id):
            return super().subscribe(run_id, cursor)
        return self._reader.subscribe(run_id, cursor)
