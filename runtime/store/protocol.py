"""The RunStore and ThreadStore Protocols: the durable truth about runs and threads.

The run manager, the thread state and the HTTP edge talk to these, never to an engine. Every
implementation keeps the invariants below, and one contract suite (tests/contract) runs
against each of them. ``runtime.store.sqlite.SqliteStore`` documents each method in full.

Invariants (design.md section 4):
1. At most one ``running`` run per thread, enforced by the engine (a partial unique index),
   not only by a lock in one process.
2. Status changes of a run are compare-and-set from ``pending``/``running``; a terminal status
   is never overwritten.
3. Admission (busy check, insert, thread ``busy``) and finalization (run status, thread
   status, values, interrupts) are each one transaction.
4. A thread is ``busy`` while it has a pending or running run; otherwise it has the status
   its last finished run (or state update) left.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from runtime.assistants.protocol import AssistantStore
from runtime.auth_filter import AuthFilter
from runtime.crons.protocol import CronStore
from runtime.types import CancelAction, Run, RunStatus, Thread, ThreadOutcome, ThreadStatus
from runtime.webhooks.outbox import WebhookOutbox


class ThreadStore(Protocol):
    """Threads (``/threads`` endpoints)."""

    async def create_thread(
        self, thread_id: str, metadata: dict[str, Any], if_exists: str = "raise"
    ) -> Thread:
        """Insert an idle thread. Raises ThreadExists unless ``if_exists="do_nothing"``."""

    async def get_thread(self, thread_id: str) -> Thread:
        """The thread. Raises ThreadNotFound."""

    async def patch_thread_metadata(self, thread_id: str, metadata: dict[str, Any]) -> Thread:
        """Shallow-merge ``metadata`` into the thread's. Raises ThreadNotFound."""

    async def set_thread_state(
        self, thread_id: str, values: dict[str, Any] | None, interrupts: dict[str, Any],
        rest_status: ThreadStatus, metadata: dict[str, Any] | None = None,
    ) -> None:
        """Mirror a state change made outside a run (state update, copy)."""

    async def delete_thread(self, thread_id: str) -> list[Run]:
        """Delete the thread and its runs; the runs that were pending or running.
        Raises ThreadNotFound."""

    async def search_threads(
        self, *, ids: list[str] | None = None, metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None, status: str | None = None,
        limit: int = 10, offset: int = 0, sort_by: str | None = None,
        sort_order: str | None = None, auth: AuthFilter | None = None,
    ) -> tuple[list[Thread], bool]:
        """Threads matching every filter, and whether more follow; ``auth`` is an
        authorization handler's filter on ``metadata`` (runtime/auth_filter.py), enforced in
        the query. Raises InvalidRequest."""

    async def count_threads(
        self, *, metadata: dict[str, Any] | None = None, values: dict[str, Any] | None = None,
        status: str | None = None, auth: AuthFilter | None = None,
    ) -> int:
        """How many threads match (``auth`` as ``search_threads``). Raises InvalidRequest."""


class RunStore(Protocol):
    """Runs: admission, the status machine, cancel intents, reads."""

    async def admit_run(
        self, run: Run, *, create_thread: bool, thread_metadata: dict[str, Any] | None = None,
        require_interrupted: bool = False, start_if_idle: bool = False,
        visible: AuthFilter | None = None,
    ) -> list[Run]:
        """Insert ``run`` ``pending`` (or ``running`` with ``start_if_idle`` on an idle
        thread) and mark its thread ``busy``, atomically; the runs that were already active.
        ``visible``: an authorization filter the thread's metadata must pass, in the same
        transaction (else ThreadNotFound, nothing stored).
        Raises ThreadNotFound, ThreadBusy (reject), BadRequest (nothing to resume)."""

    async def mark_running(self, run_id: str) -> Run | None:
        """CAS ``pending -> running``; the run, or None if it no longer can start."""

    async def finish_run(
        self, run_id: str, thread_id: str, status: RunStatus, outcome: ThreadOutcome | None
    ) -> bool:
        """Write a terminal status (CAS) and the thread it leaves; False if already ended."""

    async def set_cancel_action(self, run_id: str, action: CancelAction) -> bool:
        """Record the durable cancel intent; False if the run is not active."""

    async def requeue_run(self, run_id: str, attempt: int | None = None) -> bool:
        """Put a ``running`` run back to ``pending`` (shutdown, recovery)."""

    async def get_run(self, run_id: str, thread_id: str | None = None) -> Run | None:
        """The run (optionally only if it belongs to ``thread_id``), or None."""

    async def list_runs(
        self, thread_id: str, *, status: str | None = None, limit: int = 10, offset: int = 0
    ) -> list[Run]:
        """A thread's runs, newest first."""

    async def active_runs(self, thread_id: str | None = None) -> list[Run]:
        """Pending or running runs (of one thread, or all), in admission order."""

    async def delete_run(
        self, run_id: str, thread_id: str, outcome: ThreadOutcome | None = None
    ) -> bool:
        """Delete a run and recompute its thread; False if there was no such run."""


