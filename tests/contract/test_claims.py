"""The claims contract (``runtime.store.protocol.RunClaims``): N processes on one store share
the pending runs, one lease holder per run, and take over a dead or frozen holder's runs.

PostgreSQL only: SQLite does not implement ``RunClaims``, since it is single-process by
construction (its one scheduler decides in memory; there is nobody to share runs with). A second
implementation joins by parametrizing the ``claims`` fixture.

Contract: design.md 4.1 (one running run per thread), FIFO per thread, design.md 9 (leases on
the store's clock, fenced writes, the sweep), scale-out.md (b) steps 3, 5, 6, 7, 9, 10. Each
"process" is a store of its own (its own pool) on one database.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any
from uuid import uuid4

import anyio
import pytest
from psycopg import AsyncConnection

from runtime.auth_filter import AuthFilter
from runtime.errors import ThreadNotFound
from runtime.ids import now_iso, uuid7
from runtime.store.postgres import PostgresStore
from runtime.store.postgres_claims import LEASE_HELD_SQL
from runtime.store.postgres_schema import RUNS_CHANNEL
from runtime.store.protocol import Claim, RunClaims, SweepOutcome
from runtime.store.sqlite import SqliteStore
from runtime.types import (
    CancelAction,
    MultitaskStrategy,
    Run,
    RunStatus,
    ThreadOutcome,
    ThreadStatus,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

LEASE_S = 30.0


@pytest.fixture
async def claims(pg_url: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore.open(pg_url) as store:
        yield store


def new_run(thread_id: str, **changes: Any) -> Run:
    now = now_iso()
    run = Run(uuid7(), thread_id, "a-1", "echo", RunStatus.PENDING, {"graph_id": "echo"},
              {"input": {}}, MultitaskStrategy.ENQUEUE, now, now)
    return run.replace(**changes) if changes else run


async def admitted(store: PostgresStore, thread_id: str, **changes: Any) -> Run:
    run = new_run(thread_id, **changes)
    await store.admit_run(run, create_thread=True)
    return run


async def get(store: PostgresStore, run_id: str) -> Run:
    run = await store.get_run(run_id)
    assert run is not None
    return run


def done(**values: Any) -> ThreadOutcome:
    return ThreadOutcome(ThreadStatus.IDLE, values or {"v": 1}, {})


async def sql(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query, args or None)
        return await cur.fetchall() if cur.description else []


async def expire(url: str, run_id: str) -> None:
    """The owner froze or died: its lease is an hour past (DB clock)."""
    await sql(url, "UPDATE runs SET lease_expires_at = now() - interval '1 hour' "
                   "WHERE run_id = %s", run_id)


def test_sqlite_does_not_implement_run_claims() -> None:
    """SQLite is one process by construction: no claims (module docstring)."""
    assert not hasattr(SqliteStore, "claim_runs")
    assert hasattr(PostgresStore, "claim_runs")
    store: type[RunClaims] = PostgresStore  # mypy checks PostgresStore against the Protocol
    assert store is PostgresStore


# ---- claim ---------------------------------------------------------------------------------------


async def test_a_claim_takes_each_idle_threads_oldest_pending_run(claims: PostgresStore) -> None:
    a1, a2, a3 = [await admitted(claims, "ta") for _ in range(3)]
    b1 = await admitted(claims, "tb")
    got = await claims.claim_runs("p1", 10, LEASE_S)
    assert [c.run.run_id for c in got] == [a1.run_id, b1.run_id]
    for claim in got:
        assert claim.run.status == RunStatus.RUNNING and claim.run.attempt == 1
        assert len(claim.lease_token) == 36
    assert got[0].lease_token != got[1].lease_token
    assert await claims.claim_runs("p2", 10, LEASE_S) == []  # both threads run something
    rows = await sql_rows(claims, "SELECT owner, lease_expires_at - now() FROM runs "
                                  "WHERE run_id = %s", a1.run_id)
    assert rows[0][0] == "p1" and 25 < rows[0][1].total_seconds() <= 30
    assert await claims.finish_run_fenced(a1.run_id, "ta", got[0].lease_token,
                                          RunStatus.SUCCESS, done())
    assert [c.run.run_id for c in await claims.claim_runs("p2", 10, LEASE_S)] == [a2.run_id]
    assert (await get(claims, a3.run_id)).status == RunStatus.PENDING
    assert await claims.claim_runs("p2", 0, LEASE_S) == []


async def sql_rows(store: PostgresStore, query: str, *args: Any) -> list[tuple[Any, ...]]:
    async with store._pool.connection() as conn:
        cur = await conn.execute(query, args)
        return await cur.fetchall()


async def test_the_limit_counts_claims_and_the_oldest_heads_go_first(
    claims: PostgresStore,
) -> None:
    runs = [await admitted(claims, f"t{i}") for i in range(5)]
    first = await claims.claim_runs("p1", 2, LEASE_S)
    assert [c.run.run_id for c in first] == [r.run_id for r in runs[:2]]
    rest = await claims.claim_runs("p1", 10, LEASE_S)
    assert [c.run.run_id for c in rest] == [r.run_id for r in runs[2:]]


async def test_concurrent_claimers_keep_fifo_and_one_running_per_thread(pg_url: str) -> None:
    """Four processes claim 50 runs on 10 threads at once: each run is claimed exactly once,
    a thread never runs two, and each thread runs in admission order."""
    async with AsyncExitStack() as stack:
        stores = [await stack.enter_async_context(PostgresStore.open(pg_url, max_size=3))
                  for _ in range(4)]
        admitted_order: dict[str, list[str]] = {f"t{i}": [] for i in range(10)}
        for _ in range(5):
            for tid in admitted_order:
                run = await admitted(stores[0], tid)
                admitted_order[tid].append(run.run_id)
        claimed: list[str] = []
        order: dict[str, list[str]] = {tid: [] for tid in admitted_order}
        running: set[str] = set()
        finished = anyio.Event()

        async def execute(store: PostgresStore, claim: Claim) -> None:
            tid = claim.run.thread_id
            assert tid not in running, f"two runs of {tid} running at once"
            running.add(tid)
            order[tid].append(claim.run.run_id)
            await anyio.sleep(0.002)
            running.discard(tid)  # before the finish commits: the store still says running
            assert await store.finish_run_fenced(claim.run.run_id, tid, claim.lease_token,
                                                 RunStatus.SUCCESS, done())
            if len(claimed) == 50 and not running:
                finished.set()

        async def claimer(store: PostgresStore, owner: str) -> None:
            async with anyio.create_task_group() as tg:
                while not finished.is_set():
                    got = await store.claim_runs(owner, 3, LEASE_S)
                    for claim in got:
                        claimed.append(claim.run.run_id)
                        tg.start_soon(execute, store, claim)
                    await anyio.sleep(0 if got else 0.005)

        with anyio.fail_after(40):
            async with anyio.create_task_group() as tg:
                for i, store in enumerate(stores):
                    tg.start_soon(claimer, store, f"p{i}")
    assert len(claimed) == 50
    assert max(Counter(claimed).values()) == 1
    assert order == admitted_order
    rows = await sql(pg_url, "SELECT status, count(*) FROM runs GROUP BY status")
    assert rows == [("success", 50)]
    owners = await sql(pg_url, "SELECT count(DISTINCT owner) FROM runs")
    assert owners[0][0] >= 2  # the work was shared


async def test_fifo_and_exactly_once_under_admissions_hand_backs_and_takeovers(
    pg_url: str,
) -> None:
    """Three processes claim while runs keep arriving; some attempts are handed back, some
    freeze past a short lease and are swept (their late finish must be refused). Every run
    succeeds exactly once, and each thread's runs succeed in admission order."""
    rng = random.Random(11)
    total = 60
    async with AsyncExitStack() as stack:
        stores = [await stack.enter_async_context(PostgresStore.open(pg_url, max_size=4))
                  for _ in range(3)]
        admitted_order: dict[str, list[str]] = {f"t{i}": [] for i in range(8)}
        succeeded: list[str] = []
        order: dict[str, list[str]] = {tid: [] for tid in admitted_order}
        zombie_writes: list[bool] = []
        attempts: list[str] = []
        all_done = anyio.Event()

        async def admitter() -> None:
            for _ in range(total):
                tid = rng.choice(list(admitted_order))
                run = await admitted(stores[rng.randrange(3)], tid)
                admitted_order[tid].append(run.run_id)
                await anyio.sleep(rng.random() * 0.01)

        async def execute(store: PostgresStore, claim: Claim) -> None:
            run, tid = claim.run, claim.run.thread_id
            attempts.append(run.run_id)
            fate = len(attempts)
            await anyio.sleep(rng.random() * 0.005)
            if fate % 5 == 1:
                await store.requeue_fenced(run.run_id, claim.lease_token)
                return
            if fate % 7 == 3:  # freezes past its lease: swept and re-run elsewhere meanwhile
                with anyio.fail_after(20):
                    while await store.lease_held(  # noqa: ASYNC110 (a poll)
                            run.run_id, claim.lease_token):
                        await anyio.sleep(0.05)
                zombie_writes.append(await store.finish_run_fenced(
                    run.run_id, tid, claim.lease_token, RunStatus.SUCCESS, done()))
                return
            if await store.finish_run_fenced(run.run_id, tid, claim.lease_token,
                                             RunStatus.SUCCESS, done(run=run.run_id)):
                succeeded.append(run.run_id)
                order[tid].append(run.run_id)
                if len(succeeded) == total:
                    all_done.set()

        async def claimer(store: PostgresStore, owner: str) -> None:
            async with anyio.create_task_group() as tg:
                while not all_done.is_set():
                    got = await store.claim_runs(owner, 2, 0.3)
                    for claim in got:
                        tg.start_soon(execute, store, claim)
                    await anyio.sleep(0 if got else 0.01)

        async def sweeper(store: PostgresStore) -> None:
            while not all_done.is_set():
                await store.sweep_expired(1000, 0.0)
                await anyio.sleep(0.05)

        with anyio.fail_after(45):
            async with anyio.create_task_group() as tg:
                tg.start_soon(admitter)
                for i, store in enumerate(stores):
                    tg.start_soon(claimer, store, f"p{i}")
                    tg.start_soon(sweeper, store)
    assert sorted(succeeded) == sorted(r for rs in admitted_order.values() for r in rs)
    assert order == admitted_order
    assert zombie_writes and not any(zombie_writes)
    rows = await sql(pg_url, "SELECT status, count(*) FROM runs GROUP BY status")
    assert rows == [("success", total)]
    assert (await sql(pg_url, "SELECT count(*) FROM threads WHERE status = 'busy'")) == [(0,)]


