"""RedisControlChannel: cancels and wake-ups between gateway processes over Redis pub/sub
(``redis_url``; design.md 9, scale-out.md 1.3, 3.3, (b) steps 9 and 14).

Channels (``key_prefix`` defaults to ``gw:``, the bridge's):

``<prefix>control:cancel``: one message per cancel, the JSON of runtime/control/remote.py.
``<prefix>control:wake``: one message per batch of wake-ups; the payload is the sender id.

Design: runtime/control/remote.py's sender and listener (outbox, echo skipping, reconnect with
backoff, wake on return), with:

- sending: one pipeline per batch (a ``PUBLISH`` per cancel, one for the wake-ups), on the
  client's pool;
- listening: ONE pub/sub connection per process, subscribed to both channels (``connected``
  once both subscriptions are confirmed). It PINGs every ``ping_interval_s``; ``3 x
  ping_interval_s`` without any reply (a silent network) is a dead connection, as is a
  dropped one (Redis restarted, ``CLIENT KILL``).

The client is created with no command retries: a failure reaches the loops, which own the
retrying.

Limits:
1. Pub/sub is at most once: a process that is reconnecting misses what is published
   meanwhile (scale-out.md 5.2). The lease renewal (cancel) and the claim poll (wake-up) are
   the slow paths that cover it.
2. A message received after the run it names has ended (or for a run never held here) is
   handed to the handlers, which ignore it.
3. ``connect`` does not check that Redis is reachable (the bridge does at start-up): the
   channel is useful, degraded to its slow paths, without Redis.
4. Stop ``run`` before leaving ``connect`` (the runtime's task group ends first): the client
   is closed on exit.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from runtime.control.remote import RemoteControlChannel, logger


class RedisControlChannel(RemoteControlChannel):
    """Cross-process ControlChannel over Redis pub/sub. Run ``run`` in the runtime's task group.

    Args:
        client: a ``redis.asyncio.Redis`` (bytes responses; ``connect`` builds one).
        key_prefix: prefix of both channel names.
        options: ``RemoteControlChannel``'s (``ping_interval_s``, ``retry_max_s``,
            ``send_timeout_s``, ``max_outbox``).
    """

    transport = "Redis"

    def __init__(self, client: aioredis.Redis, *, key_prefix: str = "gw:",
                 **options: Any) -> None:
        super().__init__(**options)
        self._redis = client
        self.cancel_channel = f"{key_prefix}control:cancel"
        self.wake_channel = f"{key_prefix}control:wake"

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, url: str, *, key_prefix: str = "gw:", client_name: str | None = None,
        **options: Any,
    ) -> AsyncIterator[RedisControlChannel]:
        """The channel on a client of ``url`` (``redis://host:port/db``); ``client_name``
        names its connections (``CLIENT LIST``), ``options`` are the constructor's. Does not
        contact Redis (limit 3); the client is closed on exit (limit 4)."""
        client = aioredis.from_url(
            url, decode_responses=False, client_name=client_name, socket_connect_timeout=5,
            socket_timeout=30, retry=Retry(NoBackoff(), 0))
        try:
            yield cls(client, key_prefix=key_prefix, **options)
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    async def _send(self, cancels: list[str], wake: bool) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for payload in cancels:
                pipe.publish(self.cancel_channel, payload)
            if wake:
                pipe.publish(self.wake_channel, self.instance_id)
            await pipe.execute()

    async def _listen(self) -> None:
        pubsub: Any = self._redis.pubsub()
        try:
            await pubsub.subscribe(self.cancel_channel, self.wake_channel)
            await self._read(pubsub)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await pubsub.aclose()
                except Exception:
                    logger.debug("closing the control pub/sub failed", exc_info=True)

    async def _read(self, pubsub: Any) -> None:
        confirmed: set[bytes] = set()
        now = time.monotonic()
        last_seen, next_ping = now, now + self.ping_interval_s
        while True:
            message = await pubsub.get_message(timeout=max(0.0, next_ping - now))
            now = time.monotonic()
            if message is not None:
                last_seen = now
                kind, channel = message["type"], message["channel"]
                if kind == "message":
                    if channel == self.cancel_channel.encode():
                        self._received_cancel(message["data"])
                    elif channel == self.wake_channel.encode():
                        self._received_wake(message["data"].decode(errors="replace"))
                elif kind == "subscribe":
                    confirmed.add(channel)
                    if len(confirmed) == 2:
                        self._on_listening()
            if now >= next_ping:
                if now - last_seen > 3 * self.ping_interval_s:
                    raise ConnectionError(f"no reply from Redis for {now - last_seen:.1f} s")
                await pubsub.ping()
                next_ping = now + self.ping_interval_s
