"""The ControlChannel Protocol: the fast path of the two signals gateway processes send each
other (design.md 9, scale-out.md (b) steps 2, 3, 9, 14).

- **cancel** ``(run_id, action)``: "run R: cancel with action A", addressed to whichever
  process executes R; the publisher does not know (or need to know) which. Every process's
  handler gets it and acts only if it holds R.
- **wake-up**: "there may be pending runs to claim" (after an admission, after a run ended and
  its thread's next run may start, after a sweep). It carries nothing: the claim loop asks the
  database what there is.

Both are FAST PATHS ONLY. Before anything is published the fact is durable in the store (the
run row, its ``cancel_action``); a lost signal costs latency, never correctness: the owner's
lease renewal finds a cancel, the claim loop's poll (``wait_wake``'s timeout) finds a pending
run. So an implementation may lose signals (Redis restarted, a NOTIFY while the listener
reconnects) and must never make its caller fail or wait because its transport is down.

How a RunManager uses it (one channel per process, ``run`` in the runtime's task group)::

    channel.on_cancel(self._deliver_cancel)   # sync: look up self._handles, cancel if held
    ...
    await store.request_cancel(run_id, action)  # durable first (first wins)
    await channel.publish_cancel(run_id, action)
    ...
    await store.admit(run)                      # committed
    await channel.publish_wake()
    ...
    while True:                                 # the claim loop
        await self._claim_what_fits()
        await channel.wait_wake(poll_s)         # True: woken; False: poll anyway

Delivery rules every implementation keeps:

1. A published cancel reaches the handlers of every process whose channel is connected,
   this one included; this process's handlers get it synchronously inside
   ``publish_cancel`` (before it returns, whatever the transport), other processes' within
   milliseconds. At most once per process in normal operation; a handler must still be
   idempotent (cancelling an already cancelled run is a no-op) and ignore runs it does not hold.
2. A published wake-up wakes this process's ``wait_wake`` at once and other processes'
   within milliseconds.
3. Wake-ups are a level, not a queue: one flag per process, set by any number of wake-ups,
   cleared by the ``wait_wake`` that returns True. A wake-up that arrives while nobody waits
   (the claim loop is busy claiming) is kept, so the next ``wait_wake`` returns True at once;
   a thousand wake-ups cost one claim round, never a thousand.
4. Publishing never raises and never waits on the transport: a failure is logged and the
   signal dropped (the slow path covers it).
5. While the transport is down, local delivery still works and ``wait_wake`` still times out
   (the caller polls); the channel reconnects with a backoff on its own, inside ``run``, and
   sets the wake flag once it is back (wake-ups may have been lost meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from runtime.types import CancelAction

CancelHandler = Callable[[str, CancelAction], None]
"""``handler(run_id, action)``: called on the event loop, synchronously; it must not block
and should not raise (an exception is logged and the next handler still runs)."""


class ControlChannel(Protocol):
    """Cancel signals and wake-ups between the gateway processes sharing one store."""

    def on_cancel(self, handler: CancelHandler) -> Callable[[], None]:
        """Register ``handler`` for every cancel published by any process (rule 1).

        Returns:
            A function that unregisters it (idempotent).
        """
        ...

    async def publish_cancel(self, run_id: str, action: CancelAction) -> None:
        """Ask whichever process executes ``run_id`` to cancel it with ``action``.

        Call it after the cancel intent is durable. This process's handlers have run when it
        returns; other processes get it through the transport. Never raises because of the
        transport and never waits on it (rule 4).
        """
        ...

    async def publish_wake(self) -> None:
        """Wake every process's claim loop, this one's included (rules 2 and 3).

        Call it after the transaction that made a run claimable committed. Never raises
        because of the transport and never waits on it (rule 4).
        """
        ...

    def wake_local(self) -> None:
        """Set this process's wake flag only (a slot of this process became free: no other
        process needs to know)."""
        ...

    async def wait_wake(self, timeout_s: float) -> bool:
        """Wait until a wake-up arrives or ``timeout_s`` seconds pass.

        Returns:
            True if woken (the flag was set, possibly before the call; it is cleared), False
            on timeout: the caller polls anyway, since signals may be lost. ``timeout_s <= 0``
            only reads and clears the flag.

        Cancellation: safe; a cancelled wait leaves the flag as it was.
        """
        ...

    async def run(self) -> None:
        """The channel's background work (receiving, sending, reconnecting); start it in the
        runtime's task group before publishing. Never returns and never raises because of
        the transport; cancel it to stop."""
        ...
