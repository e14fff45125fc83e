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

from typing import Any, Protocol

from runtime.types import CancelAction, Run, RunStatus, Thread, ThreadOutcome, ThreadStatus


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
        sort_order: str | None = None,
    ) -> tuple[list[Thread], bool]:
        """Threads matching every filter, and whether more follow. Raises InvalidRequest."""

    async def count_threads(
        self, *, metadata: dict[str, Any] | None = None, values: dict[str, Any] | None = None,
        status: str | None = None,
    ) -> int:
        """How many threads match. Raises InvalidRequest."""


class RunStore(Protocol):
    """Runs: admission, the status machine, cancel intents, reads."""

    async def admit_run(
        self, run: Run, *, create_thread: bool, thread_metadata: dict[str, Any] | None = None,
        require_interrupted: bool = False, start_if_idle: bool = False,
    ) -> list[Run]:
        """Insert ``run`` ``pending`` (or ``running`` with ``start_if_idle`` on an idle
        thread) and mark its thread ``busy``, atomically; the runs that were already active.
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
    """Both stores, as one engine serves them (one transaction may touch both)."""
