"""SplitControlChannel: cancels over one channel, wake-ups over another: the scale-out
composition (issue 11, scale-out.md (b) steps 2, 3, 9, 14) is cancels over Redis pub/sub
(``RedisControlChannel``) and wake-ups over PostgreSQL LISTEN/NOTIFY
(``PgNotifyControlChannel``), so that claims keep being woken when Redis is away and an
admission may notify inside its own transaction (``pg_notify.NOTIFY_WAKE_SQL``).

Each part keeps its own delivery rules (runtime/control/protocol.py); the split adds none.
What the unused half of each part receives (wake-ups on the cancel channel's transport,
cancels on the wake channel's) goes nowhere: nobody waits on it and no handler is registered.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from runtime.control.protocol import CancelHandler, ControlChannel
from runtime.types import CancelAction


class SplitControlChannel:
    """A ControlChannel whose cancels travel on ``cancels`` and wake-ups on ``wakes``.

    ``run`` runs both parts' ``run`` (a part passed twice runs once).
    """

    def __init__(self, cancels: ControlChannel, wakes: ControlChannel) -> None:
        self.cancels = cancels
        self.wakes = wakes

    def on_cancel(self, handler: CancelHandler) -> Callable[[], None]:
        """Register ``handler`` on the cancel part."""
        return self.cancels.on_cancel(handler)

    async def publish_cancel(self, run_id: str, action: CancelAction) -> None:
        """Publish on the cancel part."""
        await self.cancels.publish_cancel(run_id, action)

    async def publish_wake(self) -> None:
        """Publish on the wake part."""
        await self.wakes.publish_wake()

    def wake_local(self) -> None:
        """Set the wake part's local flag."""
        self.wakes.wake_local()

    async def wait_wake(self, timeout_s: float) -> bool:
        """Wait on the wake part."""
        return await self.wakes.wait_wake(timeout_s)

    async def run(self) -> None:
        """Both parts' background work. Never returns; cancel it to stop."""
        async with anyio.create_task_group() as tg:
            if self.cancels is not self.wakes:
                tg.start_soon(self.cancels.run, name="control channel (cancels)")
            await self.wakes.run()