async def test_after_seconds_is_respected_and_blocks_the_thread(claims: PostgresStore) -> None:
    """A run due in 1 s (``not_before`` as ``runtime.spec`` writes it for ``after_seconds``) is
    not claimed before, blocks its thread's later runs meanwhile (FIFO, as the single-process
    scheduler), and is claimed after."""
    from datetime import UTC, datetime, timedelta

    delayed = await admitted(
        claims, "t1", not_before=(datetime.now(UTC) + timedelta(seconds=1)).isoformat())
    behind = await admitted(claims, "t1")
    other = await admitted(claims, "t2")
    start = time.monotonic()
    assert [c.run.run_id for c in await claims.claim_runs("p1", 10, LEASE_S)] == [other.run_id]
    with anyio.fail_after(10):
        while not (got := await claims.claim_runs("p1", 10, LEASE_S)):  # noqa: ASYNC110 (a poll)
            await anyio.sleep(0.05)
    assert time.monotonic() - start >= 0.8
    assert [c.run.run_id for c in got] == [delayed.run_id]
    assert (await get(claims, behind.run_id)).status == RunStatus.PENDING


async def test_a_pending_run_with_a_cancel_intent_is_never_claimed(claims: PostgresStore) -> None:
    cancelled = await admitted(claims, "t1")
    later = await admitted(claims, "t1")
    assert await claims.set_cancel_action(cancelled.run_id, CancelAction.INTERRUPT)
    got = await claims.claim_runs("p1", 10, LEASE_S)
    assert [c.run.run_id for c in got] == [later.run_id]
    assert await claims.finish_run_fenced(later.run_id, "t1", got[0].lease_token,
                                          RunStatus.SUCCESS, done())
    assert await claims.claim_runs("p1", 10, LEASE_S) == []
    assert (await get(claims, cancelled.run_id)).status == RunStatus.PENDING
    assert await claims.finish_run(cancelled.run_id, "t1", RunStatus.INTERRUPTED, None)
    assert (await claims.get_thread("t1")).status == ThreadStatus.IDLE


