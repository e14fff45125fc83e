"""PgNotifyControlChannel: cancels and wake-ups between gateway processes through PostgreSQL
``LISTEN``/``NOTIFY`` (scale-out.md (b) steps 2, 3 and 9), for a deployment on PostgreSQL
alone, or for wake-ups next to Redis. The same delivery rules as every ControlChannel
(runtime/control/protocol.py).

Channels (``channel_prefix`` defaults to ``gw_``; NOTIFY channels are per database):

``gw_runs``: wake-ups. The payload is the sender's ``instance_id``, or empty: the admission
    transaction may notify itself with ``NOTIFY_WAKE_SQL``, which PostgreSQL delivers at
    COMMIT (never for a rolled-back run, never before the run is visible) and which wakes
    every process, the admitting one included.
``gw_cancel``: cancels, the JSON of runtime/control/remote.py (well under NOTIFY's
    8000-byte payload limit).

Design: runtime/control/remote.py's sender and listener (outbox, echo skipping, reconnect
with backoff, wake on return), each on its own dedicated, non-pooled psycopg
``AsyncConnection`` in autocommit mode (a pooled or PgBouncer-transaction connection would
lose the ``LISTEN``; scale-out.md 5.3):

- listening: ``LISTEN`` on both channels, then ``notifies()`` in rounds of ``ping_interval_s``,
  each followed by a ``SELECT 1`` bounded by ``ping_interval_s`` (a silent network is a dead
  connection); ``listener_pid`` is its backend's pid;
- sending: one statement for the cancels of a batch (``pg_notify`` over ``unnest``), one for
  its wake-ups, on a connection opened by the first batch and again after a failure.

Limits:
1. NOTIFY HAS NO REPLAY: a notification sent while a listener is reconnecting is lost for
   it (and one sent to a process that is not listening yet). The claim loop must poll anyway
   (``wait_wake``'s timeout), and the lease renewal is the slow path of a cancel.
2. PostgreSQL queues notifications for a listener that reads slowly (8 GB queue by
   default); the listener reads continuously and its work per message is a dict lookup.
3. ``connect`` does not contact PostgreSQL: the channel degrades to the slow paths without it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
import psycopg

from runtime.control.remote import RemoteControlChannel, logger

WAKE_CHANNEL = "gw_runs"
CANCEL_CHANNEL = "gw_cancel"
NOTIFY_WAKE_SQL = "SELECT pg_notify('gw_runs', '')"
"""Run it inside the transaction that makes a run claimable (admission, a run's end, a
sweep): every listening process is woken when, and only if, that transaction commits."""


class PgNotifyControlChannel(RemoteControlChannel):
    """Cross-process ControlChannel over PostgreSQL LISTEN/NOTIFY. Run ``run`` in the
    runtime's task group.

    Args:
        url: the database (``postgresql://user@host:port/db``): every process of the
            deployment must use the same one (notifications are per database).
        channel_prefix: prefix of both channel names (``<prefix>runs``, ``<prefix>cancel``);
            ``NOTIFY_WAKE_SQL`` is for the default one.
        options: ``RemoteControlChannel``'s (``ping_interval_s``, ``retry_max_s``,
            ``send_timeout_s``, ``max_outbox``).

    Attributes:
        listener_pid: the backend pid of the listener's connection (None while it has none).
    """

    transport = "PostgreSQL"

    def __init__(self, url: str, *, channel_prefix: str = "gw_", **options: Any) -> None:
        super().__init__(**options)
        self._url = url
        self.wake_channel = f"{channel_prefix}runs"
        self.cancel_channel = f"{channel_prefix}cancel"
        self.listener_pid: int | None = None
        self._sender: psycopg.AsyncConnection[Any] | None = None

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, **options: Any) -> AsyncIterator[PgNotifyControlChannel]:
        """The channel (``options`` are the constructor's); its connections are opened by
        ``run`` and closed when it stops. Does not contact PostgreSQL (limit 3)."""
        yield cls(url, **options)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        with anyio.fail_after(self.send_timeout_s + 1):
            return await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=max(2, int(self.send_timeout_s)))

    async def _send(self, cancels: list[str], wake: bool) -> None:
        if self._sender is None or self._sender.closed:
            self._sender = await self._connect()
        if cancels:
            await self._sender.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p",
                                       (self.cancel_channel, cancels))
        if wake:
            await self._sender.execute("SELECT pg_notify(%s, %s)",
                                       (self.wake_channel, self.instance_id))

    async def _send_failed(self) -> None:
        conn, self._sender = self._sender, None
        if conn is not None:
            await _close(conn)

    async def _listen(self) -> None:
        conn = await self._connect()
        try:
            self.listener_pid = conn.info.backend_pid
            await conn.execute(f'LISTEN "{self.wake_channel}"')
            await conn.execute(f'LISTEN "{self.cancel_channel}"')
            self._on_listening()
            while True:
                async with aclosing(conn.notifies(timeout=self.ping_interval_s)) as notifies:
                    async for notify in notifies:
                        if notify.channel == self.cancel_channel:
                            self._received_cancel(notify.payload)
                        elif notify.channel == self.wake_channel:
                            self._received_wake(notify.payload)
                with anyio.fail_after(self.ping_interval_s):
                    await conn.execute("SELECT 1")
        finally:
            self.listener_pid = None
            await _close(conn)


async def _close(conn: psycopg.AsyncConnection[Any]) -> None:
    with anyio.move_on_after(2, shield=True):
        try:
            await conn.close()
        except Exception:
            logger.debug("closing a control connection failed", exc_info=True)
