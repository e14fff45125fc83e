"""PostgreSQL-specific tests of the run store (runtime/store/postgres.py, postgres_migrations.py):
the schema's creation and migration at start-up, several pools (processes) on one database,
what jsonb refuses, and the indexes the queries can use.

The behaviour every store shares is the contract suite's (tests/contract/test_store.py).
"""

from __future__ import annotations

from typing import Any

import anyio
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from runtime.errors import InvalidRequest, ThreadBusy
from runtime.ids import now_iso, uuid7
from runtime.store import postgres
from runtime.store.postgres import PostgresStore
from runtime.store.postgres_migrations import (
    MIGRATIONS,
    SCHEMA_LOCK,
    SCHEMA_VERSION,
    VERSION_TABLE,
    migrate,
)
from runtime.types import MultitaskStrategy, Run, RunStatus, ThreadOutcome, ThreadStatus

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


def new_run(thread_id: str, **changes: Any) -> Run:
    now = now_iso()
    run = Run(uuid7(), thread_id, "a-1", "echo", RunStatus.PENDING, {}, {"input": {}},
              MultitaskStrategy.ENQUEUE, now, now)
    return run.replace(**changes) if changes else run


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}


async def test_concurrent_opens_on_a_fresh_database_create_the_schema_once(pg_url: str) -> None:
    """Four processes starting at once: every open succeeds and the schema is there once."""
    opened: list[int] = []

    async def open_and_use(i: int) -> None:
        async with PostgresStore.open(pg_url, max_size=2) as store:
            await store.create_thread(f"t{i}", {"i": i})
            opened.append(i)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(open_and_use, i)
    assert sorted(opened) == [0, 1, 2, 3]
    assert {"threads", "runs", "store_schema"} <= tables(pg_url)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT id, version FROM store_schema").fetchall() == [
            (1, SCHEMA_VERSION)]
        assert conn.execute("SELECT count(*) FROM threads").fetchone() == (4,)
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes")}
    assert {"runs_one_running", "runs_thread_active", "threads_metadata"} <= indexes


async def test_a_second_open_keeps_the_data(pg_url: str) -> None:
    async with PostgresStore.open(pg_url) as store:
        await store.create_thread("t1", {"k": "v"})
        run = new_run("t1")
        await store.admit_run(run, create_thread=False)
        assert await store.mark_running(run.run_id) is not None
        thread = await store.get_thread("t1")
    async with PostgresStore.open(pg_url) as store:
        assert await store.get_thread("t1") == thread
        got = await store.get_run(run.run_id)
        assert got is not None and got.status == RunStatus.RUNNING


