"""ClusterRunManager: the run manager of N gateway processes sharing one PostgreSQL database and
one Redis (``database_url`` + ``redis_url``; design.md 9, scale-out.md (b)).

Nothing in one process's memory decides what another must know: the runs table is the queue.

Flow of a run:
1. ``create`` (any process) admits the run in one transaction (multitask strategy as in the
   single-process manager). With a free slot here, an idle thread and no delay, that same
   transaction stores it ``running`` under this process's lease and it starts here (the fast
   path: no claim, no wake-up). Otherwise it is stored ``pending``; if this process had no
   slot it wakes every process's claim loop (``ControlChannel.publish_wake``: PostgreSQL
   NOTIFY); if its thread was busy, the end of the thread's running run wakes them. Either
   way its Redis stream is announced before the admission (a join on any process then waits
   for its events).
2. The claim loop of every process claims what fits its free slots
   (``RunClaims.claim_runs``: oldest pending run of a thread with nothing running, ``FOR
   UPDATE SKIP LOCKED``), woken by NOTIFY, by a slot freed here while it was full, and every
   ``poll_s`` regardless (NOTIFY has no replay). Each claim carries a new lease token.
3. The owner renews its leases every ``lease_s / 3`` (one statement for all of them), reading
   each run's cancel intent in the same statement (the slow path of a cancel). A lease the
   renewal finds gone, or one whose local deadline passed (the last confirmed expiry, on the
   monotonic clock from when the renewal was sent) stops the run here and this process writes
   nothing more for it (fail-stop).
4. The terminal write, the rollback's delete and the shutdown hand-back are fenced by the
   token in PostgreSQL; the stream writes (Redis) and checkpoint writes are fenced by the local
   deadline (``set_fence`` of the bridge and of the TrackingSaver).
5. Every process sweeps expired leases every ``min(5, lease_s / 4)`` seconds, ``lease_s / 2``
   after expiry: re-queued with ``attempt + 1`` (claimed at once elsewhere, resuming from the
   last checkpoint), ended ``interrupted`` if a cancel was asked (a rollback's checkpoints and
   run deleted), ``error`` after ``max_attempts``; the streams of ended runs get an end
   marker. A killed owner's run is running again within ``lease_s + lease_s / 2 +
   min(5, lease_s / 4)`` seconds plus a claim (under the ``2 x lease_s + 2 s`` bound).
6. Cancel from any process: the durable intent first (``request_cancel``; a rollback is never
   downgraded), then a pending run is finished by the canceller, a running one is signalled
   through the ControlChannel (Redis pub/sub) to its owner.
7. Graceful shutdown stops claiming, lets running runs finish for ``shutdown_timeout_s``, then
   hands the rest back (``pending``, attempt not charged; NOTIFY) so another process claims
   them at once. Start-up recovers nothing: expired leases are the sweeper's.

Limits:
1. A client waiting on ``/wait`` or ``/join`` of a run that executes on another process is
   answered from the store, polled (20 ms doubling to 250 ms), not pushed.
2. A process frozen past its lease that wakes mid-write may land that one write (a batch of
   stream events or a checkpoint already on the wire); everything it queues or starts after
   waking is dropped. The terminal write is fenced in the database and never lands.
3. ``wait`` on a run whose lease this process lost answers 503 (the run continues elsewhere;
   the client joins again).

Here: the claims, create, the fenced writes, cancel and the reads of a run on any process. The
fences, the lease renewal and the sweep (steps 3 to 5) are the ``LeaseKeeping`` mixin
(leases.py).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup

from runtime.bridge.protocol import SharedStreamBridge
from runtime.checkpointer import delete_run_checkpoints
from runtime.control.protocol import ControlChannel
from runtime.errors import NothingToCancel, RunNotFound, ThreadNotFound
from runtime.graphs import GraphRegistry
from runtime.run_result import stored_result_body
from runtime.runs.handle import RunHandle
from runtime.runs.leases import LeaseKeeping
from runtime.runs.manager import RunManager
from runtime.saver_tracking import TrackingSaver
from runtime.serialization import dumps
from runtime.spec import RunLimits, RunSpec
from runtime.store.protocol import Claim, ClusterStore
from runtime.types import CancelAction, MultitaskStrategy, Run, RunStatus, ThreadOutcome

logger = logging.getLogger(__name__)

MAX_CLAIM_BATCH = 32  # runs per claim statement (postgres_claims.py: under 64)


def default_owner() -> str:
    """This process's owner id on the run rows: ``<host>:<pid>:<random>``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ClusterRunManager(LeaseKeeping, RunManager):
    """The RunManager of one of N processes on a shared store (module docstring).

    Args:
        store: a store with claims and leases (PostgreSQL).
        bridge: a bridge every process reads (Redis).
        graphs, checkpointer, limits: as ``RunManager``; the checkpointer must be the
            ``TrackingSaver`` the graphs write through (it carries the checkpoint fence).
        control: cancels and wake-ups between the processes.
        lease_s: seconds of lease per claim (``lease_s`` setting).
        max_attempts: executions a run gets across lost leases before it ends ``error``.
        owner: this process's id on the run rows (default ``default_owner()``).
        poll_s: the claim loop's poll when no wake-up comes.
    """

    def __init__(
        self, store: ClusterStore, bridge: SharedStreamBridge, graphs: GraphRegistry,
        checkpointer: TrackingSaver, limits: RunLimits, control: ControlChannel, *,
        lease_s: float = 30.0, max_attempts: int = 3, owner: str | None = None,
        poll_s: float = 1.0,
    ) -> None:
        super().__init__(store, bridge, graphs, checkpointer, limits)
        self.claims: ClusterStore = store
        self.shared: SharedStreamBridge = bridge
        self.control = control
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.owner = owner or default_owner()
        self.poll_s = poll_s
        self.renew_every_s = lease_s / 3
        self.sweep_grace_s = lease_s / 2
        self.sweep_every_s = min(5.0, lease_s / 4)
        self._claim_lock = anyio.Lock()
        self._by_thread: dict[str, RunHandle] = {}  # runs executing here (checkpoint fence)
        self._saturated = False  # a claim round was cut short by the slots
        bridge.set_fence(self._may_write_run)
        checkpointer.set_fence(self._may_write_thread)

    # ---- lifecycle -------------------------------------------------------------------------

    async def run_scheduler(self, tg: TaskGroup) -> None:
        """The claim loop, the lease renewal and the sweeper; runs until cancelled. Runs
        start as children of ``tg``."""
        self._tg = tg
        remove = self.control.on_cancel(self._on_cancel)
        try:
            async with anyio.create_task_group() as loops:
                loops.start_soon(self._claim_loop, name="run claims")
                loops.start_soon(self._renew_loop, name="lease renewal")
                loops.start_soon(self._sweep_loop, name="lease sweep")
        finally:
            remove()

    async def pending_count(self) -> int:
        """Runs waiting to start, in the shared store (any process may claim them)."""
        return sum(1 for r in await self.store.active_runs() if r.status == RunStatus.PENDING)

    def _release(self, thread_id: str) -> None:
        handle = self._by_thread.get(thread_id)
        if handle is not None and handle.done.is_set():
            del self._by_thread[thread_id]
        self._running_threads.discard(thread_id)
        self._active -= 1
        if self._saturated:  # runs may be waiting for this slot
            self._saturated = False
            self.control.wake_local()

    # ---- claims ----------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        retry_s = 0.0
        while True:
            try:
                with anyio.CancelScope(shield=True):  # a claim is never half taken
                    await self._claim_round()
                retry_s = 0.0
            except Exception:  # the database is away: keep trying, never stop claiming
                retry_s = min(max(0.1, retry_s * 2), 2.0)
                logger.exception("claiming runs failed; retrying in %.1f s", retry_s)
                await anyio.sleep(retry_s)
                continue
            await self.control.wait_wake(self.poll_s)

    async def _claim_round(self) -> None:
        """Claim what fits the free slots and start it."""
        async with self._claim_lock:
            if not self.accepting or self._tg is None:
                return
            free = self.limits.max_concurrent_runs - self._active
            if free <= 0:
                self._saturated = True
                return
            limit = min(free, MAX_CLAIM_BATCH)
            sent = time.monotonic()
            claims = await self.claims.claim_runs(self.owner, limit, self.lease_s)
            if len(claims) >= limit:
                self._saturated = True
            for claim in claims:
                logger.info("run %s: claimed (attempt %d)", claim.run.run_id, claim.run.attempt)
                # it may have run elsewhere: ids above its old stream's
                await self.shared.prepare_open(claim.run.run_id)
                self._start(claim, sent + self.lease_s)

    def _start(self, claim: Claim, deadline: float, *, reserved: bool = False) -> None:
        """Execute a run this process holds the lease of; ``deadline``: the lease's local
        deadline (monotonic); ``reserved``: its slot is already counted."""
        run = claim.run
        handle = RunHandle(run, lease_token=claim.lease_token, lease_deadline=deadline)
        self._handles[run.run_id] = handle
        self._by_thread[run.thread_id] = handle
        if not reserved:
            self._active += 1
        self._running_threads.add(run.thread_id)
        self.bridge.open(run.run_id, run.thread_id)
        assert self._tg is not None
        self._tg.start_soon(self._execute, handle, name=f"run {run.run_id}")

    # ---- the fenced writes -------------------------------------------------------------------

    def _publisher(self, handle: RunHandle) -> Callable[[str, bytes], object]:
        run_id = handle.run.run_id
        publish = self.bridge.publish

        def fenced(event: str, data: bytes) -> object:
            if handle.lease_token is not None and (
                    handle.lost or time.monotonic() >= handle.lease_deadline):
                self._lose(handle, "its lease expired before it could be renewed")
                return None
            return publish(run_id, event, data)

        return fenced

    async def _lost_write(self, handle: RunHandle, what: str) -> None:
        deleted = await self.store.get_run(handle.run.run_id) is None
        self._lose(handle, f"its {what} was refused (lease gone)" if not deleted
                   else "it was deleted", deleted=deleted)

    async def _write_rollback(self, handle: RunHandle) -> ThreadOutcome | None:
        run, token = handle.run, handle.lease_token
        if token is None or not self._holds(handle) or not await self.claims.lease_held(
                run.run_id, token):
            await self._lost_write(handle, "rollback")
            return None
        await delete_run_checkpoints(self.checkpointer, run.thread_id, run.run_id)
        outcome = await self._outcome(run, None)
        if not await self.claims.delete_run_fenced(run.run_id, run.thread_id, token, outcome):
            await self._lost_write(handle, "rollback")
            return None
        handle.lease_token = None
        return outcome

    async def _write_finish(self, handle: RunHandle, status: RunStatus,
                            outcome: ThreadOutcome) -> bool:
        run, token = handle.run, handle.lease_token
        if token is None or not await self.claims.finish_run_fenced(
                run.run_id, run.thread_id, token, status, outcome):
            await self._lost_write(handle, "terminal write")
            return False
        handle.lease_token = None
        return True

    def _end_stream(self, handle: RunHandle) -> None:
        if not handle.lost:
            self.bridge.close(handle.run.run_id)

    async def _requeue_after_shutdown(self, handle: RunHandle) -> None:
        """Hand the run back (``pending``, attempt not charged; NOTIFY): a surviving process
        claims it at once. Its stream ends with an abort marker (clients reconnect)."""
        token = handle.lease_token
        if token is not None and not handle.lost:
            handle.lease_token = None
            if await self.claims.requeue_fenced(handle.run.run_id, token):
                logger.warning("run %s: handed back at shutdown (pending again, attempt %d)",
                               handle.run.run_id, handle.run.attempt)
                self.bridge.abort(handle.run.run_id)
            else:
                self.shared.forget(handle.run.run_id)
        handle.done.set()

    # ---- create ----------------------------------------------------------------------------

    async def create(self, spec: RunSpec) -> Run:
        """Admit a run (as ``RunManager.create``). With a free slot here, an idle thread and
        no delay, the admission itself stores it ``running`` under this process's lease and it
        starts here (one transaction); otherwise it is stored ``pending`` for the claim loops
        of every process. Its stream is announced before this returns, so a join on any
        process waits for its events.

        Raises: as ``RunManager.create``.
        """
        run = await self._build_run(spec)
        start = (spec.after_seconds <= 0 and self._tg is not None
                 and self._active < self.limits.max_concurrent_runs)
        if start:  # reserve the slot before the await, so no claim round takes it
            self._active += 1
        with anyio.CancelScope(shield=True):  # admitted => announced, started or claimable
            # Announced BEFORE the admission: once the run is visible in the store (a client
            # polling for it may already act on it), the response follows at once, as on one
            # process. A failed admission leaves a bare start marker that expires on its own.
            await self.shared.announce(run.run_id)
            sent = time.monotonic()
            try:
                active, token = await self.claims.admit_run_leased(
                    run,
                    create_thread=spec.thread_id is None or spec.if_not_exists == "create",
                    thread_metadata={**({"graph_id": run.graph_id} if spec.thread_id else {}),
                                     **spec.thread_metadata},
                    require_interrupted=bool(spec.command and "resume" in spec.command),
                    owner=self.owner if start else None, lease_s=self.lease_s,
                    visible=spec.thread_filter,
                )
            except BaseException:
                if start:
                    self._active -= 1
                raise
            # From here on the run is stored: create() must return it (invariant 8).
            if start and token is None:
                self._active -= 1
            if token is not None:
                self._start(Claim(run.replace(status=RunStatus.RUNNING), token),
                            sent + self.lease_s, reserved=True)
                return run
            if spec.multitask_strategy in (MultitaskStrategy.INTERRUPT, MultitaskStrategy.ROLLBACK):
                await self._cancel_predecessors(run, active,
                                                CancelAction(str(spec.multitask_strategy)))
            if not active:  # no slot here: another process may have one
                await self.control.publish_wake()
        return run

    # ---- cancel ----------------------------------------------------------------------------

    def _on_cancel(self, run_id: str, action: CancelAction) -> None:
        """A cancel signal from any process (this one included): act if the run runs here."""
        handle = self._handles.get(run_id)
        if (handle is None or handle.lease_token is None or handle.finalizing
                or handle.done.is_set()):
            return
        if handle.cancel_action is None or action == CancelAction.ROLLBACK:
            handle.cancel_action = action
        self._signal(handle)

    async def _cancel_active(self, run: Run, action: CancelAction) -> None:
        """The durable intent first, then: a pending run is finished here; a running one is
        signalled to its owner (module step 6). Raises NothingToCancel."""
        handle = self._handles.get(run.run_id)
        if handle is not None and (handle.finalizing or handle.done.is_set()):
            raise NothingToCancel()
        request = await self.claims.request_cancel(run.run_id, action, run.thread_id)
        if request is None:
            raise NothingToCancel()
        stored = request.run
        intent = stored.cancel_action or action
        if stored.status == RunStatus.RUNNING:
            await self.control.publish_cancel(run.run_id, intent)
            return
        # pending: no claim takes a run with a cancel intent, so it is ours to finish
        if intent == CancelAction.ROLLBACK:
            await delete_run_checkpoints(self.checkpointer, run.thread_id, run.run_id)
            await self.store.delete_run(run.run_id, run.thread_id)
            self.bridge.discard(run.run_id)
        else:
            await self.store.finish_run(run.run_id, run.thread_id, RunStatus.INTERRUPTED, None)
            await self._end_remote_stream(run.run_id)
        await self.control.publish_wake()  # the thread's next run may start

    async def cancel(
        self, thread_id: str, run_id: str, action: CancelAction = CancelAction.INTERRUPT,
        wait: bool = False,
    ) -> bytes | None:
        """As ``RunManager.cancel``, for a run on any process; ``wait`` waits for its end
        (the store's status), not a fixed time."""
        handle = self._handles.get(run_id)
        run = handle.run if handle else await self.store.get_run(run_id, thread_id)
        if run is None or run.thread_id != thread_id or run.status.is_terminal:
            raise NothingToCancel()
        await self._cancel_active(run, action)
        if not wait:
            return None
        while True:
            try:
                body = await self.wait_result(thread_id, run_id, 30.0)
            except RunNotFound:  # rolled back: the thread's state without it
                try:
                    return dumps((await self.store.get_thread(thread_id)).values or {})
                except ThreadNotFound:
                    return b"{}"
            if body is not None:
                return body

    # ---- reads -----------------------------------------------------------------------------

    async def wait_result(self, thread_id: str, run_id: str, timeout_s: float) -> bytes | None:
        """As ``RunManager.wait_result``, for a run on any process: a run executing here is
        awaited, any other is polled in the store (limit 1)."""
        deadline = time.monotonic() + timeout_s
        delay_s = 0.02
        while True:
            handle = self._handles.get(run_id)
            if handle is not None and handle.run.thread_id == thread_id and not handle.lost:
                with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                    await handle.done.wait()
                if handle.done.is_set() and handle.result_body is not None:
                    return handle.result_body
            run = await self.store.get_run(run_id, thread_id)
            if run is None:
                raise RunNotFound(run_id)
            if run.status.is_terminal:
                return stored_result_body(run, await self.store.get_thread(thread_id))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            await anyio.sleep(min(delay_s, remaining))
            delay_s = min(delay_s * 2, 0.25)

    async def delete_thread(self, thread_id: str) -> None:
        """As ``RunManager.delete_thread``: the active runs of the thread are stopped wherever
        they execute (their fenced writes then find nothing to write)."""
        active = await self.store.delete_thread(thread_id)
        for run in active:
            handle = self._handles.get(run.run_id)
            if handle is not None and not handle.done.is_set():
                handle.cancel_action = CancelAction.INTERRUPT
                self._signal(handle)
                with anyio.move_on_after(self.limits.finalize_timeout_s):
                    await handle.done.wait()
            elif run.status == RunStatus.RUNNING:
                await self.control.publish_cancel(run.run_id, CancelAction.INTERRUPT)
            else:  # pending: nobody will run it; end its announced stream
                self.bridge.discard(run.run_id)
        await self.checkpointer.adelete_thread(thread_id)

    def adopt(self, run: Run) -> None:  # pragma: no cover - start-up recovery is the sweep's
        raise NotImplementedError("a cluster process recovers nothing at start-up")

