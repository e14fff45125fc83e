"""RunCancels: cancel and delete, the part of the run manager that stops runs (a mixin of
``RunManager``; the cluster manager overrides ``cancel``, ``_cancel_active`` and
``delete_thread``).

A cancel is a durable intent plus a local signal (manager.py invariant 2); a user cancel is one
``CancelledError`` delivered to the run's task (manager.py difference 7); a delete cancels an
active run first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from runtime.bridge.protocol import StreamBridge
from runtime.checkpointer import Saver
from runtime.errors import NothingToCancel, RunNotFound
from runtime.runs.handle import RunHandle
from runtime.spec import RunLimits
from runtime.store.protocol import Store
from runtime.types import CancelAction, Run, RunStatus


class RunCancels:
    """The cancel and delete methods of ``RunManager`` (which sets these attributes)."""

    store: Store
    bridge: StreamBridge
    checkpointer: Saver
    limits: RunLimits
    _handles: dict[str, RunHandle]
    _queue: dict[str, RunHandle]
    _wake: Any
    _forget_later: Callable[[str], None]

    # ---- cancel --------------------------------------------------------------------------

    async def cancel(
        self, thread_id: str, run_id: str, action: CancelAction = CancelAction.INTERRUPT,
        wait: bool = False,
    ) -> bytes | None:
        """Cancel a pending or running run (``POST /threads/{t}/runs/{r}/cancel``).

        Returns:
            With ``wait``: the run's result body once it has stopped; else None.

        Raises:
            NothingToCancel: the run is finished, deleted or unknown (404 as the reference).
        """
        handle = self._handles.get(run_id)
        run = handle.run if handle else await self.store.get_run(run_id, thread_id)
        if run is None or run.thread_id != thread_id or run.status.is_terminal:
            raise NothingToCancel()
        await self._cancel_active(run, action)
        if wait and handle is not None:
            await handle.done.wait()
            return handle.result_body or b"{}"
        return None

    async def cancel_many(
        self, action: CancelAction, *, run_ids: list[str] | None = None,
        thread_id: str | None = None, status: str = "all",
    ) -> int:
        """Bulk cancel (``POST /runs/cancel``): the given runs, or a thread's active runs
        (``status`` ``pending``/``running``/``all``). Returns how many were cancelled.

        Raises:
            NothingToCancel: nothing matched.
        """
        if run_ids:
            candidates = [r for r in [await self.store.get_run(i) for i in run_ids] if r]
            if thread_id:
                candidates = [r for r in candidates if r.thread_id == thread_id]
        else:
            candidates = await self.store.active_runs(thread_id)
        if status != "all":
            candidates = [r for r in candidates if r.status == status]
        count = 0
        for run in candidates:
            if run.status.is_terminal:
                continue
            try:
                await self._cancel_active(run, action)
                count += 1
            except NothingToCancel:
                continue
        if count == 0:
            raise NothingToCancel()
        return count

    async def _cancel_active(self, run: Run, action: CancelAction) -> None:
        """Record the intent, then signal: never starts if pending, stops if running.

        The in-memory decision is taken before any await, so it is atomic with respect to the
        run's own finalization: either ``_finalize`` sees the intent, or the cancel finds the
        run already finishing and raises NothingToCancel (the run completed).
        """
        handle = self._handles.get(run.run_id)
        queued = False
        if handle is not None:
            if handle.finalizing or handle.done.is_set():
                raise NothingToCancel()
            if handle.cancel_action is None or action == CancelAction.ROLLBACK:
                handle.cancel_action = action
            queued = self._queue.pop(run.run_id, None) is not None
        if not await self.store.set_cancel_action(run.run_id, action):
            raise NothingToCancel()
        if handle is None:  # owned by no live task (left by an earlier process)
            await self.store.finish_run(run.run_id, run.thread_id, RunStatus.INTERRUPTED, None)
            return
        if queued:  # never started
            if action == CancelAction.ROLLBACK:
                await self.store.delete_run(run.run_id, run.thread_id)
                self.bridge.discard(run.run_id)
                self._handles.pop(run.run_id, None)
            else:
                await self.store.finish_run(run.run_id, run.thread_id, RunStatus.INTERRUPTED,
                                            None)
                handle.run = run.replace(status=RunStatus.INTERRUPTED)
                self.bridge.close(run.run_id)
            handle.result_body = b"{}"
            handle.done.set()
            self._forget_later(run.run_id)
            self._wake.set()
        else:
            self._signal(handle)

    @staticmethod
    def _signal(handle: RunHandle) -> None:
        """Deliver one cancellation to a run that is executing (difference 7)."""
        if handle.executing and not handle.signalled and handle.task is not None:
            handle.signalled = True
            handle.task.cancel()

    # ---- delete ------------------------------------------------------------------------

    async def delete(self, thread_id: str, run_id: str) -> None:
        """Delete a run (``DELETE /threads/{t}/runs/{r}``); an active run is cancelled first.

        Raises:
            RunNotFound: no such run on the thread.
        """
        run = await self.store.get_run(run_id, thread_id)
        if run is None:
            raise RunNotFound(run_id)
        if not run.status.is_terminal:
            try:
                await self.cancel(thread_id, run_id, CancelAction.INTERRUPT, wait=True)
            except NothingToCancel:
                pass
        if not await self.store.delete_run(run_id, thread_id):
            raise RunNotFound(run_id)
        self.bridge.discard(run_id)
        self._handles.pop(run_id, None)

    async def delete_thread(self, thread_id: str) -> None:
        """Delete a thread, its runs and checkpoints; active runs are cancelled first.

        Raises:
            ThreadNotFound: no such thread.
        """
        active = await self.store.delete_thread(thread_id)
        for run in active:
            handle = self._handles.get(run.run_id)
            if handle is None:
                continue
            handle.cancel_action = CancelAction.INTERRUPT
            if self._queue.pop(run.run_id, None) is not None:
                self.bridge.close(run.run_id)
                handle.done.set()
            else:
                self._signal(handle)
            with anyio.move_on_after(self.limits.finalize_timeout_s):
                await handle.done.wait()
        await self.checkpointer.adelete_thread(thread_id)
