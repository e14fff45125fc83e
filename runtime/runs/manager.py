"""RunManager: admission, multitask strategies, the scheduler, cancel, wait and join.

Flow of a run (design.md section 2): ``create()`` admits it atomically in the store and opens
its event log. When a slot under ``max_concurrent_runs`` is free and its thread has nothing
pending or running, the same transaction stores it ``running`` and ``create()`` starts it
(no trip through the scheduler: one transaction and one wake-up less per run). Otherwise it is
stored ``pending`` and the scheduler starts the oldest pending run of a thread as soon as the
thread has no running run and a slot is free. The run executes as a child of the runtime's task
group and is stopped by one cancellation; its terminal status and the thread it leaves are
written in one transaction, and only then is its log closed.

Here: lifecycle, the scheduler and create. The live state of a run is a ``RunHandle``
(handle.py); execution and finalization are the ``RunExecution`` mixin (execution.py), the
read, wait and join methods the ``RunReads`` mixin (reads.py), cancel and delete the
``RunCancels`` mixin (cancels.py).

Invariants:
1. One ``RunHandle`` per admitted run, registered before ``create()`` returns, so a cancel can
   always find it; it never leaves ``runtime/``.
2. Cancel is a durable intent (``runs.cancel_action``) plus a local signal (design.md 4.3).
3. A thread's next run starts only after the previous one has left ``running`` and written
   (or, for rollback, deleted) its checkpoints.
4. Shutdown is not a user cancel: a run stopped by shutdown goes back to ``pending``.

Deliberate differences from the reference (protocol.md section 10):
5. Runs start immediately (no queue polling); runs on different threads run concurrently.
6. The thread status is recomputed in the store after every change, so rollback never leaves a
   thread ``busy`` and cancelling a queued run never marks a busy thread ``idle``.

Deliberate difference from design.md section 5 ("each run owns a CancelScope"):
7. A user cancel is delivered as ONE ``CancelledError`` to the run's task (``Task.cancel``,
   then ``uncancel``), not through an anyio cancel scope. LangGraph's clean-up awaits its
   in-flight checkpoint writes (``AsyncBackgroundExecutor.__aexit__``); a level-triggered anyio
   scope cancels that await too, so writes landed after the rollback had deleted checkpoints
   (found by the rollback tests). Shutdown still cancels through the task group's scope.

Invariant of admission:
8. All-or-nothing: ``create()`` either raises and leaves no run behind, or returns the stored
   run; nothing after the store's insert can turn it into an error (a client told "failed"
   must not find its work done).
"""

from __future__ import annotations

import logging
import math
import time

import anyio
from anyio.abc import TaskGroup

from runtime.assistants.directory import resolve_for_run
from runtime.assistants.edit import merge_run
from runtime.bridge.protocol import StreamBridge
from runtime.checkpointer import Saver
from runtime.errors import BadRequest, NothingToCancel, Unavailable
from runtime.graphs import GraphRegistry
from runtime.runs.cancels import RunCancels
from runtime.runs.execution import RunExecution
from runtime.runs.handle import RunHandle
from runtime.runs.reads import RunReads
from runtime.spec import RunLimits, RunSpec, build_run, check_context
from runtime.store.protocol import Store
from runtime.types import CancelAction, MultitaskStrategy, Run, RunStatus
from runtime.webhooks.outbox import WebhookOutbox

logger = logging.getLogger(__name__)


