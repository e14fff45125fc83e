"""PgNotifyControlChannel: cancels and wake-ups between gateway processes through PostgreSQL
``LISTEN``/``NOTIFY`` (scale-out.md (b) steps 2, 3 and 9), for a deployment on PostgreSQL
alone, or for wake-ups next to Redis. The same delivery rules as every ControlChannel
(runtime/control/protocol.py).

Channels (``channel_prefix`` defaults to ``gw_``; NOTIFY channels are per database):

``gw_runs``: wake-ups. The payload is the sender's ``instance_id``, or empty: the admission
    transaction may notify itself with ``NOTIFY_WAKE_SQL``, which PostgreSQL delivers at
    COMMIT (never for a rolled-back run, never before the run is visible) and which wakes
    every process, the admitting one included.
``gw_cancel``: cancels, JSON ``{"run_id": "...", "action": "interrupt" | "rollback",
    "from": "<sender id>"}`` (well under NOTIFY's 8000-byte payload limit).

A process skips the echo of what it published itself (delivered locally in ``publish_*``).

Design: the in-process half is ``LocalControlChannel``; ``run`` adds two tasks, each on its
own dedicated, non-pooled psycopg ``AsyncConnection`` in autocommit mode (a pooled or
PgBouncer-transaction connection would lose the ``LISTEN``; scale-out.md 5.3):

- the LISTENER: ``LISTEN`` on both channels, then ``notifies()`` in rounds of
  ``ping_interval_s``, each followed by a ``SELECT 1`` bounded by ``ping_interval_s`` (a
  silent network is a dead connection). On any failure: close, back off (50 ms doubling to
  ``retry_max_s``), connect and ``LISTEN`` again, forever; a warning once per outage, an info
  line when back, and the wake flag set when back (wake-ups may have been lost meanwhile).
- the SENDER: ``publish_*`` deliver locally, append to a bounded outbox and return (never
  waiting on PostgreSQL); the sender sends each batch in one statement (every cancel of the
  batch through ``unnest``, the batch's wake-ups as ONE notification) on its own connection,
  opened on first use and again after a failure. A failed batch is logged and dropped.

Limits:
1. NOTIFY HAS NO REPLAY: a notification sent while a listener is reconnecting is lost for
   it (and one sent to a process that is not listening yet). The claim loop must poll anyway
   (``wait_wake``'s timeout), and the lease renewal is the slow path of a cancel.
2. PostgreSQL queues notifications for a listener that reads slowly (8 GB queue by
   default); the listener reads continuously and its work per message is a dict lookup.
3. ``connect`` does not contact PostgreSQL: the channel degrades to the slow paths without it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
import psycopg

from runtime.control.local import LocalControlChannel
from runtime.types import CancelAction

logger = logging.getLogger(__name__)

WAKE_CHANNEL = "gw_runs"
CANCEL_CHANNEL = "gw_cancel"
NOTIFY_WAKE_SQL = "SELECT pg_notify('gw_runs', '')"
"""Run it inside the transaction that makes a run claimable (admission, a run's end, a
sweep): every listening process is woken when, and only if, that transaction commits."""

_ACTIONS = {a.value: a for a in CancelAction}


class PgNotifyControlChannel(LocalControlChannel):
    """Cross-process ControlChannel over PostgreSQL LISTEN/NOTIFY. Run ``run`` in the
    runtime's task group.

    Args:
        url: the database (``postgresql://user@host:port/db``): every process of the
            deployment must use the same one (notifications are per database).
        channel_prefix: prefix of both channel names (``<prefix>runs``, ``<prefix>cancel``);
            ``NOTIFY_WAKE_SQL`` is for the default one.
        ping_interval_s: how often the listener checks its connection.
        retry_max_s: the longest pause between two reconnection attempts.
        send_timeout_s: how long one batch may take before it is dropped as failed.
        max_outbox: cancels kept while a batch is in flight (oldest dropped).

    Attributes:
        instance_id: this channel's random id (the ``from`` of what it publishes).
        connected: the listener is listening now.
        listener_pid: the PostgreSQL backend pid of the listener's connection (None when
            it has none).
    """

    def __init__(
        self, url: str, *, channel_prefix: str = "gw_", ping_interval_s: float = 5.0,
        retry_max_s: float = 2.0, send_timeout_s: float = 5.0, max_outbox: int = 10_000,
    ) -> None:
        super().__init__()
        self._url = url
        self.wake_channel = f"{channel_prefix}runs"
        self.cancel_channel = f"{channel_prefix}cancel"
        self.ping_interval_s = ping_interval_s
        self.retry_max_s = retry_max_s
        self.send_timeout_s = send_timeout_s
        self.instance_id = uuid.uuid4().hex
        self.connected = False
        self.listener_pid: int | None = None
        self._connected_event = anyio.Event()
        self._outbox: deque[str] = deque(maxlen=max_outbox)
        self._wake_pending = False
        self._send_event = anyio.Event()
        self._send_failing = False
        self._outage = False
        self._listened_once = False
        self._retry_s = 0.0

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, **options: Any) -> AsyncIterator[PgNotifyControlChannel]:
        """The channel (``options`` are the constructor's); its connections are opened by
        ``run`` and closed when it stops. Does not contact PostgreSQL (limit 3)."""
        yield cls(url, **options)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        with anyio.fail_after(self.send_timeout_s + 5):
            return await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=max(2, int(self.send_timeout_s)))

    # ---- publishing -----------------------------------------------------------------------

    async def publish_cancel(self, run_id: str, action: CancelAction) -> None:
        """Deliver to this process's handlers, then queue for the other processes (never
        waits on PostgreSQL, never raises because of it)."""
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
        what a test awaits before publishing, since NOTIFY has no replay."""
        with anyio.move_on_after(timeout_s):
            while self.connected != connected:
                await self._connected_event.wait()
        return self.connected == connected

    # ---- background -----------------------------------------------------------------------

    async def run(self) -> None:
        """The listener and the sender (module docstring). Never returns; cancel it to stop."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._send_loop, name="pg control sender")
            await self._listen_loop()

    async def _send_loop(self) -> None:
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
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
                        if conn is None or conn.closed:
                            conn = await self._connect()
                        if cancels:
                            await conn.execute(
                                "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p",
                                (self.cancel_channel, cancels))
                        if wake:
                            await conn.execute("SELECT pg_notify(%s, %s)",
                                               (self.wake_channel, self.instance_id))
                    if self._send_failing:
                        self._send_failing = False
                        logger.info("publishing control signals to PostgreSQL works again")
                except Exception as exc:  # a fast path: the slow path covers what is dropped
                    level = logging.DEBUG if self._send_failing else logging.WARNING
                    self._send_failing = True
                    logger.log(level, "publishing %d cancel(s) and %d wake-up(s) to PostgreSQL "
                               "failed (%s: %s); dropped, the slow path covers them",
                               len(cancels), int(wake), type(exc).__name__, exc)
                    if conn is not None:
                        await _close(conn)
                        conn = None
        finally:
            if conn is not None:
                await _close(conn)

    async def _listen_loop(self) -> None:
        while True:
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                conn = await self._connect()
                self.listener_pid = conn.info.backend_pid
                await conn.execute(f'LISTEN "{self.wake_channel}"')
                await conn.execute(f'LISTEN "{self.cancel_channel}"')
                self._on_listening()
                while True:
                    async with aclosing(conn.notifies(timeout=self.ping_interval_s)) as gen:
                        async for notify in gen:
                            self._dispatch(notify.channel, notify.payload)
                    with anyio.fail_after(self.ping_interval_s):
                        await conn.execute("SELECT 1")
            except Exception as exc:  # never stop: NOTIFY is only the fast path
                if not self._outage:
                    self._outage = True
                    logger.warning("control channel: PostgreSQL LISTEN lost (%s: %s); "
                                   "reconnecting, signals use the slow path meanwhile",
                                   type(exc).__name__, exc)
                else:
                    logger.debug("control channel: reconnecting failed: %s", exc)
            finally:
                self._set_connected(False)
                self.listener_pid = None
                if conn is not None:
                    await _close(conn)
            self._retry_s = min(max(0.05, self._retry_s * 2), self.retry_max_s)
            await anyio.sleep(self._retry_s)

    def _on_listening(self) -> None:
        if self._listened_once:
            self.wake_local()  # wake-ups may have been lost while away (limit 1)
        if self._outage:
            self._outage = False
            logger.info("control channel: PostgreSQL LISTEN is back")
        self._listened_once = True
        self._retry_s = 0.0
        self._set_connected(True)

    def _set_connected(self, connected: bool) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        self._connected_event.set()
        self._connected_event = anyio.Event()

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == self.wake_channel:
            if payload != self.instance_id:
                self.wake_local()
            return
        if channel != self.cancel_channel:
            return
        try:
            body = json.loads(payload)
            run_id, action, sender = body["run_id"], _ACTIONS[body["action"]], body.get("from")
            if not isinstance(run_id, str):
                raise TypeError("run_id is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring a malformed cancel signal %r: %s", payload[:200], exc)
            return
        if sender != self.instance_id:  # our own was delivered in publish_cancel
            self.deliver_cancel(run_id, action)


async def _close(conn: psycopg.AsyncConnection[Any]) -> None:
    with anyio.move_on_after(2, shield=True):
        try:
            await conn.close()
        except Exception:
            logger.debug("closing a control connection failed", exc_info=True)
