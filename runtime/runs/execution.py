"""RunExecution: how the run manager executes a run and finalizes it (a mixin of
``RunManager``; the cluster manager overrides ``_publisher``, ``_write_rollback``,
``_write_finish``, ``_end_stream`` and ``_requeue_after_shutdown`` to fence them with its lease).

A run executes as a child of the runtime's task group (``_execute``); a user cancel is one
``CancelledError`` it consumes (manager.py difference 7), a shutdown requeues it
(manager.py invariant 4). Finalization (``_finalize``) then writes its terminal status and
the thread it leaves in one transaction (rollback: deletes its checkpoints and the run), queues
its webhook, and only then ends its stream (design.md 4.7) and frees its thread's slot
(manager.py invariant 3). Nothing escapes a run task but cancellation (design.md 4.8).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import anyio

from runtime.bridge.protocol import StreamBridge
from runtime.checkpointer import Saver, delete_run_checkpoints
from runtime.errors import InvalidRequest
from runtime.graphs import GraphRegistry
from runtime.ids import now_iso
from runtime.logctx import bind
from runtime.metrics import run_finished
from runtime.run_result import finished_before_cancel, result_body
from runtime.runs.handle import RunHandle
from runtime.serialization import dumps
from runtime.spec import RunLimits
from runtime.store.protocol import Store
from runtime.types import CancelAction, Run, RunStatus, ThreadOutcome, ThreadStatus
from runtime.webhooks import delivery_for
from runtime.webhooks.outbox import WebhookOutbox
from runtime.worker import RunResult, completed_outcome, execute_run, read_outcome

logger = logging.getLogger(__name__)


class RunExecution:
    """The execution and finalization methods of ``RunManager`` (which sets these
    attributes)."""

    store: Store
    bridge: StreamBridge
    graphs: GraphRegistry
    checkpointer: Saver
    limits: RunLimits
    webhooks: WebhookOutbox | None
    _handles: dict[str, RunHandle]
    _release: Callable[[str], None]

    async def _execute(self, handle: RunHandle) -> None:
        run = handle.run
        graph = self.graphs.graph(run.graph_id)
        result = RunResult()
        task = asyncio.current_task()
        assert task is not None
        handle.task = task
        handle.started_ts = time.monotonic()
        handle.started_at = now_iso()
        bind(run_id=run.run_id, thread_id=run.thread_id)  # this task's log lines
        try:
            if handle.cancel_action is None:  # cancelled before it started: never runs
                handle.executing = True
                try:
                    result = await execute_run(graph, run, self._publisher(handle))
                except asyncio.CancelledError:
                    if not handle.signalled:
                        raise
                finally:
                    handle.executing = False
                if handle.signalled and task.cancelling():
                    task.uncancel()  # the user cancel was consumed (difference 7)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):  # shutdown: back to pending, not a failure
                await self._requeue_after_shutdown(handle)
            raise
        with anyio.move_on_after(self.limits.finalize_timeout_s, shield=True):
            try:
                await self._finalize(handle, result)
            except Exception:  # invariant 8: nothing escapes a run task but cancellation
                logger.exception("run %s: finalization failed", run.run_id)

    def _publisher(self, handle: RunHandle) -> Callable[[str, bytes], object]:
        """The publish callback of the run's execution (the cluster manager fences it)."""
        run_id = handle.run.run_id
        bridge = self.bridge
        return lambda event, data: bridge.publish(run_id, event, data)

    async def _write_rollback(self, handle: RunHandle) -> ThreadOutcome | None:
        """Rollback's writes: the run's checkpoints, then the run, deleted; the thread gets
        the state it is left with. None if nothing was written (cluster: lease lost)."""
        run = handle.run
        await delete_run_checkpoints(self.checkpointer, run.thread_id, run.run_id)
        outcome = await self._outcome(run, None)
        await self.store.delete_run(run.run_id, run.thread_id, outcome)
        return outcome

    async def _write_finish(self, handle: RunHandle, status: RunStatus,
                            outcome: ThreadOutcome) -> bool:
        """The terminal write (run status + the thread it leaves, one transaction). False if
        nothing was written (cluster: lease lost). Raises InvalidRequest (PostgreSQL: an
        output it cannot keep)."""
        await self.store.finish_run(handle.run.run_id, handle.run.thread_id, status, outcome)
        return True

    def _end_stream(self, handle: RunHandle) -> None:
        """End the run's stream once its terminal status is stored."""
        self.bridge.close(handle.run.run_id)

    async def _webhook(self, handle: RunHandle, status: str, outcome: ThreadOutcome) -> None:
        """Queue the run's webhook, if it has one, now that its terminal status is stored
        (runtime/webhooks: the outbox survives a restart; never fails the run). The outcome's
        values are decoded only then (a long thread's state is hundreds of KB)."""
        run = handle.run
        if self.webhooks is None or not run.kwargs.get("webhook"):
            return
        try:
            await self.webhooks.enqueue(delivery_for(run, status, outcome.state_values,
                                                     outcome.error, handle.started_at,
                                                     now_iso()))
        except Exception:
            logger.exception("run %s: queueing its webhook failed", run.run_id)

    async def _finalize(self, handle: RunHandle, result: RunResult) -> None:
        handle.finalizing = True  # before any await: cancels from now on find nothing to do
        run = handle.run
        try:
            if handle.lost:  # cluster: the run was taken over; write nothing more
                return
            settled = getattr(self.checkpointer, "settled", None)
            if settled is not None and handle.cancel_action is not None:
                await settled(run.thread_id)  # the cancelled graph's last writes have landed
            if handle.cancel_action == CancelAction.ROLLBACK:
                rolled_back = await self._write_rollback(handle)
                if rolled_back is None:
                    return
                run_finished("rollback", time.monotonic() - handle.started_ts)
                await self._webhook(handle, "rollback", rolled_back)
                self.bridge.discard(run.run_id)
                handle.result_body = dumps(rolled_back.values or {})
                self._handles.pop(run.run_id, None)  # deleted: reads must 404
                return
            ended = (completed_outcome(self.graphs.graph(run.graph_id), run, result)
                     if handle.cancel_action is None else None)
            outcome = ended or await self._outcome(run, result.error)
            if result.error:
                status = RunStatus.ERROR
            elif handle.cancel_action is None or finished_before_cancel(run, outcome):
                status = RunStatus.SUCCESS
            else:
                status = RunStatus.INTERRUPTED
            handle.result_body = result_body(result, outcome)
            try:
                if not await self._write_finish(handle, status, outcome):
                    handle.result_body = None  # taken over: waiters must not see a result
                    return
            except InvalidRequest as exc:  # an output the store cannot keep (U+0000 on PG)
                error = {"error": "InvalidRequest",
                         "message": f"The run's output cannot be stored: {exc}"}
                logger.warning("run %s: %s", run.run_id, error["message"])
                status = RunStatus.ERROR
                outcome = ThreadOutcome(ThreadStatus.ERROR, None, {}, error, run.graph_id,
                                        run.assistant_id)
                handle.result_body = dumps({"__error__": error})
                self.bridge.publish(run.run_id, "error", dumps(error))
                if not await self._write_finish(handle, status, outcome):
                    handle.result_body = None  # taken over: waiters must not see a result
                    return
            handle.run = run.replace(status=status, updated_at=now_iso())
            run_finished(str(status), time.monotonic() - handle.started_ts)
            await self._webhook(handle, str(status), outcome)
            if run.on_completion == "delete":
                await self._delete_thread_data(run.thread_id)
        finally:
            self._end_stream(handle)
            handle.done.set()
            self._release(run.thread_id)
            self._forget_later(run.run_id)

    async def _outcome(self, run: Run, error: dict[str, str] | None) -> ThreadOutcome:
        graph = self.graphs.graph(run.graph_id)
        try:
            return await read_outcome(graph, run, error)
        except Exception:
            logger.exception("run %s: reading the final state failed", run.run_id)
            return ThreadOutcome(ThreadStatus.ERROR if error else ThreadStatus.IDLE, None, {},
                                 error, run.graph_id, run.assistant_id)

    async def _requeue_after_shutdown(self, handle: RunHandle) -> None:
        """Put a run interrupted by shutdown back to ``pending`` for the next start."""
        await self.store.requeue_run(handle.run.run_id)
        self.bridge.abort(handle.run.run_id)  # streams break (not a clean end): clients retry
        handle.done.set()

    def _forget_later(self, run_id: str) -> None:
        def forget() -> None:
            self._handles.pop(run_id, None)

        asyncio.get_running_loop().call_later(self.limits.handle_retention_s, forget)

    async def _delete_thread_data(self, thread_id: str) -> None:
        try:
            await self.store.delete_thread(thread_id)
        except Exception:  # already deleted
            logger.debug("thread %s already gone", thread_id)
        await self.checkpointer.adelete_thread(thread_id)
