"""RemoteControlChannel: what every cross-process control channel shares, whatever carries
the signals (redis.py: Redis pub/sub; pg_notify.py: PostgreSQL LISTEN/NOTIFY).

The in-process half is ``LocalControlChannel`` (this class extends it); on top of it:

- the payloads: a cancel is JSON ``{"run_id": "...", "action": "interrupt" | "rollback",
  "from": "<sender id>"}``, a wake-up's payload is the sender id (or anything else: a
  wake-up from no channel, e.g. PostgreSQL's ``NOTIFY`` in a transaction). ``from`` is the
  publishing channel's random ``instance_id``: a process delivers its own signals locally
  inside ``publish_*`` (protocol rules 1 and 2) and skips their echo.
- the SENDER task: ``publish_*`` deliver locally, append to an outbox and return (never waiting
  on the transport); the sender sends what accumulated as one batch (``_send``: every cancel,
  and all the wake-ups as ONE message). A batch that fails or takes over ``send_timeout_s``
  is logged (a warning once per outage, then debug) and dropped: every signal has a slow
  path. The outbox is bounded (``max_outbox`` cancels, oldest dropped; wake-ups are a flag),
  so an outage never grows memory.
- the LISTENER task: ``_listen`` (the transport's) receives until its connection fails; the
  loop here then backs off (50 ms doubling to ``retry_max_s``) and calls it again, forever,
  never raising into the caller; a warning once per outage, an info line when back. Back
  (not the first time), it sets the local wake flag: wake-ups may have been lost meanwhile.
  While it is away ``wait_wake`` times out as usual and the caller polls.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import deque
from typing import ClassVar

import anyio

from runtime.control.local import LocalControlChannel
from runtime.types import CancelAction

logger = logging.getLogger(__name__)

_ACTIONS = {a.value: a for a in CancelAction}


class RemoteControlChannel(LocalControlChannel):
    """Base of the cross-process channels: subclasses implement ``_send`` and ``_listen``.

    Args:
        ping_interval_s: how often the listener checks that its connection is alive
            (a silent network is a dead connection after a few intervals).
        retry_max_s: the longest pause between two reconnection attempts.
        send_timeout_s: how long one batch may take before it is dropped as failed.
        max_outbox: cancels kept while a batch is in flight (oldest dropped).

    Attributes:
        instance_id: this channel's random id (the ``from`` of what it publishes).
        connected: the listener is receiving now.
    """

    transport: ClassVar[str] = "the transport"  # for log lines

    def __init__(
        self, *, ping_interval_s: float = 5.0, retry_max_s: float = 2.0,
        send_timeout_s: float = 5.0, max_outbox: int = 10_000,
    ) -> None:
        super().__init__()
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
        self._outage = False  # the listener lost the transport and has not got it back
        self._listened_once = False
        self._retry_s = 0.0

    # ---- publishing -----------------------------------------------------------------------

    async def publish_cancel(self, run_id: str, action: CancelAction) -> None:
        """Deliver to this process's handlers, then queue for the other processes (never
        waits on the transport, never raises because of it)."""
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
        what a test awaits before publishing, since neither transport replays."""
        with anyio.move_on_after(timeout_s):
            while self.connected != connected:
                await self._connected_event.wait()
        return self.connected == connected

    # ---- background -----------------------------------------------------------------------

    async def run(self) -> None:
        """The listener and the sender (module docstring). Never returns; cancel it to stop."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._send_loop, name=f"control sender ({self.transport})")
            await self._listen_loop()

    async def _send(self, cancels: list[str], wake: bool) -> None:
        """Send one batch: each cancel payload, and one wake-up if ``wake``. Raises on
        failure (the caller logs and drops it)."""
        raise NotImplementedError

    async def _send_failed(self) -> None:
        """After a failed batch (or at the end): drop what the sender holds (a connection)."""

    async def _listen(self) -> None:
        """Receive until the connection fails (raise); call ``_on_listening`` once receiving,
        ``_received`` for each message; release the connection before returning."""
        raise NotImplementedError

    async def _send_loop(self) -> None:
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
                        await self._send(cancels, wake)
                except Exception as exc:  # a fast path: the slow path covers what is dropped
                    level = logging.DEBUG if self._send_failing else logging.WARNING
                    self._send_failing = True
                    logger.log(level, "publishing %d cancel(s) and %d wake-up(s) to %s failed "
                               "(%s: %s); dropped, the slow path covers them", len(cancels),
                               int(wake), self.transport, type(exc).__name__, exc)
                    await self._send_failed()
                    continue
                if self._send_failing:
                    self._send_failing = False
                    logger.info("publishing control signals to %s works again", self.transport)
        finally:
            await self._send_failed()

    async def _listen_loop(self) -> None:
        while True:
            try:
                await self._listen()
            except Exception as exc:  # never stop: the transport is only the fast path
                if not self._outage:
                    self._outage = True
                    logger.warning("control channel: %s unreachable (%s: %s); reconnecting, "
                                   "signals use the slow path meanwhile", self.transport,
                                   type(exc).__name__, exc)
                else:
                    logger.debug("control channel: reconnecting failed: %s", exc)
            finally:
                self._set_connected(False)
            self._retry_s = min(max(0.05, self._retry_s * 2), self.retry_max_s)
            await anyio.sleep(self._retry_s)

    def _on_listening(self) -> None:
        if self._listened_once:
            self.wake_local()  # wake-ups may have been lost while away
        if self._outage:
            self._outage = False
            logger.info("control channel: %s is back", self.transport)
        self._listened_once = True
        self._retry_s = 0.0
        self._set_connected(True)

    def _set_connected(self, connected: bool) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        self._connected_event.set()
        self._connected_event = anyio.Event()

    def _received_wake(self, sender: str) -> None:
        if sender != self.instance_id:  # our own woke us in publish_wake
            self.wake_local()

    def _received_cancel(self, payload: str | bytes) -> None:
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

