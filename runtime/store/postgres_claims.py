"""Claims and leases on PostgreSQL (``RunClaims``, runtime/store/protocol.py): how N gateway
processes on one database share the pending runs, each run executed by one lease holder at a
time, and a dead or frozen holder's runs taken over (design.md 9, scale-out.md (b) steps 3-7, 10).

``PostgresStore`` inherits these methods (``PostgresClaims``); the SQL is schema version 2's
PL/pgSQL functions (postgres_functions.py ``MIGRATION_V2``): each method is one statement, so one
round trip and one transaction.

Invariants:
1. **Lease arithmetic uses the database clock only**: expiries are ``now() + lease_s``, the sweep
   compares with ``now() - grace_s``, a cancel intent's age with ``cancel_requested_at`` (set by
   ``now()``). The one app instant compared with ``now()`` is a delayed run's ``not_before``
   (``after_seconds`` added to the admitting process's clock, as version 1 stores it): a clock
   skew moves when a delayed run may start by that skew, never a lease (difference 4).
2. **FIFO per thread and one running run per thread**: a claim takes only a thread's *head*,
   its oldest pending run without a cancel intent (by ``seq``, the admission order), and only
   while the thread runs nothing; a not-yet-due head blocks its thread, as the single-process
   scheduler does. The claim locks the thread row, then the run row, both ``FOR UPDATE SKIP
   LOCKED`` (a row another claimer, a sweeper, an admission or a finish holds is skipped until
   the next claim, never waited for), then re-checks on a fresh snapshot that the run is still
   the head and the thread still runs nothing. Admission and finalization lock the thread row
   too, so what the re-check reads is exact; the partial unique index ``runs_one_running`` is
   the last guard (against a start that takes no thread lock, such as ``mark_running``): its
   violation skips that thread (a subtransaction per claimed run), never raises.
3. **Fencing**: every claim writes a new ``lease_token`` (``gen_random_uuid()``). Renewal, the
   terminal write, the rollback's delete and the hand-back match ``lease_token = token AND
   status = 'running'``; a sweep that takes the run over (requeue, end) makes that false for
   good, since the next claim draws a new token. A process that outlived its lease writes
   nothing. The checkpointer's fence is ``LEASE_HELD_SQL`` in its own transaction.
4. **The sweep never double-processes a run**: it locks the thread row, then the run row,
   ``SKIP LOCKED``, and re-checks the expiry on the locked row, so concurrent sweepers split the
   work, and a renewal that committed first wins (the row no longer qualifies).
5. **A thread's status is recomputed in the transaction that changes its run** (claim leaves it
   ``busy``; finish, sweep and hand-back recompute it): never ``busy`` with nothing active,
   never at rest while something is pending.
6. **Wake-ups**: whatever may make a run claimable notifies ``RUNS_CHANNEL`` in its own
   transaction (NOTIFY is delivered at COMMIT): an admission of a due pending run when the store
   is opened with ``notify=True``, a fenced finish that leaves pending runs, a sweep that
   changed anything, a hand-back. ``notify_pending`` is for every other path. NOTIFY has no
   replay: claimers also poll.

Deliberate differences from LangGraph Platform (scale-out.md 1.2):
1. The attempt counter is the run row's ``attempt`` (1 for the first execution; the sweep
   charges one per lost lease, a hand-back none), not a Redis counter.
2. A claim is taken from PostgreSQL directly (LISTEN/NOTIFY + poll), not from a Redis queue.
3. The sweep ends a run whose intent is ``rollback`` ``interrupted`` and returns it: the caller
   deletes its checkpoints, then the run (``delete_run``). The run row is the durable record of
   the rollback still to do until then.
4. ``not_before`` is the admitting process's clock (invariant 1). A DB-clock due time needs the
   admission instant on the DB clock, i.e. a new column, which a rolling deploy cannot add
   (postgres_functions.py, ``MIGRATION_V2``); with NTP the skew is milliseconds.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from runtime.auth_filter import AuthFilter
from runtime.ids import now_iso
from runtime.store.postgres_schema import (
    RUN_COLS,
    RUNS_CHANNEL,
    admission_error,
    admit_checked,
    outcome_args,
    run_from_row,
    to_jsonb,
)
from runtime.store.protocol import CancelRequest, Claim, RenewResult, SweepOutcome, SweptRun
from runtime.types import CancelAction, Run, RunStatus, ThreadOutcome

Conn = AsyncConnection[tuple[Any, ...]]

_SWEPT_COLS = ", ".join(f"(o_run).{c.strip()}" for c in RUN_COLS.split(","))
_RUN_FIELDS = _SWEPT_COLS  # the columns of an ``o_run`` composite, in RUN_COLS order

LEASE_HELD_SQL = (
    "SELECT 1 FROM runs WHERE run_id = %s AND lease_token = %s::uuid AND status = 'running' "
    "FOR KEY SHARE"
)
"""The checkpointer's fence (scale-out.md (b) step 6): run inside the transaction of a
checkpoint write, it returns a row only while the attempt holds its lease, and its row lock
keeps a sweep (``FOR UPDATE SKIP LOCKED``) from taking the run over before that transaction
ends. ``KEY SHARE`` rather than ``SHARE``: renewals and cancel intents (``NO KEY UPDATE``) do
not wait for the checkpoint write."""

_CLAIM_RETRIES = 3


class PostgresClaims:
    """``RunClaims`` over the store's pool (mixed into ``PostgresStore``)."""

    _pool: AsyncConnectionPool[Conn]

    async def claim_runs(self, owner: str, limit: int, lease_s: float) -> list[Claim]:
        """Claim up to ``limit`` runs for ``owner`` (module invariants 1-3).

        Each claimed run is stored ``running`` with ``owner``, a new lease token and
        ``lease_expires_at = now() + lease_s`` (DB clock); its ``attempt`` is unchanged.

        Args:
            owner: the claiming process's id (any text; kept on the row for diagnosis).
            limit: free slots of the process; 0 or less claims nothing. Each claimed run
                costs a subtransaction (the unique-violation guard): keep it under 64, the
                subtransactions a backend caches before snapshots of every session slow down.
            lease_s: seconds of lease.

        Returns:
            The claims, oldest head first: the run as stored (``running``) and its token.
            Runs other claimers hold at that instant are not waited for.

        Cancellation: a cancelled caller stops waiting; the transaction is rolled back unless
        its COMMIT was already sent, in which case the runs stay claimed until their lease
        expires and the sweep re-queues them (attempt charged). Callers shield the call.
        """
        if limit <= 0:
            return []
        for attempt in range(_CLAIM_RETRIES):
            try:
                async with self._pool.connection() as conn:
                    cur = await conn.execute(
                        f"SELECT {RUN_COLS}, lease_token::text FROM "
                        "gw_claim_runs_v1(%s, %s, %s, %s)",
                        (owner, limit, float(lease_s), now_iso()))
                    rows = await cur.fetchall()
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                # not expected (the claim never waits on a row lock), but never fatal
                if attempt == _CLAIM_RETRIES - 1:
                    return []
                continue
            return [Claim(run_from_row(r), str(r[-1])) for r in rows]
        return []

    async def admit_run_leased(
        self, run: Run, *, create_thread: bool, thread_metadata: dict[str, Any] | None = None,
        require_interrupted: bool = False, owner: str | None = None, lease_s: float = 30.0,
        visible: AuthFilter | None = None,
    ) -> tuple[list[Run], str | None]:
        """``admit_run`` (one transaction, same errors, ``visible`` as there), and when
        ``owner`` is given, the
        thread runs nothing and the run is due at once: the run is stored ``running`` under a
        new lease of ``owner`` (``lease_s`` seconds, DB clock), as a claim would leave it. The
        cluster's fast path: one transaction instead of an admission and a claim.

        Returns:
            ``(runs already active, oldest first; the new run's lease token or None if it
            stays pending)``.

        Raises:
            ThreadNotFound, ThreadBusy, BadRequest, InvalidRequest: as ``admit_run``.
        """
        meta, kwargs = to_jsonb(run.metadata, "metadata"), to_jsonb(run.kwargs, "kwargs")
        thread_meta = to_jsonb(thread_metadata or {}, "metadata")
        try:
            rows = await admit_checked(
                self._pool, run.thread_id, visible,
                f"SELECT o_token::text, {_RUN_FIELDS} FROM gw_admit_run_leased_v1("
                "%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s, %s, %s, %s, %s, "
                "%s::jsonb, %s, %s, %s)",
                (run.run_id, run.thread_id, run.assistant_id, run.graph_id, run.status, meta,
                 kwargs, run.multitask_strategy, run.created_at, run.updated_at, run.attempt,
                 run.cancel_action, run.on_completion, run.not_before, create_thread,
                 thread_meta, require_interrupted, owner, float(lease_s)))
        except psycopg.Error as exc:
            raise admission_error(exc, run.thread_id) from None
        token = next((str(r[0]) for r in rows if r[0] is not None), None)
        return [run_from_row(r[1:]) for r in rows if r[1] is not None], token

    async def renew_leases(
        self, owner: str, tokens: dict[str, str], lease_s: float
    ) -> RenewResult:
        """Extend to ``now() + lease_s`` (DB clock) every lease of ``owner`` in ``tokens``
        (``{run_id: lease_token}``) whose token still matches on a ``running`` run, in one
        statement; read each renewed run's cancel intent in the same statement.

        A lease past its expiry but not yet swept is renewed (the run is still this
        process's: module invariant 4 orders the renewal against a sweep).

        Returns:
            ``renewed``: ``{run_id: cancel_action or None}`` (a cancel from another process
            whose publish was lost: the slow path); ``lost``: the run ids whose token is gone
            or which are no longer running. The caller stops a lost run locally and writes
            nothing more for it.
        """
        if not tokens:
            return RenewResult({}, frozenset())
        ids = list(tokens)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE runs AS r SET lease_expires_at = now() + make_interval(secs => %s) "
                "FROM unnest(%s::text[], %s::uuid[]) AS t(run_id, token) "
                "WHERE r.run_id = t.run_id AND r.lease_token = t.token "
                "AND r.status = 'running' AND r.owner = %s "
                "RETURNING r.run_id, r.cancel_action",
                (float(lease_s), ids, [tokens[i] for i in ids], owner))
            rows = await cur.fetchall()
        renewed = {str(r[0]): CancelAction(r[1]) if r[1] else None for r in rows}
        return RenewResult(renewed, frozenset(i for i in ids if i not in renewed))

    async def finish_run_fenced(
        self, run_id: str, thread_id: str, token: str, status: RunStatus,
        outcome: ThreadOutcome | None,
    ) -> bool:
        """``finish_run`` (terminal status + the thread it leaves, one transaction), only while
        the caller's lease holds: ``lease_token = token AND status = 'running'``. Notifies
        ``RUNS_CHANNEL`` when the thread has pending runs.

        A lease past its expiry that no sweep has taken yet still holds (as for
        ``renew_leases``): the caller's own deadline (fail-stop at the last confirmed expiry,
        on its monotonic clock) is what keeps a frozen process from writing late; the token is
        what makes a late write harmless once the run was taken over.

        Returns:
            True if written; False (nothing written) if the lease was lost (swept, taken
            over) or the run already ended.
        """
        rows = await self._fetchall_claims(
            "SELECT gw_finish_run_fenced_v1(%s, %s, %s::uuid, %s, %s, %s, %s::jsonb, %s::jsonb, "
            "%s::jsonb, %s, %s::jsonb)",
            (run_id, thread_id, token, status, now_iso(), *outcome_args(outcome)))
        return bool(rows[0][0])

    async def delete_run_fenced(
        self, run_id: str, thread_id: str, token: str, outcome: ThreadOutcome | None = None
    ) -> bool:
        """``delete_run`` (a rollback of the owner's own run: the record goes, the thread gets
        ``outcome``, in one transaction) only while ``token`` holds the lease of the running
        run; notifies ``RUNS_CHANNEL`` when the thread has pending runs.

        Returns:
            True if deleted; False (nothing written) if the lease was lost or the run ended.
        """
        rows = await self._fetchall_claims(
            "SELECT gw_delete_run_fenced_v1(%s, %s, %s::uuid, %s, %s, %s::jsonb, %s::jsonb, "
            "%s::jsonb, %s, %s::jsonb)",
            (run_id, thread_id, token, now_iso(), *outcome_args(outcome)))
        return bool(rows[0][0])

    async def requeue_fenced(self, run_id: str, token: str) -> bool:
        """Hand a run back (graceful shutdown): ``running -> pending`` with the attempt not
        charged and owner, token and expiry cleared, only while ``token`` holds; notifies
        ``RUNS_CHANNEL`` so a surviving process claims it at once. The thread stays ``busy``.

        Returns:
            True if handed back; False if the lease was already lost.
        """
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "WITH u AS (UPDATE runs SET status = 'pending', owner = NULL, lease_token = NULL,"
                " lease_expires_at = NULL, updated_at = %s WHERE run_id = %s "
                "AND lease_token = %s::uuid AND status = 'running' RETURNING 1) "
                "SELECT pg_notify(%s, '') FROM u", (now_iso(), run_id, token, RUNS_CHANNEL))
            return len(await cur.fetchall()) > 0

    async def lease_held(self, run_id: str, token: str) -> bool:
        """Whether ``token`` is still the lease of the running run ``run_id`` (a read; the
        checkpointer's fence runs ``LEASE_HELD_SQL`` inside its own transaction instead)."""
        rows = await self._fetchall_claims(LEASE_HELD_SQL.removesuffix(" FOR KEY SHARE"),
                                           (run_id, token))
        return bool(rows)

    async def request_cancel(
        self, run_id: str, action: CancelAction, thread_id: str | None = None
    ) -> CancelRequest | None:
        """Record the durable cancel intent of an active run, from any process, in one
        statement (scale-out.md (b) step 9): ``rollback`` replaces ``interrupt``, never the
        reverse (the single-process manager's rule, now held by the row for every process);
        ``cancel_requested_at`` keeps the first request's instant (DB clock).

        ``set_cancel_action`` stays as it was (the last request is stored), for the
        single-process manager.

        Returns:
            The run as now stored (``pending``: the caller finishes it; ``running``: the caller
            signals ``owner``, and the owner's renewal reads the intent if the signal is lost)
            and its lease holder; None if the run is not pending or running (or not in
            ``thread_id``).
        """
        sql = (
            "UPDATE runs SET cancel_action = CASE WHEN cancel_action = 'rollback' "
            "THEN cancel_action ELSE %s END, "
            "cancel_requested_at = COALESCE(cancel_requested_at, now()), updated_at = %s "
            "WHERE run_id = %s AND status IN ('pending', 'running')")
        args: tuple[Any, ...] = (action, now_iso(), run_id)
        if thread_id is not None:
            sql += " AND thread_id = %s"
            args = (*args, thread_id)
        rows = await self._fetchall_claims(f"{sql} RETURNING {RUN_COLS}, owner", args)
        if not rows:
            return None
        return CancelRequest(run_from_row(rows[0]), rows[0][-1])

    async def sweep_expired(self, max_attempts: int, grace_s: float) -> list[SweptRun]:
        """Take over every ``running`` run whose lease expired more than ``grace_s`` ago (DB
        clock), and finish every ``pending`` run whose cancel intent is older than
        ``grace_s`` (its canceller died before finishing it), each with its thread's status in
        the same transaction (module invariants 4, 5):

        - a cancel intent -> ``interrupted`` (``rollback``: reported ``ROLLBACK``, the caller
          deletes the run's checkpoints, then the run);
        - else ``attempt >= max_attempts`` -> ``error``, the thread ``error`` with
          ``{"error": "MaxAttemptsExceeded", "message": ...}`` (its stored ``values`` kept);
        - else -> ``pending`` with ``attempt + 1``, owner, token and expiry cleared.

        Notifies ``RUNS_CHANNEL`` if anything changed. Rows other sweepers (or an admission or
        finish of the thread) hold are left to the next sweep.

        Returns:
            What was done, per run, in ``seq`` order: the run as now stored, the outcome and
            the owner that lost it (None for a pending run).
        """
        rows = await self._fetchall_claims(
            f"SELECT o_outcome, o_owner, {_SWEPT_COLS} FROM gw_sweep_runs_v1(%s, %s, %s)",
            (max_attempts, float(grace_s), now_iso()))
        return [SweptRun(run_from_row(r[2:]), SweepOutcome(r[0]), r[1]) for r in rows]

    async def notify_pending(self) -> None:
        """Wake every listening claimer (``NOTIFY gw_runs``), for a path that made a run
        claimable without notifying itself (``finish_run``, ``delete_run``, ``requeue_run``,
        an admission on a store opened without ``notify``)."""
        async with self._pool.connection() as conn:
            await conn.execute("SELECT pg_notify(%s, '')", (RUNS_CHANNEL,))

    async def _fetchall_claims(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, args)
            return await cur.fetchall()