async def test_a_claim_skips_a_thread_that_mark_running_started(claims: PostgresStore) -> None:
    """A start that bypasses the claim (the single-process ``mark_running``) is respected: the
    thread is skipped, nothing raises."""
    first = await admitted(claims, "t1")
    await admitted(claims, "t1")
    assert await claims.mark_running(first.run_id) is not None
    assert await claims.claim_runs("p1", 10, LEASE_S) == []


async def test_the_unique_index_refusal_skips_the_thread(pg_url: str) -> None:
    """A race the re-check cannot see (an uncommitted start of another run of the thread) hits
    the partial unique index inside the claim: that thread is skipped, the others claimed."""
    async with PostgresStore.open(pg_url) as store:
        first = await admitted(store, "t1")
        second = await admitted(store, "t1")
        other = await admitted(store, "t2")
        async with await AsyncConnection.connect(pg_url) as racer:  # a transaction left open
            await racer.execute("UPDATE runs SET status = 'running' WHERE run_id = %s",
                                (second.run_id,))

            async def commit_soon() -> None:
                await anyio.sleep(0.3)
                await racer.commit()

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(commit_soon)
                    got = await store.claim_runs("p1", 10, LEASE_S)
        assert [c.run.run_id for c in got] == [other.run_id]
        assert (await get(store, first.run_id)).status == RunStatus.PENDING


