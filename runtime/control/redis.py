"""RedisControlChannel: cancels and wake-ups between gateway processes over Redis pub/sub
(``redis_url``; design.md 9, scale-out.md 1.3, 3.3, (b) steps 9 and 14).

Channels (``key_prefix`` defaults to ``gw:``, the bridge's):

``<prefix>control:cancel``: one message per cancel, JSON
    ``{"run_id": "...", "action": "interrupt" | "rollback", "from": "<sender id>"}``.
``<prefix>control:wake``: one message per batch of wake-ups; the payload is the sender id.

``from`` is the publishing channel's random ``instance_id``: a process delivers its own
signals locally inside ``publish_*`` (protocol rules 1 and 2) and skips their echo.

Design: the in-process half is ``LocalControlChannel``; this class adds two tasks, both in
``run``:

- the SENDER: ``publish_*`` deliver locally, append to an outbox and return (never waiting on
  Redis); the sender sends the outbox in one pipeline per batch, all the wake-ups of a batch as
  ONE message. A batch that fails is logged (a warning once per outage) and dropped: every
  signal has a slow path. The outbox is bounded (``max_outbox`` cancels, oldest dropped; the
  wake-ups are a flag), so an outage never grows memory.
- the LISTENER: one pub/sub connection per process, subscribed to both channels. It PINGs
  every ``ping_interval_s`` and treats ``3 x ping_interval_s`` without any reply as a dead
  connection (a silent network), as it treats a dropped one: close it, back off (50 ms
  doubling to ``retry_max_s``), subscribe again, forever; logged once per outage (warning),
  then once when back (info). Back, it sets the local wake flag (wake-ups may have been lost
  meanwhile). It never raises into the caller. While it is away, ``wait_wake`` times out as
  usual and the caller polls.

The client is created with no command retries: a failure reaches the loops, which own the
retrying.

Limits:
1. Pub/sub is at most once: a process that is reconnecting misses what is published
   meanwhile (scale-out.md 5.2). The lease renewal (cancel) and the claim poll (wake-up) are
   the slow paths that cover it.
2. A message received after the run it names has ended (or was never held here) is handed to
   the handlers, which ignore it.
3. ``connect`` does not check that Redis is reachable (the bridge does at start-up): the
   channel is useful, degraded to its slow paths, without Redis.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from runtime.control.local import LocalControlChannel
from runtime.types import CancelAction

logger = logging.getLogger(__name__)

_ACTIONS = {a.value: a for a in CancelAction}


class RedisControlChannel(LocalControlChannel):
    """Cross-process ControlChannel over Redis pub/sub. Run ``run`` in the runtime's task group.

    Args:
        client: a ``redis.asyncio.Redis`` (bytes responses; ``connect`` builds one).
        key_prefix: prefix of both channel names.
        ping_interval_s: how often the listener PINGs; ``3 x`` that without a reply is a dead
            connection.
        retry_max_s: the longest pause between two reconnection attempts.
        send_timeout_s: how long one batch may take before it is dropped as failed.
        max_outbox: cancels kept while a batch is in flight or Redis is slow (oldest dropped).

    Attributes:
        instance_id: this channel's random id (the ``from`` of what it publishes).
        connected: the listener is subscribed now.
    """

    def __init__(
        self, client: aioredis.Redis, *, key_prefix: str = "gw:", ping_interval_s: float = 5.0,
        retry_max_s: float = 2.0, send_timeout_s: float = 5.0, max_outbox: int = 10_000,
    ) -> None:
        super().__init__()
        self._redis = client
        self.cancel_channel = f"{key_prefix}control:cancel"
        self.wake_channel = f"{key_prefix}control:wake"
        self.ping_interval_s = ping_interval_s
        self.retry_max_s = retry_max_s
        self.send_timeout_s = send_timeout_s
        self.instance_id = uuid.uuid4().hex
        self.connected = False
        self._connected_event = anyio.Event()
        self._outbox: deque[str] = deque(maxlen=max_outbox)  # cancel payloads
        self._wake_pending = False
        self._send_event = anyio.Event()
        self._send_failing = False
        self._outage = False  # the listener lost Redis and has not got it back yet
        self._subscribed_once = False
        self._retry_s = 0.0

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, url: str, *, key_prefix: str = "gw:", client_name: str | None = None,
        **options: Any,
    ) -> AsyncIterator[RedisControlChannel]:
        """The channel on a client of ``url`` (``redis://host:port/db``); ``client_name``
        names its connections (``CLIENT LIST``), ``options`` are the constructor's. Does not
        contact Redis (limit 3); the client is closed on exit."""
        client = aioredis.from_url(
            url, decode_responses=False, client_name=client_name, socket_connect_timeout=5,
            socket_timeout=30, retry=Retry(NoBackoff(), 0))
        try:
            yield cls(client, key_prefix=key_prefix, **options)
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    # ---- publishing -----------------------------------------------------------------------

    async def publish_cancel(self, run_id: str, action: CancelAction) -> None:
        """Deliver to this process's handlers, then queue for the other processes (never
        waits on Redis, never raises because of it)."""
        self.deliver_cancel(run_id, action)
        if len(self._outbox) == self._outbox.maxlen:
            logger.warning("control outbox full: dropping the oldest cancel signal")
        self._outbox.append(json.dumps(
            {"run_id": run_id, "action": CancelAction(action).value, "from": self.instance_id}))
        self._send_event.set()

    async def publish_wake(self) -> None:
        """Wake this process's claim loop, then queue one wake-up for the others."""
        self.wake_local()
        self._wake_pending = True
        self._send_event.set()

    async def wait_connected(self, timeout_s: float, *, connected: bool = True) -> bool:
        """True once ``self.connected == connected`` (waiting at most ``timeout_s`` seconds):
        what a test awaits before publishing, since pub/sub has no replay."""
        with anyio.move_on_after(timeout_s):
            while self.connected != connected:
                await self._connected_event.wait()
        return self.connected == connected

    # ---- background -----------------------------------------------------------------------

    async def run(self) -> None:
        """The listener and the sender (module docstring). Never returns; cancel it to stop."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._send_loop, name="redis control sender")
            await self._listen_loop()

    async def _send_loop(self) -> None:
        while True:
            await self._send_event.wait()
            self._send_event = anyio.Event()
            cancels = list(self._outbox)
            self._outbox.clear()
            wake, self._wake_pending = self._wake_pending, False
            if not cancels and not wake:
                continue
            try:
                with anyio.fail_after(self.send_timeout_s):
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for payload in cancels:
                            pipe.publish(self.cancel_channel, payload)
                        if wake:
                            pipe.publish(self.wake_channel, self.instance_id)
                        await pipe.execute()
                if self._send_failing:
                    self._send_failing = False
                    logger.info("publishing control signals to Redis works again")
            except Exception as exc:  # a fast path: the slow path covers what is dropped
                level = logging.DEBUG if self._send_failing else logging.WARNING
                self._send_failing = True
                logger.log(level, "publishing %d cancel(s) and %d wake-up(s) to Redis failed "
                           "(%s: %s); dropped, the slow path covers them",
                           len(cancels), int(wake), type(exc).__name__, exc)

    async def _listen_loop(self) -> None:
        while True:
            pubsub: Any = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.cancel_channel, self.wake_channel)
                await self._listen(pubsub)
            except Exception as exc:  # never stop: Redis is only the fast path
                if not self._outage:
                    self._outage = True
                    logger.warning("control channel: Redis unreachable (%s: %s); reconnecting, "
                                   "signals use the slow path meanwhile", type(exc).__name__, exc)
                else:
                    logger.debug("control channel: reconnecting failed: %s", exc)
            finally:
                self._set_connected(False)
                with anyio.CancelScope(shield=True):
                    try:
                        await pubsub.aclose()
                    except Exception:
                        logger.debug("closing the control pub/sub failed", exc_info=True)
            self._retry_s = min(max(0.05, self._retry_s * 2), self.retry_max_s)
            await anyio.sleep(self._retry_s)

    async def _listen(self, pubsub: Any) -> None:
        """Read messages until the connection fails (raises); ``connected`` once both
        channels are confirmed."""
        confirmed: set[bytes] = set()
        now = time.monotonic()
        last_seen, next_ping = now, now + self.ping_interval_s
        while True:
            message = await pubsub.get_message(timeout=max(0.0, next_ping - now))
            now = time.monotonic()
            if message is not None:
                last_seen = now
                kind = message["type"]
                if kind == "message":
                    self._dispatch(message["channel"], message["data"])
                elif kind == "subscribe":
                    confirmed.add(message["channel"])
                    if len(confirmed) == 2:
                        self._on_subscribed()
            if now >= next_ping:
                if now - last_seen > 3 * self.ping_interval_s:
                    raise ConnectionError(f"no reply from Redis for {now - last_seen:.1f} s")
                await pubsub.ping()
                next_ping = now + self.ping_interval_s

    def _on_subscribed(self) -> None:
        if self._subscribed_once:
            self.wake_local()  # wake-ups may have been lost while away
        if self._outage:
            self._outage = False
            logger.info("control channel: Redis is back")
        self._subscribed_once = True
        self._retry_s = 0.0
        self._set_connected(True)

    def _set_connected(self, connected: bool) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        self._connected_event.set()
        self._connected_event = anyio.Event()

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        name = channel.decode()
        if name == self.wake_channel:
            if data.decode(errors="replace") != self.instance_id:
                self.wake_local()
            return
        if name != self.cancel_channel:
            return
        try:
            body = json.loads(data)
            run_id, action, sender = body["run_id"], _ACTIONS[body["action"]], body.get("from")
            if not isinstance(run_id, str):
                raise TypeError("run_id is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring a malformed cancel signal %r: %s", data[:200], exc)
            return
        if sender != self.instance_id:  # our own was delivered in publish_cancel
            self.deliver_cancel(run_id, action)
