"""The reader half of ``RedisStreamBridge`` (runtime/bridge/redis.py): a subscription to a run
that another process executes reads the run's Redis Stream (replay after the cursor, then live,
until the end marker). The key layout is in redis_layout.py's docstring, the writer half in
redis.py's (and redis_writer.py's, its flusher); the invariants and limits keep the numbers of
that one list (redis.py has invariants 1-4 and limits 1 and 6-8).

What it owns: this process's replicas of remote runs' streams and the one reader task that
feeds them. ``RedisStreamBridge`` owns one ``RedisStreamReader``: its ``subscribe`` sends a run
that is not in local memory to ``RedisStreamReader.subscribe``, and its ``run`` runs
``RedisStreamReader.run`` beside the flusher.

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
9. Memory: a process holds a replica of every remote run it has subscribers for, bounded as
   the owner's log (``max_events_per_run``, ``max_bytes_per_run``).
10. One Redis, not a Cluster: the reader's one ``XREAD`` names keys of many runs, which a
    cluster refuses (``CROSSSLOT``) unless they share a hash tag.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from runtime.bridge.memory import _read, _RunLog
from runtime.bridge.protocol import REPLAY, BridgeLimits, Cursor
from runtime.bridge.redis_layout import (
    _ABORTED,
    _FIELD_DATA,
    _FIELD_END,
    _FIELD_EVENT,
    _FIELD_START,
    _fields,
    _parse_id,
)
from runtime.types import StreamEvent, StreamGap

logger = logging.getLogger(__name__)

_READ_COUNT = 512  # entries per XREAD


class RedisStreamReader:
    """Reads the Redis Streams of runs other processes execute, for ``RedisStreamBridge``
    (which owns one, and runs ``run`` in its own ``run``).

    Args:
        client: the bridge's ``redis.asyncio.Redis`` (bytes responses).
        key: run_id -> the Redis key of the run's stream (the bridge's ``key``).
        limits: the bounds of every replica (the owner's: ``max_events_per_run``,
            ``max_bytes_per_run``).
        block_ms: how long the reader's ``XREAD`` blocks before it checks that the streams
            it follows still exist.
        gone_grace_s: how long a remote reader waits for its vanished stream to come back
            before it ends with a gap (invariant 5).
    """

    def __init__(
        self, client: aioredis.Redis, key: Callable[[str], str], limits: BridgeLimits, *,
        block_ms: int = 1000, gone_grace_s: float = 5.0,
    ) -> None:
        self._redis = client
        self.key = key
        self.limits = limits
        self.block_ms = block_ms
        self.gone_grace_s = gone_grace_s
        self.replicas: dict[str, _Replica] = {}  # run_id -> replica of a remote run
        self._watch_changed = anyio.Event()
        self._reader_id: int | None = None  # CLIENT ID of the reader's connection
        self._reading: dict[str, _Replica] = {}  # what the XREAD in flight follows
        self._round = 0

    async def subscribe(
        self, run_id: str, cursor: Cursor
    ) -> AsyncIterator[StreamEvent | StreamGap]:
        """Events of a run another process executes, through this process's replica of its
        stream (loaded at the first iteration; invariants 5 and 6, limits 2 to 5). Needs
        ``run`` running to follow the stream past what the load read.

        Raises (while iterating):
            StreamAborted: the stream ends with an abort marker, or the run is re-executed
                elsewhere while this subscription follows the old attempt.
            redis.exceptions.RedisError: Redis failed while the replica was first loaded.

        Cancellation: safe at any await.
        """
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
            if replica.users == 0 and self.replicas.get(run_id) is replica:
                del self.replicas[run_id]

    async def _attach(self, run_id: str) -> _Replica | None:
        """This process's replica of the run's stream, loaded up to the stream's top (the
        first subscriber loads it; later ones share it); None if the stream does not exist."""
        while True:
            replica = self.replicas.get(run_id)
            if replica is not None:
                await replica.loaded.wait()
                if replica.missing:
                    return None
                if replica.failed or not (replica.ended or self.replicas.get(run_id) is replica):
                    continue  # failed, or dropped while we waited: nobody feeds it any more
                replica.users += 1
                return replica
            replica = self.replicas[run_id] = _Replica(self.key(run_id), self.limits)
            try:
                await self._load(replica)
            except BaseException:
                replica.failed = True
                raise
            finally:
                if (replica.failed or replica.missing or replica.ended) and \
                        self.replicas.get(run_id) is replica:
                    del self.replicas[run_id]
                replica.loaded.set()
            if replica.missing:
                return None
            replica.users += 1
            if not replica.ended:
                try:
                    await self._watch(replica)
                except BaseException:  # cancelled: nobody will read it
                    replica.users -= 1
                    if replica.users == 0 and self.replicas.get(run_id) is replica:
                        del self.replicas[run_id]
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
        for run_id, other in list(self.replicas.items()):
            if other is replica:
                del self.replicas[run_id]

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

    async def run(self) -> None:
        """The reader task: one ``XREAD BLOCK`` on a dedicated connection over every watched
        stream; entries go into the replicas (whose readers are memory cursors), end markers
        end them, a stream gone for ``gone_grace_s`` (or Redis unreachable that long) ends
        them with a gap. Never returns; cancel it to stop."""
        pool: Any = self._redis.connection_pool
        conn: Any = None
        retry_s = 0.0
        try:
            while True:
                watched = {r.key: r for r in self.replicas.values()
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
                    # replaced by a new attempt (its ids may all be below our position: its
                    # owner's clock is behind, or the same ms): read it from its start
                    if replica.log.end or replica.log.closed:
                        logger.info("stream %s restarted below the reader's position",
                                    replica.key)
                        replica.new_attempt()
                    else:
                        # nothing of the replaced attempt was seen (an announced run, an attempt
                        # with no event yet): its readers wait on and follow the new one in the
                        # same log, as ``_feed`` does with a start marker (a race with the
                        # XREAD, which would have fed that marker had it come first)
                        replica.start_id = None
                    replica.pos = "0-0"
            elif replica.gone_since is None:
                replica.gone_since = now
            elif now - replica.gone_since >= self.gone_grace_s:
                self._vanish(replica)


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