class RunManager(RunExecution, RunCancels, RunReads):
    """Creates, schedules, cancels and awaits runs. Build it with ``runtime.core.open_runtime``.

    Args:
        store: the RunStore/ThreadStore (any implementation of the Protocols).
        bridge: the StreamBridge (any implementation of the Protocol).
        graphs: the graph registry.
        checkpointer: the saver the graphs use.
        limits: concurrency and timing bounds.
    """

    def __init__(
        self, store: Store, bridge: StreamBridge, graphs: GraphRegistry,
        checkpointer: Saver, limits: RunLimits,
    ) -> None:
        self.store = store
        self.bridge = bridge
        self.graphs = graphs
        self.checkpointer = checkpointer
        self.limits = limits
        self._handles: dict[str, RunHandle] = {}
        self._queue: dict[str, RunHandle] = {}  # pending runs in admission order
        self._running_threads: set[str] = set()
        self._active = 0
        self._wake = anyio.Event()
        self._tg: TaskGroup | None = None
        self.accepting = True
        self.shutdown_started_at = 0.0
        self.webhooks: WebhookOutbox | None = None  # set by open_runtime when enabled

    # ---- lifecycle -----------------------------------------------------------------------

    async def run_scheduler(self, tg: TaskGroup) -> None:
        """The scheduler loop; runs until cancelled. Starts runs as children of ``tg``."""
        self._tg = tg
        while True:
            self._wake = anyio.Event()
            try:
                delay_s = await self._dispatch()
            except Exception:  # a store error must not stop scheduling for good
                logger.exception("scheduler: dispatch failed; retrying")
                delay_s = 0.5
            with anyio.move_on_after(delay_s):
                await self._wake.wait()

    async def _dispatch(self) -> float:
        """Start every startable pending run; returns seconds until a delayed run is due."""
        if not self.accepting:
            return math.inf
        now = time.monotonic()
        next_due = math.inf
        blocked: set[str] = set()
        for run_id, handle in list(self._queue.items()):
            if self._active >= self.limits.max_concurrent_runs:
                break
            thread_id = handle.run.thread_id
            if thread_id in self._running_threads or thread_id in blocked:
                blocked.add(thread_id)
                continue
            if handle.not_before_ts > now:
                next_due = min(next_due, handle.not_before_ts - now)
                blocked.add(thread_id)
                continue
            del self._queue[run_id]
            self._running_threads.add(thread_id)
            self._active += 1
            with anyio.CancelScope(shield=True):
                started = await self.store.mark_running(run_id)
            if started is None:  # cancelled (or deleted) before it could start
                self._release(thread_id)
                continue
            handle.run = started
            assert self._tg is not None
            self._tg.start_soon(self._execute, handle, name=f"run {run_id}")
        return next_due

    def adopt(self, run: Run) -> None:
        """Queue a pending run found in the store at start-up (recovery), in call order."""
        handle = RunHandle(run)
        self.bridge.open(run.run_id, run.thread_id)
        self._handles[run.run_id] = handle
        self._queue[run.run_id] = handle
        self._wake.set()

    async def fail_recovered(self, run: Run, max_attempts: int) -> None:
        """End a recovered run that has used up its attempts with ``error``."""
        error = {
            "error": "MaxAttemptsExceeded",
            "message": f"run was interrupted by a server crash {max_attempts} times; giving up",
        }
        await self.store.requeue_run(run.run_id)
        outcome = await self._outcome(run, error)
        await self.store.finish_run(run.run_id, run.thread_id, RunStatus.ERROR, outcome)

    @property
    def active_count(self) -> int:
        """Runs executing in this process now."""
        return self._active

    async def pending_count(self) -> int:
        """Runs waiting to start (this process's queue holds every pending run)."""
        return len(self._queue)

    def begin_shutdown(self) -> None:
        """Shutdown step 1: admit no more runs and start no queued ones. Idempotent."""
        if self.accepting:
            self.accepting = False
            self.shutdown_started_at = time.monotonic()

    async def drain(self, timeout_s: float) -> None:
        """Shutdown step 2: wait until no run is executing, at most ``timeout_s`` after
        ``begin_shutdown``; queued runs stay pending."""
        deadline = self.shutdown_started_at + timeout_s
        with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
            for handle in list(self._handles.values()):
                if handle.run.run_id not in self._queue and not handle.done.is_set():
                    await handle.done.wait()

    def _release(self, thread_id: str) -> None:
        self._running_threads.discard(thread_id)
        self._active -= 1
        self._wake.set()

    # ---- create --------------------------------------------------------------------------

    async def _build_run(self, spec: RunSpec) -> Run:
        """The run ``spec`` asks for, validated (``create``'s checks before the store), with
        its assistant's current version merged in (runtime/assistants/edit.py rule 3)."""
        if not self.accepting:
            raise Unavailable("The server is shutting down and accepts no new runs.")
        assistant = await resolve_for_run(self.graphs, self.store.assistants,
                                          spec.assistant_id)
        if spec.thread_id is None and spec.command and "resume" in spec.command:
            raise BadRequest("You must provide a thread_id when resuming.")
        check_context(spec)
        return build_run(merge_run(spec, assistant), assistant.assistant_id,
                         assistant.graph_id)

    async def create(self, spec: RunSpec) -> Run:
        """Admit a run (``POST /threads/{id}/runs`` and its stream/wait/stateless variants).

        Returns:
            The stored run, status ``pending``.

        Raises:
            InvalidAssistant / AssistantNotFound: unknown assistant.
            ThreadNotFound: missing thread and ``if_not_exists`` is not ``create``.
            ThreadBusy: ``multitask_strategy=reject`` on a busy thread.
            BadRequest: resume without a thread; both ``context`` and ``configurable``.
            Unavailable: the runtime is shutting down.
        """
        run = await self._build_run(spec)
        handle = RunHandle(run, not_before_ts=time.monotonic() + max(spec.after_seconds, 0.0))
        # a free slot and a thread with nothing running here: start in the admission itself
        start = (spec.after_seconds <= 0 and self._tg is not None
                 and self._active < self.limits.max_concurrent_runs
                 and run.thread_id not in self._running_threads)
        if start:  # reserve before the await, so no other admission takes the slot
            self._active += 1
            self._running_threads.add(run.thread_id)
        # Registered before the store sees the run, so a concurrent create that finds it
        # active (interrupt/rollback) always reaches a live handle (invariant 1).
        self._handles[run.run_id] = handle
        with anyio.CancelScope(shield=True):  # admitted => registered, even if the client left
            try:
                active = await self.store.admit_run(
                    run,
                    create_thread=spec.thread_id is None or spec.if_not_exists == "create",
                    thread_metadata={**({"graph_id": run.graph_id} if spec.thread_id else {}),
                                     **spec.thread_metadata},
                    require_interrupted=bool(spec.command and "resume" in spec.command),
                    start_if_idle=start, visible=spec.thread_filter,
                )
            except BaseException:
                self._handles.pop(run.run_id, None)
                if start:
                    self._release(run.thread_id)
                raise
            # From here on the run is stored: create() must return it (invariant 8).
            self.bridge.open(run.run_id, run.thread_id)
            if start and not active:  # stored ``running``: no trip through the scheduler
                handle.run = run.replace(status=RunStatus.RUNNING)
                assert self._tg is not None
                self._tg.start_soon(self._execute, handle, name=f"run {run.run_id}")
                return run
            if start:
                self._release(run.thread_id)
            self._queue[run.run_id] = handle
            if spec.multitask_strategy in (MultitaskStrategy.INTERRUPT, MultitaskStrategy.ROLLBACK):
                await self._cancel_predecessors(run, active,
                                                CancelAction(str(spec.multitask_strategy)))
        self._wake.set()
        return run

    async def _cancel_predecessors(self, run: Run, active: list[Run],
                                   action: CancelAction) -> None:
        """Cancel the runs that were active when ``run`` was admitted (interrupt/rollback).

        ``run`` is already stored, so nothing here may fail the create: a predecessor that
        finished (or was cancelled by another create) meanwhile has nothing left to cancel,
        and a store error is logged; the new run still waits for its thread as always.
        """
        for other in active:
            try:
                await self._cancel_active(other, action)
            except NothingToCancel:
                continue
            except Exception:
                logger.exception("run %s: cancelling predecessor %s failed", run.run_id,
                                 other.run_id)