# ---- leases and fencing --------------------------------------------------------------------------


async def test_renewal_keeps_a_lease_and_reports_the_lost_and_the_cancel_intent(
    claims: PostgresStore,
) -> None:
    runs = [await admitted(claims, f"t{i}") for i in range(3)]
    got = {c.run.run_id: c.lease_token for c in await claims.claim_runs("p1", 10, 0.5)}
    await anyio.sleep(0.3)
    result = await claims.renew_leases("p1", got, LEASE_S)
    assert result.renewed == {r.run_id: None for r in runs} and result.lost == frozenset()
    await anyio.sleep(0.4)  # past the first 0.5 s lease: renewed, so nothing to sweep
    assert await claims.sweep_expired(3, 0) == []
    left = await sql_rows(claims, "SELECT min(lease_expires_at - now()) FROM runs")
    assert left[0][0].total_seconds() > 25

    a, b, c = (r.run_id for r in runs)
    assert await claims.set_cancel_action(a, CancelAction.ROLLBACK)
    assert await claims.finish_run_fenced(b, "t1", got[b], RunStatus.SUCCESS, done())
    tokens = {**got, c: "00000000-0000-0000-0000-000000000000"}
    result = await claims.renew_leases("p1", tokens, LEASE_S)
    assert result.renewed == {a: CancelAction.ROLLBACK}
    assert result.lost == {b, c}
    other = await claims.renew_leases("p2", {a: got[a]}, LEASE_S)  # not p2's lease
    assert other.lost == {a}
    assert (await claims.renew_leases("p1", {}, LEASE_S)).renewed == {}


async def test_a_fenced_finish_after_a_takeover_writes_nothing(pg_url: str) -> None:
    """Process A claims, freezes past its lease; the sweep re-queues; B claims and runs it.
    A wakes up: its finish, hand-back and renewal are refused; the run and thread are B's."""
    async with PostgresStore.open(pg_url) as a, PostgresStore.open(pg_url) as b:
        run = await admitted(a, "t1")
        (mine,) = await a.claim_runs("A", 1, LEASE_S)
        assert await a.lease_held(run.run_id, mine.lease_token)
        await expire(pg_url, run.run_id)
        (swept,) = await b.sweep_expired(3, 10.0)
        assert (swept.outcome, swept.previous_owner) == (SweepOutcome.REQUEUED, "A")
        assert (swept.run.status, swept.run.attempt) == (RunStatus.PENDING, 2)
        (theirs,) = await b.claim_runs("B", 1, LEASE_S)
        assert theirs.run.attempt == 2 and theirs.lease_token != mine.lease_token

        assert not await a.lease_held(run.run_id, mine.lease_token)
        assert not await a.finish_run_fenced(run.run_id, "t1", mine.lease_token,
                                             RunStatus.SUCCESS, done(by="A"))
        assert not await a.requeue_fenced(run.run_id, mine.lease_token)
        assert (await a.renew_leases("A", {run.run_id: mine.lease_token}, LEASE_S)).lost == {
            run.run_id}
        got = await get(a, run.run_id)
        assert got.status == RunStatus.RUNNING and got.attempt == 2
        assert (await sql(pg_url, "SELECT owner FROM runs"))[0][0] == "B"
        assert (await a.get_thread("t1")).status == ThreadStatus.BUSY

        assert await b.finish_run_fenced(run.run_id, "t1", theirs.lease_token,
                                         RunStatus.SUCCESS, done(by="B"))
        assert not await b.finish_run_fenced(run.run_id, "t1", theirs.lease_token,
                                             RunStatus.ERROR, None)  # ended: CAS
        thread = await a.get_thread("t1")
        assert thread.status == ThreadStatus.IDLE and thread.values == {"by": "B"}
        assert (await get(a, run.run_id)).status == RunStatus.SUCCESS


async def test_a_short_lease_expires_on_the_database_clock(claims: PostgresStore) -> None:
    run = await admitted(claims, "t1")
    await claims.claim_runs("p1", 1, 0.2)
    assert await claims.sweep_expired(3, 0.0) == []  # not yet
    await anyio.sleep(0.4)
    assert await claims.sweep_expired(3, 5.0) == []  # within the grace
    (swept,) = await claims.sweep_expired(3, 0.0)
    assert swept.run.run_id == run.run_id and swept.outcome == SweepOutcome.REQUEUED


