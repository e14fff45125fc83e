"""The CronStore Protocol: crons and their fires, next to the threads they run on (SQLite:
runtime/crons/sqlite.py; PostgreSQL: runtime/crons/postgres.py). One contract suite
(tests/contract/test_crons.py) runs against both.

Invariants:
1. A thread cron lives and dies with its thread: deleting the thread deletes its crons (a
   trigger on SQLite, ``ON DELETE CASCADE`` on PostgreSQL), and a cron is never created for a
   missing thread (checked in the insert's transaction).
2. ``claim_due`` is the only way a tick is consumed: it reads the due crons and advances their
   ``next_run_date`` in ONE transaction (PostgreSQL: rows locked ``FOR UPDATE SKIP LOCKED``), so
   with any number of schedulers each tick is handed to exactly one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from runtime.auth_filter import AuthFilter
from runtime.crons.types import Cron, CronFire

Advance = Callable[[Cron, datetime], tuple[str | None, bool]]
"""``advance(cron, now) -> (next_run_date as stored text or None, still enabled)``."""


class CronStore(Protocol):
    """Crons (``/runs/crons`` endpoints) and the scheduler's claims."""

    async def create_cron(self, cron: Cron) -> Cron:
        """Insert ``cron``. Raises ThreadNotFound for a thread cron on a missing thread."""

    async def get_cron(self, cron_id: str) -> Cron:
        """The cron. Raises CronNotFound."""

    async def update_cron(self, cron_id: str, apply: Callable[[Cron], Cron]) -> Cron:
        """Replace the cron with ``apply(cron)`` in one transaction (PATCH); the new cron.
        ``apply`` may raise (nothing is written). Raises CronNotFound."""

    async def delete_cron(self, cron_id: str) -> bool:
        """Delete the cron (its fires too); False if there was none."""

    async def search_crons(
        self, *, assistant_id: str | None = None, thread_id: str | None = None,
        enabled: bool | None = None, metadata: dict[str, Any] | None = None,
        limit: int = 10, offset: int = 0, sort_by: str = "created_at",
        sort_order: str = "desc", auth: AuthFilter | None = None,
    ) -> tuple[list[Cron], bool]:
        """The matching crons (``metadata``: JSON containment; ``auth``: an authorization
        handler's filter on metadata) and whether more follow."""

    async def count_crons(
        self, *, assistant_id: str | None = None, thread_id: str | None = None,
        metadata: dict[str, Any] | None = None, auth: AuthFilter | None = None,
    ) -> int:
        """How many crons match."""

    async def claim_due(self, now: datetime, limit: int, advance: Advance
                        ) -> list[tuple[Cron, str]]:
        """Take up to ``limit`` crons that are enabled, due (``next_run_date <= now``) and
        not past their ``end_time``, oldest tick first, and store ``advance(cron, now)`` as
        their next tick, in one transaction (invariant 2). Returns each cron as it was and
        the tick that was due."""

    async def active_runs(self, cron_id: str) -> int:
        """How many runs the cron fired are pending or running now (``max_concurrency``)."""

    async def requeue_tick(self, cron_id: str, tick: str) -> None:
        """Make ``tick`` due again (``on_max_concurrency: queue``), if the cron is enabled."""

    async def record_fire(self, fire: CronFire) -> None:
        """Keep what one fire did (kept per cron: the newest 100)."""

    async def list_fires(self, cron_id: str, limit: int = 100) -> list[CronFire]:
        """The cron's fires, newest first."""