async def test_the_schema_is_created_under_the_advisory_lock(pg_url: str) -> None:
    """While another session holds ``SCHEMA_LOCK``, an open waits; it completes once the lock
    is released."""
    with psycopg.connect(pg_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        done = anyio.Event()

        async def open_store() -> None:
            async with PostgresStore.open(pg_url):
                done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(open_store)
            with anyio.move_on_after(0.5):
                await done.wait()
            assert not done.is_set()
            assert "threads" not in tables(pg_url)
            holder.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
            with anyio.fail_after(10):
                await done.wait()
    assert "threads" in tables(pg_url)


async def test_a_newer_schema_is_refused(pg_url: str) -> None:
    async with PostgresStore.open(pg_url):
        pass
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE store_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(RuntimeError, match="newer than this gateway"):
        async with PostgresStore.open(pg_url):
            pass


async def test_two_pools_share_invariant_1_and_admission(pg_url: str) -> None:
    """Two stores on one database (two processes): a reject admission on each at once admits
    one, and a run started on one cannot be doubled by the other."""
    async with PostgresStore.open(pg_url) as a, PostgresStore.open(pg_url) as b:
        await a.create_thread("t1", {})
        outcomes: list[str] = []

        async def admit(store: PostgresStore) -> None:
            try:
                await store.admit_run(new_run("t1", multitask_strategy=MultitaskStrategy.REJECT),
                                      create_thread=False)
                outcomes.append("admitted")
            except ThreadBusy:
                outcomes.append("busy")

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for store in (a, b, a, b, a, b):
                    tg.start_soon(admit, store)
        assert sorted(outcomes) == ["admitted"] + ["busy"] * 5
        first = (await b.active_runs("t1"))[0]
        second = new_run("t1")
        await b.admit_run(second, create_thread=False)
        assert await a.mark_running(first.run_id) is not None
        assert await b.mark_running(second.run_id) is None
        assert await b.finish_run(first.run_id, "t1", RunStatus.SUCCESS,
                                  ThreadOutcome(ThreadStatus.IDLE, {"v": 1}, {}))
        assert await a.mark_running(second.run_id) is not None


async def test_u0000_is_refused_before_anything_is_stored(pg_url: str) -> None:
    """jsonb cannot hold U+0000: a client's value gets a 422 naming the field (SQLite stores
    it; postgres.py difference 1), nothing half-written; a run's output is kept with U+FFFD;
    a filter holding it matches nothing."""
    async with PostgresStore.open(pg_url) as store:
        with pytest.raises(InvalidRequest, match="metadata: PostgreSQL cannot store"):
            await store.create_thread("t1", {"k": "a\x00b"})
        run = new_run("t1", kwargs={"input": {"text": "\x00"}})
        with pytest.raises(InvalidRequest, match="kwargs: PostgreSQL cannot store"):
            await store.admit_run(run, create_thread=True)
        assert await store.count_threads() == 0 and await store.get_run(run.run_id) is None
        ok = new_run("t1")
        await store.admit_run(ok, create_thread=True)
        await store.mark_running(ok.run_id)
        # the store's copy of a thread's state writes U+0000 as U+FFFD (the checkpointer
        # keeps the exact state): a run's output never leaves it unable to finish
        assert await store.finish_run(ok.run_id, "t1", RunStatus.SUCCESS, ThreadOutcome(
            ThreadStatus.IDLE, {"\x00": 1, "text": "a\x00b", "raw": "a\\u0000b"}, {}))
        got = await store.get_run(ok.run_id)
        assert got is not None and got.status == RunStatus.SUCCESS
        thread = await store.get_thread("t1")
        assert thread.values == {"\ufffd": 1, "text": "a\ufffdb", "raw": "a\\u0000b"}
        threads, more = await store.search_threads(metadata={"k": "\x00"})
        assert (threads, more) == ([], False)
        assert await store.count_threads(values={"\x00": 1}) == 0


async def test_queries_can_use_their_indexes(pg_url: str) -> None:
    """With sequential scans disabled (a small table would be scanned), the metadata filter
    uses the GIN index and a thread's active runs the partial index."""
    async with PostgresStore.open(pg_url) as store:
        await store.create_thread("t1", {"user": "ann"})
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = str(conn.execute("EXPLAIN SELECT thread_id FROM threads WHERE metadata @> "
                                "'{\"user\": \"ann\"}'::jsonb").fetchall())
        assert "threads_metadata" in plan, plan
        plan = str(conn.execute("EXPLAIN SELECT run_id FROM runs WHERE thread_id = 't1' AND "
                                "status IN ('pending', 'running') ORDER BY seq").fetchall())
        assert "runs_thread_active" in plan, plan


async def test_an_unreachable_database_fails_at_once(pg_url: str) -> None:
    """A wrong URL is an error at start-up within seconds, not a pool waiting 30 s."""
    missing = pg_url.rsplit("/", 1)[0] + "/gw_no_such_database"
    with anyio.fail_after(10):
        with pytest.raises(psycopg.OperationalError, match="gw_no_such_database"):
            async with PostgresStore.open(missing):
                pass
        with pytest.raises(psycopg.OperationalError):
            async with PostgresStore.open("postgresql://postgres@127.0.0.1:1/postgres"):
                pass


async def test_a_version_1_database_upgrades_in_place(pg_url: str) -> None:
    """A database a version-1 gateway created (runs pending, one of them delayed) is migrated
    to the current version (6) once by several processes starting at once; a version-1
    process still connected keeps admitting on its session (versions 2 to 6 add functions
    and tables, no column: its cached ``gw_admit_run_v1`` row type stays valid), and the old
    runs are claimable."""
    with psycopg.connect(pg_url, autocommit=True) as conn, conn.transaction():
        conn.execute(VERSION_TABLE)
        conn.execute(MIGRATIONS[0].encode())
        conn.execute("INSERT INTO store_schema (id, version) VALUES (1, 1)")
    assert SCHEMA_VERSION == 6
    old_pool: AsyncConnectionPool[postgres.Conn] = AsyncConnectionPool(
        pg_url, min_size=1, max_size=1, open=False, kwargs={"autocommit": True},
        configure=postgres._configure)
    await old_pool.open(wait=True)
    try:
        old = PostgresStore(old_pool)  # a version-1 process: gw_admit_run_v1, no migration
        first = new_run("t1")
        await old.admit_run(first, create_thread=True)
        delayed = new_run("t2", not_before=now_iso())
        await old.admit_run(delayed, create_thread=True)

        found: list[int] = []

        async def start() -> None:
            async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
                found.append(await migrate(conn))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(start)
        # one process upgraded, the others found it done
        assert sorted(found) == [1, SCHEMA_VERSION, SCHEMA_VERSION]

        late = new_run("t1")
        await old.admit_run(late, create_thread=False)  # same session, after ALTER TABLE
        async with PostgresStore.open(pg_url) as store:
            got = await store.claim_runs("p1", 10, 30.0)
            assert [c.run.run_id for c in got] == [first.run_id, delayed.run_id]
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute("SELECT run_id, status FROM runs ORDER BY seq")
            assert rows.fetchall() == [(first.run_id, "running"), (delayed.run_id, "running"),
                                       (late.run_id, "pending")]
            assert conn.execute("SELECT version FROM store_schema").fetchone() == (SCHEMA_VERSION,)
    finally:
        await old_pool.close()


async def test_claims_and_the_sweep_can_use_their_indexes(pg_url: str) -> None:
    """The claim's and the sweep's scans are served by version 1's partial indexes (version 2
    adds none: postgres_migrations.py ``MIGRATION_V2``)."""
    async with PostgresStore.open(pg_url):
        pass
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = str(conn.execute("EXPLAIN SELECT seq FROM runs WHERE status = 'running' AND "
                                "lease_expires_at < now()").fetchall())
        assert "runs_one_running" in plan, plan
        plan = str(conn.execute("EXPLAIN SELECT DISTINCT ON (thread_id) seq FROM runs WHERE "
                                "status = 'pending' AND cancel_action IS NULL "
                                "ORDER BY thread_id, seq").fetchall())
        assert "runs_active" in plan or "runs_thread_active" in plan, plan


async def test_large_state_is_compressed_with_lz4(pg_url: str) -> None:
    """A long thread's state is written whole each run: the store's sessions compress it with
    lz4, not the slower default pglz (runtime/pg_session.py)."""
    big = {"messages": [{"type": "human", "content": f"message {i} " + "x" * 200}
                        for i in range(400)]}
    async with PostgresStore.open(pg_url) as store:
        await store.create_thread("t-lz4", {})
        await store.set_thread_state("t-lz4", big, {}, ThreadStatus.IDLE)
        assert (await store.get_thread("t-lz4")).values == big
    with psycopg.connect(pg_url) as conn:
        row = conn.execute('SELECT pg_column_compression("values") FROM threads '
                           "WHERE thread_id = 't-lz4'").fetchone()
    assert row == ("lz4",)