async def test_leases_ignore_the_app_clock(
    claims: PostgresStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The processes' clocks are an hour apart (one ahead, one behind the database's): a
    lease expiry computed from either would be swept at once or never; on the database's clock
    a 30 s lease is neither."""
    from datetime import UTC, datetime, timedelta

    from runtime.store import postgres, postgres_claims

    def skewed(hours: float) -> None:
        def now_iso() -> str:
            return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()

        monkeypatch.setattr(postgres_claims, "now_iso", now_iso)
        monkeypatch.setattr(postgres, "now_iso", now_iso)

    skewed(+1)
    run = await admitted(claims, "t1")
    (claim,) = await claims.claim_runs("ahead", 1, LEASE_S)
    skewed(-1)
    assert await claims.sweep_expired(3, 0.0) == []
    renewed = await claims.renew_leases("ahead", {run.run_id: claim.lease_token}, 0.2)
    assert run.run_id in renewed.renewed
    await anyio.sleep(0.4)
    skewed(+1)
    (swept,) = await claims.sweep_expired(3, 0.0)
    assert swept.run.run_id == run.run_id


async def test_a_graceful_hand_back_keeps_the_attempt(pg_url: str) -> None:
    async with PostgresStore.open(pg_url) as a, PostgresStore.open(pg_url) as b:
        run = await admitted(a, "t1")
        (mine,) = await a.claim_runs("A", 1, LEASE_S)
        assert await a.requeue_fenced(run.run_id, mine.lease_token)
        got = await get(a, run.run_id)
        assert (got.status, got.attempt) == (RunStatus.PENDING, 1)
        rows = await sql(pg_url, "SELECT owner, lease_token, lease_expires_at FROM runs")
        assert rows == [(None, None, None)]
        assert (await a.get_thread("t1")).status == ThreadStatus.BUSY
        assert not await a.requeue_fenced(run.run_id, mine.lease_token)
        (theirs,) = await b.claim_runs("B", 1, LEASE_S)
        assert theirs.run.run_id == run.run_id and theirs.run.attempt == 1
        assert not await a.finish_run_fenced(run.run_id, "t1", mine.lease_token,
                                             RunStatus.SUCCESS, done())


async def test_a_fenced_rollback_delete_needs_the_lease(
    claims: PostgresStore, pg_url: str,
) -> None:
    run = await admitted(claims, "t1")
    queued = await admitted(claims, "t1")
    (claim,) = await claims.claim_runs("p1", 1, LEASE_S)
    restored = ThreadOutcome(ThreadStatus.IDLE, {"v": "before"}, {})
    assert not await claims.delete_run_fenced(run.run_id, "t1", str(uuid4()), restored)
    assert await claims.delete_run_fenced(run.run_id, "t1", claim.lease_token, restored)
    assert await claims.get_run(run.run_id) is None
    thread = await claims.get_thread("t1")
    assert (thread.status, thread.values) == (ThreadStatus.BUSY, {"v": "before"})
    (claim,) = await claims.claim_runs("p1", 1, LEASE_S)
    assert claim.run.run_id == queued.run_id
    await expire(pg_url, queued.run_id)
    await claims.sweep_expired(3, 1.0)
    assert not await claims.delete_run_fenced(queued.run_id, "t1", claim.lease_token)
    assert (await get(claims, queued.run_id)).status == RunStatus.PENDING


async def test_the_checkpointer_fence_holds_off_the_sweep_not_the_renewal(
    claims: PostgresStore, pg_url: str,
) -> None:
    """``LEASE_HELD_SQL`` in a checkpoint write's transaction: a row while the lease holds;
    until that transaction ends a sweep leaves the run alone, a renewal does not wait."""
    run = await admitted(claims, "t1")
    claim = await claim_and_expire(claims, pg_url)
    async with await AsyncConnection.connect(pg_url) as writer:
        cur = await writer.execute(LEASE_HELD_SQL, (run.run_id, claim.lease_token))
        assert await cur.fetchall() == [(1,)]
        with anyio.fail_after(5):
            assert await claims.sweep_expired(3, 1.0) == []
            renewed = await claims.renew_leases("p1", {run.run_id: claim.lease_token}, 0.01)
        assert run.run_id in renewed.renewed
        await anyio.sleep(0.05)
        assert await claims.sweep_expired(3, 0.0) == []  # still held
        await writer.commit()
    (swept,) = await claims.sweep_expired(3, 0.0)
    assert swept.run.run_id == run.run_id
    async with await AsyncConnection.connect(pg_url) as writer:
        cur = await writer.execute(LEASE_HELD_SQL, (run.run_id, claim.lease_token))
        assert await cur.fetchall() == []  # the stale attempt's checkpoint write is refused


async def test_a_cancel_request_keeps_a_rollback_and_names_the_owner(
    claims: PostgresStore, pg_url: str,
) -> None:
    running = await admitted(claims, "t1")
    pending = await admitted(claims, "t1")
    (claim,) = await claims.claim_runs("p1", 1, LEASE_S)
    got = await claims.request_cancel(running.run_id, CancelAction.INTERRUPT, "t1")
    assert got is not None and got.owner == "p1"
    assert (got.run.status, got.run.cancel_action) == (RunStatus.RUNNING, CancelAction.INTERRUPT)
    first = await sql(pg_url, "SELECT cancel_requested_at FROM runs WHERE run_id = %s",
                      running.run_id)
    got = await claims.request_cancel(running.run_id, CancelAction.ROLLBACK)
    assert got is not None and got.run.cancel_action == CancelAction.ROLLBACK
    got = await claims.request_cancel(running.run_id, CancelAction.INTERRUPT)
    assert got is not None and got.run.cancel_action == CancelAction.ROLLBACK  # not downgraded
    assert await sql(pg_url, "SELECT cancel_requested_at FROM runs WHERE run_id = %s",
                     running.run_id) == first
    renewed = await claims.renew_leases("p1", {running.run_id: claim.lease_token}, LEASE_S)
    assert renewed.renewed == {running.run_id: CancelAction.ROLLBACK}  # the slow path

    got = await claims.request_cancel(pending.run_id, CancelAction.INTERRUPT)
    assert got is not None and got.owner is None and got.run.status == RunStatus.PENDING
    assert await claims.request_cancel(pending.run_id, CancelAction.INTERRUPT, "t2") is None
    assert await claims.finish_run(pending.run_id, "t1", RunStatus.INTERRUPTED, None)
    assert await claims.request_cancel(pending.run_id, CancelAction.INTERRUPT) is None
    assert await claims.request_cancel("missing", CancelAction.INTERRUPT) is None


# ---- sweep ---------------------------------------------------------------------------------------


async def claim_and_expire(store: PostgresStore, url: str, owner: str = "p1") -> Claim:
    (claim,) = await store.claim_runs(owner, 1, LEASE_S)
    await expire(url, claim.run.run_id)
    return claim


async def test_the_sweep_requeues_then_ends_error_after_max_attempts(
    claims: PostgresStore, pg_url: str,
) -> None:
    run = await admitted(claims, "t1")
    for attempt in (1, 2):
        claim = await claim_and_expire(claims, pg_url)
        assert claim.run.attempt == attempt
        (swept,) = await claims.sweep_expired(3, 1.0)
        assert swept.outcome == SweepOutcome.REQUEUED and swept.run.attempt == attempt + 1
        assert (await claims.get_thread("t1")).status == ThreadStatus.BUSY
    queued = await admitted(claims, "t1")  # behind the failing run
    await claim_and_expire(claims, pg_url)
    (swept,) = await claims.sweep_expired(3, 1.0)
    assert swept.outcome == SweepOutcome.ERROR
    assert (swept.run.run_id, swept.run.status, swept.run.attempt) == (
        run.run_id, RunStatus.ERROR, 3)
    thread = await claims.get_thread("t1")
    assert thread.status == ThreadStatus.BUSY  # the queued run is still pending
    assert thread.error is not None and thread.error["error"] == "MaxAttemptsExceeded"
    (claim,) = await claims.claim_runs("p1", 1, LEASE_S)
    assert claim.run.run_id == queued.run_id
    await expire(pg_url, queued.run_id)
    (swept,) = await claims.sweep_expired(1, 1.0)  # max_attempts=1: no retry
    assert swept.outcome == SweepOutcome.ERROR
    thread = await claims.get_thread("t1")
    assert thread.status == ThreadStatus.ERROR  # not stranded busy
    assert await claims.active_runs("t1") == []


async def test_the_sweep_keeps_the_threads_values_on_error(
    claims: PostgresStore, pg_url: str,
) -> None:
    first = await admitted(claims, "t1")
    (claim,) = await claims.claim_runs("p1", 1, LEASE_S)
    assert await claims.finish_run_fenced(first.run_id, "t1", claim.lease_token,
                                          RunStatus.SUCCESS, done(kept=True))
    await admitted(claims, "t1")
    await claim_and_expire(claims, pg_url)
    (swept,) = await claims.sweep_expired(1, 1.0)
    thread = await claims.get_thread("t1")
    assert (thread.status, thread.values) == (ThreadStatus.ERROR, {"kept": True})


@pytest.mark.parametrize("action", [CancelAction.INTERRUPT, CancelAction.ROLLBACK])
async def test_the_sweep_honours_a_cancel_intent(
    claims: PostgresStore, pg_url: str, action: CancelAction,
) -> None:
    """The owner died after the cancel was recorded: the sweep ends the run ``interrupted``
    (also at attempt = max_attempts); a rollback is reported for the caller to delete."""
    run = await admitted(claims, "t1")
    claim = await claim_and_expire(claims, pg_url)
    assert await claims.set_cancel_action(run.run_id, action)
    (swept,) = await claims.sweep_expired(1, 1.0)
    expected = SweepOutcome.ROLLBACK if action == CancelAction.ROLLBACK else (
        SweepOutcome.INTERRUPTED)
    assert (swept.outcome, swept.run.status, swept.run.cancel_action) == (
        expected, RunStatus.INTERRUPTED, action)
    assert (await claims.get_thread("t1")).status == ThreadStatus.IDLE
    assert not await claims.finish_run_fenced(run.run_id, "t1", claim.lease_token,
                                              RunStatus.SUCCESS, done())
    if action == CancelAction.ROLLBACK:
        assert await claims.delete_run(run.run_id, "t1")
        assert await claims.get_run(run.run_id) is None


async def test_the_sweep_finishes_a_pending_run_whose_canceller_died(
    claims: PostgresStore, pg_url: str,
) -> None:
    stale = await admitted(claims, "t1")
    fresh = await admitted(claims, "t2")
    assert await claims.set_cancel_action(stale.run_id, CancelAction.ROLLBACK)
    assert await claims.set_cancel_action(fresh.run_id, CancelAction.INTERRUPT)
    first = await sql(pg_url, "SELECT cancel_requested_at FROM runs WHERE run_id = %s",
                      stale.run_id)
    assert await claims.set_cancel_action(stale.run_id, CancelAction.ROLLBACK)
    assert await sql(pg_url, "SELECT cancel_requested_at FROM runs WHERE run_id = %s",
                     stale.run_id) == first  # the first request's instant is kept
    await sql(pg_url, "UPDATE runs SET cancel_requested_at = now() - interval '1 minute' "
                      "WHERE run_id = %s", stale.run_id)
    (swept,) = await claims.sweep_expired(3, 10.0)
    assert (swept.run.run_id, swept.outcome, swept.previous_owner) == (
        stale.run_id, SweepOutcome.ROLLBACK, None)
    assert (await claims.get_thread("t1")).status == ThreadStatus.IDLE
    assert (await get(claims, fresh.run_id)).status == RunStatus.PENDING
    assert (await claims.get_thread("t2")).status == ThreadStatus.BUSY


async def test_concurrent_sweepers_never_double_process_a_run(pg_url: str) -> None:
    async with AsyncExitStack() as stack:
        stores = [await stack.enter_async_context(PostgresStore.open(pg_url, max_size=2))
                  for _ in range(4)]
        for i in range(20):
            await admitted(stores[0], f"t{i}")
        assert len(await stores[0].claim_runs("dead", 20, LEASE_S)) == 20
        await sql(pg_url, "UPDATE runs SET lease_expires_at = now() - interval '1 hour'")
        swept: list[str] = []

        async def sweeper(store: PostgresStore) -> None:
            for _ in range(3):
                swept.extend(s.run.run_id for s in await store.sweep_expired(3, 1.0))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for store in stores:
                    tg.start_soon(sweeper, store)
    assert len(swept) == 20 and len(set(swept)) == 20
    rows = await sql(pg_url, "SELECT status, attempt, count(*) FROM runs GROUP BY 1, 2")
    assert rows == [("pending", 2, 20)]


async def test_a_renewal_that_commits_first_beats_the_sweep(
    claims: PostgresStore, pg_url: str,
) -> None:
    run = await admitted(claims, "t1")
    claim = await claim_and_expire(claims, pg_url)
    renewed = await claims.renew_leases("p1", {run.run_id: claim.lease_token}, LEASE_S)
    assert run.run_id in renewed.renewed  # expired but not yet swept: still this owner's
    assert await claims.sweep_expired(3, 0.0) == []


# ---- wake-ups ------------------------------------------------------------------------------------


async def test_admission_sweep_finish_and_hand_back_notify_the_claimers(pg_url: str) -> None:
    async with (PostgresStore.open(pg_url, notify=True) as store,
                PostgresStore.open(pg_url) as quiet,
                await AsyncConnection.connect(pg_url, autocommit=True) as listener):
        await listener.execute(f"LISTEN {RUNS_CHANNEL}")

        async def notified() -> bool:
            got = [n async for n in listener.notifies(timeout=0.5, stop_after=1)]
            return bool(got) and got[0].channel == RUNS_CHANNEL

        await admitted(quiet, "t0")  # the single-process store does not notify
        assert not await notified()
        run = await admitted(store, "t1")
        assert await notified()
        await admitted(store, "t1", not_before=now_iso())  # delayed: the poll finds it
        assert not await notified()
        (claim,) = await store.claim_runs("p1", 1, LEASE_S)
        assert claim.run.run_id != run.run_id  # t0's run is older
        (claim,) = await store.claim_runs("p1", 1, LEASE_S)
        assert claim.run.run_id == run.run_id
        assert await store.requeue_fenced(run.run_id, claim.lease_token)
        assert await notified()
        (claim,) = await store.claim_runs("p1", 1, LEASE_S)
        assert await store.finish_run_fenced(run.run_id, "t1", claim.lease_token,
                                             RunStatus.SUCCESS, done())
        assert await notified()  # t1 has a pending run left
        (claim,) = await store.claim_runs("p1", 1, LEASE_S)
        await expire(pg_url, claim.run.run_id)
        assert len(await store.sweep_expired(3, 1.0)) == 1
        assert await notified()
        await store.notify_pending()
        assert await notified()


async def test_a_leased_admission_checks_an_auth_filter(claims: PostgresStore) -> None:
    """``visible`` on the cluster's fast path: another user's thread is refused as missing,
    with no run, no lease and no thread left behind."""
    bobs = str(uuid4())
    await claims.create_thread(bobs, {"owner": "bob"})
    alice = AuthFilter.parse({"owner": "alice"})
    hidden = new_run(bobs)
    with pytest.raises(ThreadNotFound):
        await claims.admit_run_leased(hidden, create_thread=True, owner="p1", lease_s=LEASE_S,
                                      visible=alice)
    assert await claims.get_run(hidden.run_id) is None
    fresh = new_run(str(uuid4()))
    with pytest.raises(ThreadNotFound):  # created without alice's stamp: rolled back too
        await claims.admit_run_leased(fresh, create_thread=True, owner="p1", lease_s=LEASE_S,
                                      visible=alice)
    assert await claims.count_threads() == 1
    mine = new_run(str(uuid4()))
    active, token = await claims.admit_run_leased(
        mine, create_thread=True, thread_metadata={"owner": "alice"}, owner="p1",
        lease_s=LEASE_S, visible=alice)
    assert active == [] and token is not None


async def test_a_leased_admission_starts_only_on_an_idle_thread(claims: PostgresStore) -> None:
    """The cluster's fast path: with an owner, a run that can start at once is stored
    ``running`` under a new lease in its admission; behind an active run, or with a delay,
    it stays pending (and the active runs are returned as by ``admit_run``)."""
    thread_id = str(uuid4())
    first = new_run(thread_id)
    active, token = await claims.admit_run_leased(first, create_thread=True, owner="p1",
                                                  lease_s=LEASE_S)
    assert active == [] and token is not None
    assert (await get(claims, first.run_id)).status == RunStatus.RUNNING
    assert await claims.lease_held(first.run_id, token)
    renewed = await claims.renew_leases("p1", {first.run_id: token}, LEASE_S)
    assert renewed.renewed == {first.run_id: None}

    second = new_run(thread_id)
    active, token2 = await claims.admit_run_leased(second, create_thread=False, owner="p1",
                                                   lease_s=LEASE_S)
    assert [r.run_id for r in active] == [first.run_id] and token2 is None
    assert (await get(claims, second.run_id)).status == RunStatus.PENDING

    other = str(uuid4())
    later = new_run(other, not_before=now_iso())
    active, token3 = await claims.admit_run_leased(later, create_thread=True, owner="p1",
                                                   lease_s=LEASE_S)
    assert active == [] and token3 is None
    assert (await get(claims, later.run_id)).status == RunStatus.PENDING
    unowned = new_run(str(uuid4()))
    assert await claims.admit_run_leased(unowned, create_thread=True) == ([], None)
    assert (await get(claims, unowned.run_id)).status == RunStatus.PENDING

    assert await claims.finish_run_fenced(first.run_id, thread_id, token, RunStatus.SUCCESS,
                                          done())
    assert [c.run.run_id for c in await claims.claim_runs("p2", 5, LEASE_S)][:1] == [
        second.run_id]
