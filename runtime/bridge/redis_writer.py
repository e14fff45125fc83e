"""RedisStreamWriter: the batched flusher of ``RedisStreamBridge`` (runtime/bridge/redis.py),
which copies this process's run logs into their Redis Streams.

What it owns: the queue of Redis ops (start markers, events, end markers, deletes) that the
bridge's ``open`` / ``publish`` / ``close`` / ``abort`` / ``discard`` add, the one flusher task
that sends them in pipelined batches (one Lua call per run per batch appends its events, trims
and rolls the TTL), the exact trims that keep Redis equal to the local logs, the rolling TTL of
every open run's stream, and the write fence. The key layout is in redis_layout.py's docstring.

It keeps redis.py's invariants 2 (Redis holds exactly what the local log holds), 3 (ops are sent
in the order they were queued; a batch that deletes a stream is one ``MULTI``/``EXEC``) and 4
(queuing never waits and never raises; a failed batch is retried with a backoff; past
``max_queued`` the oldest ops are dropped), and limit 7 (writes are fenced by the writer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import anyio
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from runtime.bridge.memory import _RunLog
from runtime.bridge.protocol import BridgeLimits
from runtime.bridge.redis_layout import _CLOSED, _FIELD_END, _FIELD_START
from runtime.types import StreamEvent

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

# queued ops, in order (redis.py invariant 3)
_Reset = tuple[Literal["reset"], str, str]  # DEL + start marker id
_Add = tuple[Literal["add"], str, StreamEvent]
_End = tuple[Literal["end"], str, str, bytes]  # marker id, closed/aborted
_Discard = tuple[Literal["discard"], str, str]  # DEL + end marker id
_Op = _Reset | _Add | _End | _Discard


class RedisStreamWriter:
    """Sends the bridge's queued Redis ops; ``RedisStreamBridge`` owns one and runs ``run`` in
    its own ``run``.

    Args:
        client: the bridge's ``redis.asyncio.Redis`` (bytes responses).
        logs: the bridge's local run logs (the same dict: what Redis must mirror).
        key: run_id -> the Redis key of the run's stream (the bridge's ``key``).
        limits: the bounds of every log, local and in Redis.
        live_ttl_s: TTL of a live run's stream.
        max_queued: ops kept for Redis while it is unreachable (redis.py invariant 4).
    """

    def __init__(
        self, client: aioredis.Redis, logs: dict[str, _RunLog], key: Callable[[str], str],
        limits: BridgeLimits, *, live_ttl_s: float, max_queued: int,
    ) -> None:
        self._redis = client
        self.key = key
        self.limits = limits
        self.live_ttl_s = live_ttl_s
        self.ops: list[_Op] = []  # in the order they were queued (redis.py invariant 3)
        self.max_queued = max_queued
        self._logs = logs  # the bridge's (the same dict): what Redis must mirror
        self._trimmed: dict[str, int] = {}  # run_id -> local log base already trimmed in Redis
        self._wake = anyio.Event()
        self._lock = anyio.Lock()
        self._retry_s = 0.0
        self.may_write: Callable[[str], bool] | None = None  # the fence (redis.py limit 7)

    def queue(self, op: _Op) -> None:
        """Queue ``op`` for the next batch (never waits, never raises: redis.py invariant 4)."""
        self.ops.append(op)
        if len(self.ops) > self.max_queued:
            drop = len(self.ops) - self.max_queued
            logger.warning("Redis unreachable: dropping %d queued stream ops (run_id %s ...)",
                           drop, self.ops[0][1])
            del self.ops[:drop]
        self._wake.set()

    def forget(self, run_id: str) -> None:
        """Drop the run's queued ops and what is known of its trims (nothing is sent)."""
        self.ops = [op for op in self.ops if op[1] != run_id]
        self._trimmed.pop(run_id, None)

    def reset(self, run_id: str, start_id: str) -> None:
        """Queue a fresh stream for the run: its old one is deleted and a start marker with id
        ``start_id`` written (redis.py invariant 1)."""
        self.queue(("reset", run_id, start_id))
        self._trimmed.pop(run_id, None)

    async def run(self) -> None:
        """The flusher: sends what is queued as soon as it is queued (one pipeline per batch:
        what accumulates while a batch is in flight makes the next one) and refreshes the TTL
        of every open run's stream every ``live_ttl_s / 4``. Never returns; cancel it to stop."""
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
            except Exception:  # Redis is a cache: never stop the runs (redis.py invariant 4)
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
            ops, self.ops = self.ops, []
            if self.may_write is not None and ops:
                fenced = {op[1] for op in ops if not self.may_write(op[1])}
                if fenced:
                    logger.warning("dropping stream writes of run_id %s: this process's lease "
                                   "of the run is gone", ", ".join(sorted(fenced)))
                    ops = [op for op in ops if op[1] not in fenced]
            if not ops:
                return
            try:
                # a DEL and its new start in one MULTI/EXEC, so no reader sees the stream
                # missing in between (redis.py invariant 3); other batches need no
                # transaction
                atomic = any(op[0] != "add" and op[0] != "end" for op in ops)
                async with self._redis.pipeline(transaction=atomic) as pipe:
                    trims: dict[str, int] = {}
                    labels = await self._build(pipe, ops, trims)
                    results = await pipe.execute(raise_on_error=False)
            except BaseException:
                self.ops[:0] = ops  # sent again: a repeated XADD is refused, harmlessly
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
                    # an id at or below the top: a retried batch or a stale owner (redis.py
                    # limit 7)
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
            # EVAL with the body, not a Script object: a pipeline holding Script calls first
            # asks Redis whether they are loaded (SCRIPT EXISTS), one more round trip per
            # batch; and EVAL never meets NOSCRIPT (a restarted Redis), which EVALSHA would in
            # the middle of a batch whose end marker had landed
            pipe.eval(_APPEND_LUA, 1, self.key(run_id), *args)
            labels.append(("XADD", run_id))

        for op in ops:
            run_id = op[1]
            if op[0] == "add":
                item = op[2]
                log = self._logs.get(run_id)
                # an event the local log has dropped is not sent (redis.py invariant 2)
                if log is None or item.seq > log.base:
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
