"""LocalControlChannel: the control channel of a single process (SQLite, or any deployment of
one gateway process): cancels go straight to this process's handlers, wake-ups set this
process's wake flag. No transport, so nothing is ever lost.

It is also the in-process half of every other implementation (redis.py, pg_notify.py subclass
it): their ``publish_*`` deliver locally through it first, then send, and what they receive
from other processes goes through ``deliver_cancel`` and ``wake_local``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from runtime.control.protocol import CancelHandler
from runtime.types import CancelAction

logger = logging.getLogger(__name__)


class LocalControlChannel:
    """In-process ControlChannel (runtime/control/protocol.py): delivery rules 1 to 3 with no
    transport; ``run`` only waits to be cancelled."""

    def __init__(self) -> None:
        self._handlers: list[CancelHandler] = []
        self._woken = anyio.Event()

    def on_cancel(self, handler: CancelHandler) -> Callable[[], None]:
        """Register ``handler`` for every cancel; returns its (idempotent) unregistration."""
        self._handlers.append(handler)

        def remove() -> None:
            if handler in self._handlers:
                self._handlers.remove(handler)

        return remove

    async def publish_cancel(self, run_id: str, action: CancelAction) -> None:
        """Deliver the cancel to this process's handlers (synchronously, before returning)."""
        self.deliver_cancel(run_id, action)

    async def publish_wake(self) -> None:
        """Set this process's wake flag."""
        self.wake_local()

    async def wait_wake(self, timeout_s: float) -> bool:
        """True when the wake flag is (or becomes) set within ``timeout_s``; it is cleared.
        False on timeout. Cancellation leaves the flag as it was."""
        woken = self._woken
        if not woken.is_set() and timeout_s > 0:
            with anyio.move_on_after(timeout_s):
                await woken.wait()
        if not woken.is_set():
            return False
        if self._woken is woken:  # the first of several waiters clears it
            self._woken = anyio.Event()
        return True

    async def run(self) -> None:
        """Nothing to do in the background: waits until cancelled."""
        await anyio.sleep_forever()

    # ---- the in-process half (used by the transports too) -------------------------------------

    def deliver_cancel(self, run_id: str, action: CancelAction) -> None:
        """Call every handler with ``(run_id, action)``; a handler that raises is logged and
        the others still run."""
        for handler in list(self._handlers):
            try:
                handler(run_id, action)
            except Exception:
                logger.exception("cancel handler %r failed for run_id %s", handler, run_id)

    def wake_local(self) -> None:
        """Set this process's wake flag (rule 3: a level, not a queue)."""
        self._woken.set()
