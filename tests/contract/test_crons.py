"""The CronStore contract (runtime/crons/protocol.py) on SQLite and PostgreSQL: CRUD, search,
a thread's crons deleted with it, fires kept and bounded, and ``claim_due`` handing each tick
to exactly one claimer (PostgreSQL: several stores on one database, claiming at once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import anyio
import pytest

from runtime.crons.schedule import stored
from runtime.crons.scheduler import advance
from runtime.crons.types import Cron, CronFire
from runtime.errors import CronNotFound, ThreadNotFound
from runtime.ids import now_iso, uuid7
from runtime.store.postgres import PostgresStore
from runtime.store.protocol import Store

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def new_cron(thread_id: str | None = None, **changes: Any) -> Cron:
    now = now_iso()
    cron = Cron(uuid7(), "a-1", thread_id, "", None, "* * * * *", None,
                {"assistant_id": "a-1", "input": {"n": 1}}, stored(T0), {"team": "a"},
                None if thread_id else "delete", True, now, now)
    return cron.replace(**changes) if changes else cron


async def test_crud_search_and_count(store: Store) -> None:
    crons = store.crons
    await store.create_thread("t1", {})
    made = [await crons.create_cron(new_cron("t1", metadata={"i": i, "team": "a"}))
            for i in range(3)]
    other = await crons.create_cron(new_cron(metadata={"team": "b"}, enabled=False))
    assert await crons.get_cron(made[0].cron_id) == made[0]
    assert await crons.count_crons() == 4
    assert await crons.count_crons(thread_id="t1") == 3
    assert await crons.count_crons(metadata={"team": "b"}) == 1
    page, more = await crons.search_crons(metadata={"team": "a"}, limit=2, sort_by="created_at",
                                          sort_order="asc")
    assert [c.cron_id for c in page] == [made[0].cron_id, made[1].cron_id] and more
    assert [c.cron_id for c in (await crons.search_crons(enabled=False))[0]] == [
        other.cron_id]
    changed = await crons.update_cron(made[1].cron_id, lambda c: c.replace(
        schedule="0 3 * * *", metadata={**c.metadata, "x": 1}))
    assert (await crons.get_cron(made[1].cron_id)) == changed and changed.metadata["x"] == 1

    def refuse(cron: Cron) -> Cron:
        raise ValueError("no")

    with pytest.raises(ValueError):
        await crons.update_cron(made[1].cron_id, refuse)
    assert await crons.get_cron(made[1].cron_id) == changed  # nothing written
    assert await crons.delete_cron(other.cron_id) and not await crons.delete_cron(
        other.cron_id)
    with pytest.raises(CronNotFound):
        await crons.get_cron(other.cron_id)
    with pytest.raises(CronNotFound):
        await crons.update_cron(other.cron_id, lambda c: c)
    with pytest.raises(ThreadNotFound):
        await crons.create_cron(new_cron("missing"))
    await store.delete_thread("t1")  # a thread's crons go with it
    assert await crons.count_crons() == 0


async def test_claim_due_consumes_each_tick_once(store: Store) -> None:
    crons = store.crons
    due = await crons.create_cron(new_cron(next_run_date=stored(T0 - timedelta(minutes=5))))
    later = await crons.create_cron(new_cron(next_run_date=stored(T0 + timedelta(minutes=5))))
    ended = await crons.create_cron(new_cron(next_run_date=stored(T0 - timedelta(minutes=1)),
                                             end_time=stored(T0 - timedelta(seconds=1))))
    off = await crons.create_cron(new_cron(next_run_date=stored(T0 - timedelta(minutes=1)),
                                           enabled=False))
    once = await crons.create_cron(new_cron(schedule="@at 2026-11-30T11:59:00Z",
                                            next_run_date=stored(T0 - timedelta(minutes=1))))
    claimed = await crons.claim_due(T0, 10, advance)
    assert sorted(c.cron_id for c, _ in claimed) == sorted([due.cron_id, once.cron_id])
    assert dict((c.cron_id, tick) for c, tick in claimed)[due.cron_id] == due.next_run_date
    assert (await crons.get_cron(due.cron_id)).next_run_date == stored(T0 + timedelta(
        minutes=1))  # coalesced: the next tick after now, not after the missed one
    done = await crons.get_cron(once.cron_id)
    assert not done.enabled and done.next_run_date is None  # @at: fired once
    assert await crons.claim_due(T0, 10, advance) == []  # consumed
    for cron in (later, ended, off):
        assert await crons.get_cron(cron.cron_id) == cron

    await crons.record_fire(CronFire(due.cron_id, str(due.next_run_date), now_iso(),
                                     "created", "r1", "t1"))
    for i in range(105):
        await crons.record_fire(CronFire(due.cron_id, f"tick {i}", now_iso(), "error",
                                         error="boom"))
    fires = await crons.list_fires(due.cron_id, limit=1000)
    assert len(fires) == 100 and fires[0].scheduled_for == "tick 104"  # newest 100 kept
    await crons.record_fire(CronFire(str(uuid4()), "x", now_iso(), "error"))  # no such cron
    assert await crons.list_fires(str(uuid4())) == []


async def test_concurrent_claimers_share_ticks_exactly_once(pg_url: str) -> None:
    """Three processes' stores claim the same due crons at once (PostgreSQL,
    ``FOR UPDATE SKIP LOCKED``): every due cron is claimed by exactly one of them."""
    async with PostgresStore.open(pg_url) as a, PostgresStore.open(pg_url) as b, \
            PostgresStore.open(pg_url) as c:
        made = [await a.crons.create_cron(new_cron(
            next_run_date=stored(T0 - timedelta(seconds=i)))) for i in range(60)]
        got: list[str] = []

        async def claim(store: PostgresStore) -> None:
            for _ in range(10):
                got.extend(cron.cron_id for cron, _ in await store.crons.claim_due(
                    T0, 7, advance))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for store in (a, b, c):
                    tg.start_soon(claim, store)
        assert sorted(got) == sorted(m.cron_id for m in made)  # each once, none lost