class Store(RunStore, ThreadStore, Protocol):
    """Both stores, as one engine serves them (one transaction may touch both), and the
    crons that live next to their threads."""

    @property
    def crons(self) -> CronStore:
        """The CronStore on the same database (runtime/crons/protocol.py)."""
        ...

    @property
    def webhooks(self) -> WebhookOutbox:
        """The webhook outbox on the same database (runtime/webhooks/outbox.py)."""
        ...

    @property
    def assistants(self) -> AssistantStore:
        """The stored assistants on the same database (runtime/assistants/protocol.py)."""
        ...


# ---- claims and leases: N processes on one database (design.md 9) --------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    """A run this process now executes: the run as stored (``running``) and the lease token
    that fences every write of this attempt."""

    run: Run
    lease_token: str


@dataclass(frozen=True, slots=True)
class RenewResult:
    """What one ``renew_leases`` found.

    Attributes:
        renewed: ``{run_id: cancel intent or None}`` of every lease extended.
        lost: run ids whose lease is gone (token replaced or run no longer running): stop
            them locally and write nothing more for them.
    """

    renewed: dict[str, CancelAction | None]
    lost: frozenset[str]


class SweepOutcome(StrEnum):
    """What ``sweep_expired`` did to one run."""

    REQUEUED = "requeued"  # back to pending, attempt + 1
    INTERRUPTED = "interrupted"  # ended interrupted (an interrupt intent)
    ROLLBACK = "rollback"  # ended interrupted; the caller deletes its checkpoints and the run
    ERROR = "error"  # ended error: max_attempts used up (MaxAttemptsExceeded)


@dataclass(frozen=True, slots=True)
class SweptRun:
    """One run ``sweep_expired`` took over: the run as now stored, what was done, and the
    owner whose lease expired (None for a pending run finished for a dead canceller)."""

    run: Run
    outcome: SweepOutcome
    previous_owner: str | None


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """A cancel intent as recorded by ``request_cancel``: the run as now stored (still
    ``pending`` or ``running``; ``cancel_action`` the effective intent) and the process whose
    lease it runs under (None while pending), to be signalled."""

    run: Run
    owner: str | None


class RunClaims(Protocol):
    """Claims, leases and fencing for several processes on one store (PostgreSQL:
    runtime/store/postgres_claims.py documents each method).

    Only the PostgreSQL store implements it: SQLite is one process by construction (its
    scheduler decides in memory), so it has nobody to share runs with.

    Invariants: at most one running run per thread and FIFO per thread (a claim takes only a
    thread's oldest pending run without a cancel intent, when due and the thread runs
    nothing); every claim draws a new lease token, and renewal, the terminal write and the
    hand-back apply only while it matches; all lease arithmetic uses the store's clock.
    """

    async def claim_runs(self, owner: str, limit: int, lease_s: float) -> list[Claim]:
        """Claim up to ``limit`` runs for ``owner`` with ``lease_s`` seconds of lease."""

    async def admit_run_leased(
        self, run: Run, *, create_thread: bool, thread_metadata: dict[str, Any] | None = None,
        require_interrupted: bool = False, owner: str | None = None, lease_s: float = 30.0,
        visible: AuthFilter | None = None,
    ) -> tuple[list[Run], str | None]:
        """``admit_run`` (``visible`` as there); with ``owner``, a run that can start at once
        is stored ``running`` under a new lease of ``owner`` in the same transaction. The
        active runs and the new run's lease token (None: it stays pending)."""

    async def renew_leases(
        self, owner: str, tokens: dict[str, str], lease_s: float
    ) -> RenewResult:
        """Extend the leases ``{run_id: token}`` still held; report the lost ones."""

    async def finish_run_fenced(
        self, run_id: str, thread_id: str, token: str, status: RunStatus,
        outcome: ThreadOutcome | None,
    ) -> bool:
        """``finish_run`` only while ``token`` holds the run's lease; False: nothing written."""

    async def delete_run_fenced(
        self, run_id: str, thread_id: str, token: str, outcome: ThreadOutcome | None = None
    ) -> bool:
        """``delete_run`` (rollback) only while ``token`` holds the run's lease."""

    async def requeue_fenced(self, run_id: str, token: str) -> bool:
        """Hand the run back (``pending``, attempt not charged) while ``token`` holds."""

    async def lease_held(self, run_id: str, token: str) -> bool:
        """Whether ``token`` is still the running run's lease."""

    async def request_cancel(
        self, run_id: str, action: CancelAction, thread_id: str | None = None
    ) -> CancelRequest | None:
        """Record a cancel intent from any process (a rollback is never downgraded); the run
        and its lease holder, or None if the run is not active."""

    async def sweep_expired(self, max_attempts: int, grace_s: float) -> list[SweptRun]:
        """Re-queue, interrupt or fail the runs whose lease expired ``grace_s`` ago."""

    async def notify_pending(self) -> None:
        """Wake the claimers of every process (a run may have become claimable)."""


class ClusterStore(Store, RunClaims, Protocol):
    """A store several processes share (PostgreSQL): threads, runs, claims and leases."""
