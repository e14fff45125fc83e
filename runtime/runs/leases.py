"""LeaseKeeping: the lease side of ``ClusterRunManager`` (a mixin; cluster.py's module
docstring describes the flow): the fences that stop a run whose lease is gone from writing
(steps 3 and 4), the lease renewal (step 3) and the sweep of expired leases (step 5).
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING

import anyio

from runtime.bridge.protocol import SharedStreamBridge, StreamBridge
from runtime.checkpointer import Saver, delete_run_checkpoints
from runtime.runs.handle import RunHandle
from runtime.store.protocol import ClusterStore, Store, SweepOutcome, SweptRun
from runtime.types import CancelAction, Run, ThreadOutcome

logger = logging.getLogger("runtime.runs.cluster")  # the log name from before the split


class LeaseKeeping:
    """The fences, renewal and sweep of ``ClusterRunManager`` (which sets these attributes)."""

    store: Store
    bridge: StreamBridge
    checkpointer: Saver
    claims: ClusterStore
    shared: SharedStreamBridge
    owner: str
    lease_s: float
    max_attempts: int
    renew_every_s: float
    sweep_every_s: float
    sweep_grace_s: float
    _handles: dict[str, RunHandle]
    _by_thread: dict[str, RunHandle]

    if TYPE_CHECKING:  # RunManager's and ClusterRunManager's
        @staticmethod
        def _signal(handle: RunHandle) -> None: ...

        async def _outcome(self, run: Run, error: dict[str, str] | None) -> ThreadOutcome: ...

        def _on_cancel(self, run_id: str, action: CancelAction) -> None: ...

    # ---- the fences ------------------------------------------------------------------------

    @staticmethod
    def _holds(handle: RunHandle) -> bool:
        """True while this process may write for the run: not leased (its terminal write
        done), or leased, not lost and before its local deadline."""
        if handle.lease_token is None:
            return True
        return not handle.lost and time.monotonic() < handle.lease_deadline

    def _may_write_run(self, run_id: str) -> bool:
        handle = self._handles.get(run_id)
        return handle is None or self._holds(handle)

    def _may_write_thread(self, thread_id: str) -> bool:
        handle = self._by_thread.get(thread_id)
        return handle is None or self._holds(handle)

    def _lose(self, handle: RunHandle, why: str, *, deleted: bool = False) -> None:
        """Stop a run whose lease is gone; write nothing more for it. ``deleted``: the run
        row is gone (its thread was deleted), so its stream is ended rather than left to a
        new owner."""
        if handle.lost or handle.lease_token is None or handle.done.is_set():
            return
        handle.lost = True
        run_id = handle.run.run_id
        logger.warning("run %s: %s; stopping it here, writing nothing more", run_id, why)
        if deleted:
            handle.lease_token = None
            self.bridge.discard(run_id)
        else:
            self.shared.forget(run_id)
        self._signal(handle)

    # ---- leases ----------------------------------------------------------------------------

    async def _renew_loop(self) -> None:
        while True:
            await anyio.sleep(self.renew_every_s)
            try:
                await self.renew_once()
            except Exception:
                logger.exception("lease renewal failed")

    async def renew_once(self) -> None:
        """One renewal of every lease this process holds (module step 3)."""
        now = time.monotonic()
        held: dict[str, tuple[RunHandle, str]] = {}
        for run_id, handle in list(self._handles.items()):
            token = handle.lease_token
            if token is None or handle.lost or handle.done.is_set():
                continue
            if now >= handle.lease_deadline:
                self._lose(handle, "its lease expired before it could be renewed")
                continue
            held[run_id] = (handle, token)
        if not held:
            return
        sent = time.monotonic()
        try:
            with anyio.fail_after(max(1.0, self.renew_every_s)):
                result = await self.claims.renew_leases(
                    self.owner, {run_id: token for run_id, (_, token) in held.items()},
                    self.lease_s)
        except Exception as exc:  # retried next round, until each local deadline
            logger.warning("renewing %d lease(s) failed: %s", len(held), exc)
            return
        for run_id, intent in result.renewed.items():
            handle, token = held[run_id]
            if handle.lease_token == token:
                handle.lease_deadline = sent + self.lease_s
                if intent is not None:  # a cancel whose signal was lost (slow path)
                    self._on_cancel(run_id, intent)
        for run_id in result.lost:
            handle, token = held[run_id]
            if handle.lease_token == token and not handle.lost:
                deleted = await self.store.get_run(run_id) is None
                self._lose(handle, "its lease was taken over" if not deleted
                           else "it was deleted", deleted=deleted)

    async def _sweep_loop(self) -> None:
        while True:
            await anyio.sleep(self.sweep_every_s * random.uniform(0.8, 1.2))
            try:
                await self.sweep_once()
            except Exception:
                logger.exception("sweeping expired leases failed")

    async def sweep_once(self) -> list[SweptRun]:
        """Take over the runs whose lease expired (module step 5); what was done."""
        swept = await self.claims.sweep_expired(self.max_attempts, self.sweep_grace_s)
        for item in swept:
            run = item.run
            logger.warning("run %s: lease of %s expired; %s (attempt %d)", run.run_id,
                           item.previous_owner or "its canceller", item.outcome.value,
                           run.attempt)
            handle = self._handles.get(run.run_id)
            if handle is not None and item.previous_owner == self.owner:
                self._lose(handle, "its lease expired (this process was too slow)")
            if item.outcome == SweepOutcome.ROLLBACK:
                await delete_run_checkpoints(self.checkpointer, run.thread_id, run.run_id)
                outcome = await self._outcome(run, None)
                await self.store.delete_run(run.run_id, run.thread_id, outcome)
                self.bridge.discard(run.run_id)
            elif item.outcome != SweepOutcome.REQUEUED:
                await self._end_remote_stream(run.run_id)
        return swept

    async def _end_remote_stream(self, run_id: str) -> None:
        try:
            await self.shared.end_stream(run_id)
        except Exception as exc:  # Redis is a cache: joins end at its TTL instead
            logger.warning("ending the stream of run %s failed: %s", run_id, exc)
