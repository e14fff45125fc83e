"""Completion: a one-shot "this run has ended" signal with many waiters and done-callbacks.

It replaces an ``anyio.Event`` on each live run: creating one looked up the async library
(sniffio) on every run, and an Event cannot call back, so every ``/wait`` needed a task of its
own to learn that the run had ended. Callbacks run synchronously inside ``set()``, in the
order they were added, and must not raise. asyncio only (the gateway runs on asyncio/uvloop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Completion:
    """``set()`` once; ``await wait()`` from any number of tasks; ``add_done_callback(fn)``."""

    __slots__ = ("_done", "_callbacks")

    def __init__(self) -> None:
        self._done = False
        self._callbacks: list[Callable[[], object]] = []

    def is_set(self) -> bool:
        """True once ``set()`` has been called."""
        return self._done

    def set(self) -> None:
        """Mark done and run the callbacks (at most once; later calls do nothing)."""
        if self._done:
            return
        self._done = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def add_done_callback(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` when done (at once if already done)."""
        if self._done:
            callback()
        else:
            self._callbacks.append(callback)

    def remove_done_callback(self, callback: Callable[[], object]) -> None:
        """Forget ``callback`` if it has not run yet."""
        try:
            self._callbacks.remove(callback)
        except ValueError:
            pass

    async def wait(self) -> None:
        """Return once done. Cancelling a waiter affects no other waiter."""
        if self._done:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        self._callbacks.append(wake)
        try:
            await future
        finally:
            self.remove_done_callback(wake)
