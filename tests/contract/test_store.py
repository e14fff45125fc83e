"""The store contract: every implementation of ``runtime.store.protocol.Store`` (SQLite,
PostgreSQL) behaves the same. Each test runs once per engine (``store`` fixture, conftest.py).

Contract: design.md 4.1 (one running run per thread, in the store), 4.2 (admission is one
transaction; the multitask strategies), 4.3 (status changes are compare-and-set; cancel intents),
protocol.md 10.5 (thread status), and the search/count filters of ``POST /threads/search``
(runtime/store/filters.py: containment, bounds, sort, pagination).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio
import pytest

from runtime.auth_filter import AuthFilter
from runtime.errors import BadRequest, InvalidRequest, ThreadBusy, ThreadExists, ThreadNotFound
from runtime.ids import now_iso, uuid7
from runtime.store.protocol import Store
from runtime.types import (
    CancelAction,
    MultitaskStrategy,
    Run,
    RunStatus,
    ThreadOutcome,
    ThreadStatus,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


def new_run(
    thread_id: str, strategy: MultitaskStrategy = MultitaskStrategy.ENQUEUE, **changes: Any
) -> Run:
    now = now_iso()
    run = Run(
        run_id=uuid7(),
        thread_id=thread_id,
        assistant_id="a-1",
        graph_id="echo",
        status=RunStatus.PENDING,
        metadata={"graph_id": "echo"},
        kwargs={"input": {"messages": []}, "config": {}},
        multitask_strategy=strategy,
        created_at=now,
        updated_at=now,
    )
    return run.replace(**changes) if changes else run


def outcome(status: ThreadStatus = ThreadStatus.IDLE, **values: Any) -> ThreadOutcome:
    return ThreadOutcome(status=status, values=values or {"v": 1}, interrupts={})


async def admitted(store: Store, thread_id: str, **kw: Any) -> Run:
    run = new_run(thread_id, **kw)
    await store.admit_run(run, create_thread=True)
    return run


async def status_of(store: Store, run_id: str) -> RunStatus:
    run = await store.get_run(run_id)
    assert run is not None
    return run.status


# ---- threads ------------------------------------------------------------------------------------


async def test_create_and_get_thread(store: Store) -> None:
    created = await store.create_thread("t1", {"owner": "ann", "n": 1})
    got = await store.get_thread("t1")
    assert got == created
    assert got.status == ThreadStatus.IDLE
    assert got.metadata == {"owner": "ann", "n": 1}
    assert got.values is None and got.interrupts is None and got.error is None
    with pytest.raises(ThreadNotFound):
        await store.get_thread("missing")


async def test_create_thread_exists_vs_do_nothing(store: Store) -> None:
    first = await store.create_thread("t1", {"v": 1})
    with pytest.raises(ThreadExists):
        await store.create_thread("t1", {"v": 2})
    again = await store.create_thread("t1", {"v": 3}, if_exists="do_nothing")
    assert again == first
    assert (await store.get_thread("t1")).metadata == {"v": 1}
    assert await store.count_threads() == 1


async def test_patch_thread_metadata_is_a_shallow_merge(store: Store) -> None:
    await store.create_thread("t1", {"a": 1, "b": "x", "c": True})
    patched = await store.patch_thread_metadata("t1", {"b": "y", "d": 4})
    assert patched.metadata == {"a": 1, "b": "y", "c": True, "d": 4}
    patched = await store.patch_thread_metadata("t1", {"a": None})
    assert patched.metadata == {"a": None, "b": "y", "c": True, "d": 4}  # null is kept
    assert (await store.get_thread("t1")).metadata == patched.metadata
    with pytest.raises(ThreadNotFound):
        await store.patch_thread_metadata("missing", {"a": 1})


async def test_patch_thread_metadata_replaces_nested_objects(store: Store) -> None:
    """Shallow merge: a top-level key's value is replaced as a whole, nested nulls included."""
    await store.create_thread("t1", {"nested": {"x": 1, "y": 2}, "keep": 1})
    patched = await store.patch_thread_metadata("t1", {"nested": {"z": 3}})
    assert patched.metadata == {"nested": {"z": 3}, "keep": 1}
    patched = await store.patch_thread_metadata("t1", {"nested": {"z": None}})
    assert patched.metadata == {"nested": {"z": None}, "keep": 1}


async def test_delete_thread_removes_runs_and_returns_active_ones(store: Store) -> None:
    done = await admitted(store, "t1")
    assert await store.mark_running(done.run_id) is not None
    assert await store.finish_run(done.run_id, "t1", RunStatus.SUCCESS, outcome())
    running = await admitted(store, "t1")
    assert await store.mark_running(running.run_id) is not None
    queued = await admitted(store, "t1")
    other = await admitted(store, "t2")
    active = await store.delete_thread("t1")
    assert [r.run_id for r in active] == [running.run_id, queued.run_id]
    assert [r.status for r in active] == [RunStatus.RUNNING, RunStatus.PENDING]
    with pytest.raises(ThreadNotFound):
        await store.get_thread("t1")
    for run in (done, running, queued):
        assert await store.get_run(run.run_id) is None
    assert await store.list_runs("t1") == []
    assert [r.run_id for r in await store.active_runs()] == [other.run_id]
    with pytest.raises(ThreadNotFound):
        await store.delete_thread("t1")


# ---- admission ----------------------------------------------------------------------------------


async def test_admit_run_creates_thread_when_asked(store: Store) -> None:
    run = new_run("t1")
    active = await store.admit_run(run, create_thread=True, thread_metadata={"graph_id": "echo"})
    assert active == []
    thread = await store.get_thread("t1")
    assert thread.status == ThreadStatus.BUSY
    # admission tags the thread with the run's graph and assistant (as the reference does)
    assert thread.metadata == {"graph_id": run.graph_id, "assistant_id": run.assistant_id}
    assert await store.get_run(run.run_id) == run
    assert await store.get_run(run.run_id, "t1") == run
    assert await store.get_run(run.run_id, "other") is None


async def test_admit_run_on_missing_thread_without_create_inserts_nothing(
    store: Store,
) -> None:
    run = new_run("t1")
    with pytest.raises(ThreadNotFound):
        await store.admit_run(run, create_thread=False)
    assert await store.get_run(run.run_id) is None
    assert await store.count_threads() == 0


async def test_admission_checks_an_auth_filter_in_its_transaction(store: Store) -> None:
    """``visible``: a thread whose metadata the caller's filter hides (e.g. created by another
    user a moment before) is refused as a missing one, with nothing stored; a thread the
    admission creates is checked against the metadata it is given."""
    alice = AuthFilter.parse({"owner": "alice"})
    await store.create_thread("bobs", {"owner": "bob"})
    hidden = new_run("bobs")
    with pytest.raises(ThreadNotFound, match="Thread or assistant not found"):
        await store.admit_run(hidden, create_thread=True, visible=alice)
    assert await store.get_run(hidden.run_id) is None
    assert (await store.get_thread("bobs")).status == ThreadStatus.IDLE
    await store.create_thread("alices", {"owner": "alice"})
    assert await store.admit_run(new_run("alices"), create_thread=True, visible=alice) == []
    made = new_run("new")
    assert await store.admit_run(made, create_thread=True, thread_metadata={"owner": "alice"},
                                 visible=alice) == []
    assert (await store.get_thread("new")).metadata["owner"] == "alice"
    unowned = new_run("unowned")
    with pytest.raises(ThreadNotFound):
        await store.admit_run(unowned, create_thread=True, visible=alice)
    assert await store.get_run(unowned.run_id) is None
    with pytest.raises(ThreadNotFound):
        await store.get_thread("unowned")  # rolled back with the run


async def test_admit_run_reject_raises_thread_busy_and_inserts_nothing(store: Store) -> None:
    await store.create_thread("t1", {})
    first = new_run("t1", MultitaskStrategy.REJECT)
    assert await store.admit_run(first, create_thread=False) == []
    second = new_run("t1", MultitaskStrategy.REJECT)
    with pytest.raises(ThreadBusy):
        await store.admit_run(second, create_thread=False)
    assert [r.run_id for r in await store.list_runs("t1")] == [first.run_id]
    assert await store.get_run(second.run_id) is None
    # still rejected while the first one runs; accepted once it has finished
    assert await store.mark_running(first.run_id) is not None
    with pytest.raises(ThreadBusy):
        await store.admit_run(second, create_thread=False)
    assert await store.finish_run(first.run_id, "t1", RunStatus.SUCCESS, outcome())
    assert await store.admit_run(second, create_thread=False) == []


async def test_admit_run_returns_active_runs_oldest_first(store: Store) -> None:
    a = await admitted(store, "t1")
    b = new_run("t1")
    assert await store.admit_run(b, create_thread=False) == [a]
    c = new_run("t1", MultitaskStrategy.INTERRUPT)
    assert [r.run_id for r in await store.admit_run(c, create_thread=False)] == [a.run_id, b.run_id]


async def test_concurrent_reject_admissions_admit_exactly_one(store: Store) -> None:
    await store.create_thread("t1", {})
    admitted_ids: list[str] = []
    busy: list[str] = []

    async def admit() -> None:
        run = new_run("t1", MultitaskStrategy.REJECT)
        try:
            await store.admit_run(run, create_thread=False)
        except ThreadBusy:
            busy.append(run.run_id)
        else:
            admitted_ids.append(run.run_id)

    with anyio.fail_after(8):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(admit)
    assert len(admitted_ids) == 1
    assert len(busy) == 19
    assert [r.run_id for r in await store.list_runs("t1", limit=100)] == admitted_ids


# ---- run status transitions ---------------------------------------------------------------------


async def test_only_one_running_run_per_thread(store: Store) -> None:
    first = await admitted(store, "t1")
    second = await admitted(store, "t1")
    started = await store.mark_running(first.run_id)
    assert started is not None and started.status == RunStatus.RUNNING
    assert await store.mark_running(second.run_id) is None  # the partial unique index refuses
    assert await status_of(store, second.run_id) == RunStatus.PENDING
    assert await store.mark_running(first.run_id) is None  # not pending any more
    # another thread is not affected
    elsewhere = await admitted(store, "t2")
    assert await store.mark_running(elsewhere.run_id) is not None
    # once the first has finished the second may start
    assert await store.finish_run(first.run_id, "t1", RunStatus.SUCCESS, outcome())
    started = await store.mark_running(second.run_id)
    assert started is not None and started.status == RunStatus.RUNNING
    assert await store.mark_running("unknown") is None


async def test_finish_run_is_compare_and_set(store: Store) -> None:
    run = await admitted(store, "t1")
    assert await store.mark_running(run.run_id) is not None
    assert await store.finish_run(run.run_id, "t1", RunStatus.INTERRUPTED, None)
    for late in (RunStatus.SUCCESS, RunStatus.ERROR, RunStatus.INTERRUPTED):
        assert not await store.finish_run(run.run_id, "t1", late, None)
        assert await status_of(store, run.run_id) == RunStatus.INTERRUPTED
    # a pending run can be finished directly (cancelled before it started)
    queued = await admitted(store, "t1")
    assert await store.finish_run(queued.run_id, "t1", RunStatus.INTERRUPTED, None)
    assert await store.mark_running(queued.run_id) is None
    assert not await store.finish_run("unknown", "t1", RunStatus.SUCCESS, None)


async def test_finish_run_cas_loser_leaves_thread_untouched(store: Store) -> None:
    """A late finisher that loses the CAS must not overwrite what the winner left."""
    run = await admitted(store, "t1")
    assert await store.mark_running(run.run_id) is not None
    error = {"error": "ValueError", "message": "boom"}
    assert await store.finish_run(
        run.run_id, "t1", RunStatus.ERROR,
        ThreadOutcome(ThreadStatus.ERROR, {"v": "winner"}, {}, error),
    )
    before = await store.get_thread("t1")
    assert not await store.finish_run(
        run.run_id, "t1", RunStatus.SUCCESS, ThreadOutcome(ThreadStatus.IDLE, {"v": "late"}, {}),
    )
    after = await store.get_thread("t1")
    assert (after.status, after.values, after.error) == (before.status, before.values, before.error)


async def test_thread_status_follows_its_runs(store: Store) -> None:
    await store.create_thread("t1", {})
    first = new_run("t1")
    await store.admit_run(first, create_thread=False)
    assert (await store.get_thread("t1")).status == ThreadStatus.BUSY
    await store.mark_running(first.run_id)
    assert (await store.get_thread("t1")).status == ThreadStatus.BUSY
    error = {"error": "ValueError", "message": "boom"}
    await store.finish_run(
        first.run_id, "t1", RunStatus.ERROR,
        ThreadOutcome(ThreadStatus.ERROR, {"v": 1}, {}, error, "echo", "a-1"),
    )
    thread = await store.get_thread("t1")
    assert thread.status == ThreadStatus.ERROR
    assert thread.values == {"v": 1} and thread.error == error and thread.interrupts == {}
    assert thread.metadata == {"graph_id": "echo", "assistant_id": "a-1"}

    # busy again while a run is pending, and stays busy when one of two runs finishes
    a = await admitted(store, "t1")
    b = await admitted(store, "t1")
    assert (await store.get_thread("t1")).status == ThreadStatus.BUSY
    await store.mark_running(a.run_id)
    interrupts = {"task": [{"id": "i1", "value": {"q": 1}}]}
    await store.finish_run(
        a.run_id, "t1", RunStatus.SUCCESS,
        ThreadOutcome(ThreadStatus.INTERRUPTED, {"v": 2}, interrupts),
    )
    thread = await store.get_thread("t1")
    assert thread.status == ThreadStatus.BUSY  # b is still pending
    assert thread.values == {"v": 2} and thread.interrupts == interrupts
    # cancelling the pending run recomputes the status from the last outcome
    assert await store.finish_run(b.run_id, "t1", RunStatus.INTERRUPTED, None)
    assert (await store.get_thread("t1")).status == ThreadStatus.INTERRUPTED


async def test_cancelling_a_queued_run_keeps_thread_busy_while_another_runs(
    store: Store,
) -> None:
    running = await admitted(store, "t1")
    await store.mark_running(running.run_id)
    queued = await admitted(store, "t1")
    assert await store.set_cancel_action(queued.run_id, CancelAction.INTERRUPT)
    assert await store.finish_run(queued.run_id, "t1", RunStatus.INTERRUPTED, None)
    assert (await store.get_thread("t1")).status == ThreadStatus.BUSY
    assert await store.finish_run(running.run_id, "t1", RunStatus.SUCCESS, outcome())
    assert (await store.get_thread("t1")).status == ThreadStatus.IDLE


async def test_set_cancel_action_only_on_active_runs(store: Store) -> None:
    pending = await admitted(store, "t1")
    assert await store.set_cancel_action(pending.run_id, CancelAction.INTERRUPT)
    got = await store.get_run(pending.run_id)
    assert got is not None and got.cancel_action == CancelAction.INTERRUPT
    assert await store.mark_running(pending.run_id) is not None
    assert await store.set_cancel_action(pending.run_id, CancelAction.ROLLBACK)
    got = await store.get_run(pending.run_id)
    assert got is not None and got.cancel_action == CancelAction.ROLLBACK
    assert await store.finish_run(pending.run_id, "t1", RunStatus.INTERRUPTED, None)
    assert not await store.set_cancel_action(pending.run_id, CancelAction.INTERRUPT)
    got = await store.get_run(pending.run_id)
    assert got is not None and got.cancel_action == CancelAction.ROLLBACK
    assert not await store.set_cancel_action("unknown", CancelAction.INTERRUPT)


async def test_requeue_run_moves_running_back_to_pending(store: Store) -> None:
    run = await admitted(store, "t1")
    assert not await store.requeue_run(run.run_id, 2)  # pending: not running
    assert await store.mark_running(run.run_id) is not None
    assert await store.requeue_run(run.run_id, 2)
    got = await store.get_run(run.run_id)
    assert got is not None and (got.status, got.attempt) == (RunStatus.PENDING, 2)
    assert (await store.get_thread("t1")).status == ThreadStatus.BUSY
    assert await store.mark_running(run.run_id) is not None
    assert await store.requeue_run(run.run_id)  # attempt unchanged without one
    got = await store.get_run(run.run_id)
    assert got is not None and (got.status, got.attempt) == (RunStatus.PENDING, 2)
    await store.finish_run(run.run_id, "t1", RunStatus.SUCCESS, outcome())
    assert not await store.requeue_run(run.run_id, 3)
    assert await status_of(store, run.run_id) == RunStatus.SUCCESS


async def test_delete_run_recomputes_thread_status(store: Store) -> None:
    run = await admitted(store, "t1")
    assert await store.delete_run(run.run_id, "t1")
    assert await store.get_run(run.run_id) is None
    assert (await store.get_thread("t1")).status == ThreadStatus.IDLE
    assert not await store.delete_run(run.run_id, "t1")


# ---- run listings -------------------------------------------------------------------------------


async def test_list_runs_newest_first_with_status_filter(store: Store) -> None:
    runs = [await admitted(store, "t1") for _ in range(4)]
    await admitted(store, "t2")
    await store.mark_running(runs[0].run_id)
    await store.finish_run(runs[0].run_id, "t1", RunStatus.SUCCESS, outcome())
    await store.mark_running(runs[1].run_id)
    ids = [r.run_id for r in await store.list_runs("t1")]
    assert ids == [r.run_id for r in reversed(runs)]
    assert [r.run_id for r in await store.list_runs("t1", status="pending")] == [
        runs[3].run_id, runs[2].run_id,
    ]
    assert [r.run_id for r in await store.list_runs("t1", status="running")] == [runs[1].run_id]
    assert [r.run_id for r in await store.list_runs("t1", status="success")] == [runs[0].run_id]
    assert await store.list_runs("t1", status="error") == []
    assert [r.run_id for r in await store.list_runs("t1", limit=2, offset=1)] == [
        runs[2].run_id, runs[1].run_id,
    ]
    assert await store.list_runs("nope") == []


async def test_active_runs_in_admission_order(store: Store) -> None:
    a = await admitted(store, "t1")
    b = await admitted(store, "t2")
    c = await admitted(store, "t1")
    d = await admitted(store, "t3")
    await store.mark_running(b.run_id)
    await store.mark_running(d.run_id)
    await store.finish_run(d.run_id, "t3", RunStatus.SUCCESS, outcome())
    active = await store.active_runs()
    assert [r.run_id for r in active] == [a.run_id, b.run_id, c.run_id]
    assert [r.status for r in active] == [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PENDING]


# ---- thread search ------------------------------------------------------------------------------


async def search_ids(store: Store, **kw: Any) -> list[str]:
    threads, _ = await store.search_threads(limit=100, sort_order="asc", **kw)
    return [t.thread_id for t in threads]


@pytest.fixture
async def searchable(store: Store) -> Store:
    await store.create_thread("s1", {"user": "ann", "n": 1, "flag": True, "gone": None,
                                     "nested": {"a": 1, "b": [1, 2]}})
    await store.create_thread("s2", {"user": "bob", "n": 2, "flag": False, "nested": {"a": 2}})
    await store.create_thread("s3", {"user": "ann", "n": "1", "flag": 1})
    await store.create_thread("s4", {})
    return store


async def test_search_threads_metadata_containment(searchable: Store) -> None:
    s = searchable
    assert await search_ids(s) == ["s1", "s2", "s3", "s4"]
    assert await search_ids(s, metadata={}) == ["s1", "s2", "s3", "s4"]
    assert await search_ids(s, metadata={"user": "ann"}) == ["s1", "s3"]
    assert await search_ids(s, metadata={"user": "ann", "n": 1}) == ["s1"]  # int, not "1"
    assert await search_ids(s, metadata={"n": "1"}) == ["s3"]
    assert await search_ids(s, metadata={"n": 2}) == ["s2"]
    assert await search_ids(s, metadata={"flag": True}) == ["s1"]  # bool, not 1
    assert await search_ids(s, metadata={"flag": False}) == ["s2"]
    assert await search_ids(s, metadata={"gone": None}) == ["s1"]  # present and null
    assert await search_ids(s, metadata={"nested": {"a": 1, "b": [1, 2]}}) == ["s1"]
    assert await search_ids(s, metadata={"nested": {"a": 2}}) == ["s2"]
    assert await search_ids(s, metadata={"user": "carl"}) == []
    assert await search_ids(s, metadata={"missing": "x"}) == []
    assert await search_ids(s, metadata={'we"ird': "x"}) == []  # keys are bound, not SQL


async def test_search_threads_int_filter_does_not_match_a_bool(searchable: Store) -> None:
    """JSON ``1`` and ``true`` are different values (jsonb containment in the reference)."""
    assert await search_ids(searchable, metadata={"flag": 1}) == ["s3"]


async def test_search_threads_nested_filter_ignores_key_order(searchable: Store) -> None:
    """Nested objects compare as JSON values: the order of their keys does not matter."""
    assert await search_ids(searchable, metadata={"nested": {"b": [1, 2], "a": 1}}) == ["s1"]


async def test_search_threads_values_and_status_filters(store: Store) -> None:
    for tid in ("v1", "v2", "v3"):
        await store.create_thread(tid, {})
    r1 = await admitted(store, "v1")
    await store.mark_running(r1.run_id)
    await store.finish_run(r1.run_id, "v1", RunStatus.SUCCESS,
                           ThreadOutcome(ThreadStatus.IDLE, {"topic": "cats", "k": 3}, {}))
    r2 = await admitted(store, "v2")
    await store.mark_running(r2.run_id)
    await store.finish_run(r2.run_id, "v2", RunStatus.ERROR,
                           ThreadOutcome(ThreadStatus.ERROR, {"topic": "dogs"}, {},
                                         {"error": "E", "message": "m"}))
    await admitted(store, "v3")
    assert await search_ids(store, values={"topic": "cats"}) == ["v1"]
    assert await search_ids(store, values={"topic": "cats", "k": 3}) == ["v1"]
    assert await search_ids(store, values={"topic": "dogs"}) == ["v2"]
    assert await search_ids(store, values={"topic": "birds"}) == []
    assert await search_ids(store, status="idle") == ["v1"]
    assert await search_ids(store, status="error") == ["v2"]
    assert await search_ids(store, status="busy") == ["v3"]
    assert await search_ids(store, status="interrupted") == []
    assert await search_ids(store, status="idle", values={"topic": "dogs"}) == []
    assert await store.count_threads(status="busy") == 1
    assert await store.count_threads(values={"topic": "cats"}) == 1


async def test_search_threads_ids_limit_offset_has_more(searchable: Store) -> None:
    s = searchable
    assert await search_ids(s, ids=["s3", "s1", "zz"]) == ["s1", "s3"]
    assert await search_ids(s, ids=["s3"], metadata={"user": "bob"}) == []
    page, more = await s.search_threads(limit=2, offset=0, sort_order="asc")
    assert [t.thread_id for t in page] == ["s1", "s2"] and more
    page, more = await s.search_threads(limit=2, offset=2, sort_order="asc")
    assert [t.thread_id for t in page] == ["s3", "s4"] and not more
    page, more = await s.search_threads(limit=3, offset=1, sort_order="asc")
    assert [t.thread_id for t in page] == ["s2", "s3", "s4"] and not more
    page, more = await s.search_threads(limit=2, offset=10)
    assert page == [] and not more


async def test_search_threads_sort_orders(searchable: Store) -> None:
    s = searchable
    # default: newest first
    threads, _ = await s.search_threads(limit=10)
    assert [t.thread_id for t in threads] == ["s4", "s3", "s2", "s1"]
    assert await search_ids(s, sort_by="created_at") == ["s1", "s2", "s3", "s4"]
    threads, _ = await s.search_threads(limit=10, sort_by="thread_id", sort_order="desc")
    assert [t.thread_id for t in threads] == ["s4", "s3", "s2", "s1"]
    # updated_at follows the last change
    await s.patch_thread_metadata("s2", {"touched": True})
    threads, _ = await s.search_threads(limit=10, sort_by="updated_at", sort_order="desc")
    assert threads[0].thread_id == "s2"
    run = await admitted(s, "s1")
    threads, _ = await s.search_threads(limit=10, sort_by="status", sort_order="asc")
    assert [t.thread_id for t in threads][0] == "s1"  # "busy" < "idle"
    assert (await s.get_run(run.run_id)) is not None
    # an unknown column falls back to created_at instead of reaching the SQL
    assert await search_ids(s, sort_by="metadata; DROP TABLE threads") == ["s1", "s2", "s3", "s4"]


async def test_count_threads(searchable: Store) -> None:
    s = searchable
    assert await s.count_threads() == 4
    assert await s.count_threads(metadata={"user": "ann"}) == 2
    assert await s.count_threads(metadata={"user": "ann", "flag": True}) == 1
    assert await s.count_threads(status="idle") == 4
    assert await s.count_threads(status="busy") == 0
    await admitted(s, "s4")
    assert await s.count_threads(status="busy") == 1
    assert await s.count_threads(metadata={"nope": 1}) == 0


async def test_metadata_search_follows_every_metadata_change(store: Store) -> None:
    """Patch, run admission (graph_id), state update and delete all show up in metadata
    searches at once (SQLite: the ``thread_meta`` triggers; PostgreSQL: the jsonb itself)."""
    await store.create_thread("m1", {"user": "ann"})
    await store.patch_thread_metadata("m1", {"user": "bob", "tier": 2})
    assert await search_ids(store, metadata={"user": "ann"}) == []
    assert await search_ids(store, metadata={"user": "bob", "tier": 2}) == ["m1"]
    await admitted(store, "m1")  # admission stamps graph_id/assistant_id on the thread
    assert await search_ids(store, metadata={"graph_id": "echo"}) == ["m1"]
    await store.set_thread_state("m1", {"v": 1}, {}, ThreadStatus.IDLE, {"source": "copy"})
    assert await search_ids(store, metadata={"source": "copy", "user": "bob"}) == ["m1"]
    assert await store.count_threads(metadata={"source": "copy"}) == 1
    await store.delete_thread("m1")
    assert await search_ids(store, metadata={"user": "bob"}) == []


async def test_admit_run_start_if_idle_stores_running_only_on_an_idle_thread(
    store: Store,
) -> None:
    """Admission and start in one transaction when the thread is idle; otherwise the run waits
    ``pending`` behind the active one (and the partial unique index is never hit)."""
    await store.create_thread("st", {})
    first = new_run("st")
    assert await store.admit_run(first, create_thread=False, start_if_idle=True) == []
    assert await status_of(store, first.run_id) == RunStatus.RUNNING
    second = new_run("st")
    active = await store.admit_run(second, create_thread=False, start_if_idle=True)
    assert [r.run_id for r in active] == [first.run_id]
    assert await status_of(store, second.run_id) == RunStatus.PENDING
    assert (await store.get_thread("st")).status == ThreadStatus.BUSY




# ---- admission under each strategy, FIFO, concurrency ------------------------------------------


@pytest.mark.parametrize("strategy", [MultitaskStrategy.ENQUEUE, MultitaskStrategy.INTERRUPT,
                                      MultitaskStrategy.ROLLBACK])
async def test_admit_run_on_a_busy_thread_queues_behind_the_active_runs(
    store: Store, strategy: MultitaskStrategy,
) -> None:
    """Every strategy but reject inserts the run ``pending`` behind the active ones and returns
    them (the run manager cancels them for interrupt/rollback: design.md 4.2)."""
    running = await admitted(store, "t1")
    assert await store.mark_running(running.run_id) is not None
    queued = await admitted(store, "t1")
    run = new_run("t1", strategy)
    active = await store.admit_run(run, create_thread=False, start_if_idle=True)
    assert [(r.run_id, r.status) for r in active] == [
        (running.run_id, RunStatus.RUNNING), (queued.run_id, RunStatus.PENDING)]
    stored = await store.get_run(run.run_id)
    assert stored == run and stored.status == RunStatus.PENDING
    assert stored.multitask_strategy == strategy


async def test_admit_run_reject_on_an_idle_thread_with_finished_runs(store: Store) -> None:
    done = await admitted(store, "t1")
    await store.mark_running(done.run_id)
    await store.finish_run(done.run_id, "t1", RunStatus.SUCCESS, outcome())
    run = new_run("t1", MultitaskStrategy.REJECT)
    assert await store.admit_run(run, create_thread=False) == []
    with pytest.raises(ThreadBusy) as caught:
        await store.admit_run(new_run("t1", MultitaskStrategy.REJECT), create_thread=False)
    assert str(caught.value) == (
        "Thread is already running a task. Wait for it to finish or choose a different "
        "multitask strategy.")


async def test_admit_run_require_interrupted(store: Store) -> None:
    """A resume needs an interrupted thread, or an active run that may end interrupted."""
    await store.create_thread("t1", {})
    resume = new_run("t1")
    with pytest.raises(BadRequest) as caught:
        await store.admit_run(resume, create_thread=False, require_interrupted=True)
    assert str(caught.value) == ("Cannot resume thread t1: it is not interrupted (status idle); "
                                 "there is nothing to resume.")
    assert await store.get_run(resume.run_id) is None
    with pytest.raises(BadRequest, match=r"\(status idle\)"):  # created here: idle
        await store.admit_run(new_run("t2"), create_thread=True, require_interrupted=True)
    first = await admitted(store, "t1")  # an active run may end interrupted
    assert await store.admit_run(resume, create_thread=False, require_interrupted=True) == [
        first]
    await store.mark_running(first.run_id)
    await store.finish_run(first.run_id, "t1", RunStatus.SUCCESS,
                           outcome(ThreadStatus.INTERRUPTED))
    await store.mark_running(resume.run_id)
    await store.finish_run(resume.run_id, "t1", RunStatus.ERROR,
                           ThreadOutcome(ThreadStatus.ERROR, {"v": 2}, {},
                                         {"error": "E", "message": "m"}))
    with pytest.raises(BadRequest, match=r"\(status error\)"):
        await store.admit_run(new_run("t1"), create_thread=False, require_interrupted=True)
    await store.set_thread_state("t1", {"v": 3}, {"task": []}, ThreadStatus.INTERRUPTED)
    assert await store.admit_run(new_run("t1"), create_thread=False,
                                 require_interrupted=True) == []


async def test_admit_run_errors_are_the_canonical_ones(store: Store) -> None:
    with pytest.raises(ThreadNotFound) as not_found:
        await store.admit_run(new_run("t1"), create_thread=False)
    assert str(not_found.value) == "Thread or assistant not found."
    with pytest.raises(ThreadNotFound) as missing:
        await store.get_thread("t1")
    assert str(missing.value) == "Thread with ID t1 not found"
    await store.create_thread("t1", {})
    with pytest.raises(ThreadExists) as exists:
        await store.create_thread("t1", {})
    assert str(exists.value) == "Thread with ID t1 already exists"


async def test_active_runs_of_a_thread_are_fifo(store: Store) -> None:
    """Per thread, ``active_runs`` lists runs in admission order, whatever other threads do;
    starting the oldest each time runs them first in, first out."""
    mine = []
    for i in range(6):
        mine.append(await admitted(store, "t1"))
        if i % 2:
            await admitted(store, "t2")
    order = []
    while active := await store.active_runs("t1"):
        assert [r.run_id for r in active] == [r.run_id for r in mine[len(order):]]
        started = await store.mark_running(active[0].run_id)
        assert started is not None
        order.append(started.run_id)
        assert await store.finish_run(started.run_id, "t1", RunStatus.SUCCESS, outcome())
    assert order == [r.run_id for r in mine]
    assert (await store.get_thread("t1")).status == ThreadStatus.IDLE
    assert len(await store.active_runs("t2")) == 3


async def test_concurrent_mark_running_of_one_thread_starts_at_most_one(store: Store) -> None:
    """The partial unique index refuses a second start even when both race (invariant 1)."""
    runs = [await admitted(store, "t1") for _ in range(8)]
    started: list[str] = []

    async def start(run: Run) -> None:
        if await store.mark_running(run.run_id) is not None:
            started.append(run.run_id)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for run in runs:
                tg.start_soon(start, run)
    assert len(started) == 1
    assert [r.run_id for r in await store.list_runs("t1", status="running")] == started
    assert len(await store.list_runs("t1", status="pending")) == 7


async def test_concurrent_admissions_create_one_thread(store: Store) -> None:
    """Admissions racing to create one missing thread all land on the same thread."""
    runs = [new_run("fresh") for _ in range(8)]

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for run in runs:
                tg.start_soon(partial(store.admit_run, run, create_thread=True))
    assert await store.count_threads() == 1
    active = await store.active_runs("fresh")
    assert sorted(r.run_id for r in active) == sorted(r.run_id for r in runs)
    assert (await store.get_thread("fresh")).status == ThreadStatus.BUSY


async def test_thread_status_stays_right_under_concurrent_admit_and_finish(store: Store) -> None:
    """Invariant 4 when a finalization races an admission on one thread: the thread is
    ``busy`` exactly while it has an active run, whichever commits first."""
    for _ in range(15):
        running = await admitted(store, "t1")
        assert await store.mark_running(running.run_id) is not None
        newcomer = new_run("t1")
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.finish_run, running.run_id, "t1", RunStatus.SUCCESS,
                              outcome())
                tg.start_soon(partial(store.admit_run, newcomer, create_thread=False))
        assert (await store.get_thread("t1")).status == ThreadStatus.BUSY
        assert await store.finish_run(newcomer.run_id, "t1", RunStatus.INTERRUPTED, None)
        assert (await store.get_thread("t1")).status == ThreadStatus.IDLE


# ---- thread state, rollback, JSON -------------------------------------------------------------


async def test_set_thread_state_applies_metadata_as_a_merge_patch(store: Store) -> None:
    """``set_thread_state`` metadata is an RFC 7396 merge patch (null removes, objects merge),
    unlike ``patch_thread_metadata``'s shallow merge; a missing thread stays missing."""
    await store.create_thread("t1", {"a": 1, "b": {"x": 1, "y": 2}, "c": "keep"})
    await store.set_thread_state("t1", {"v": 1}, {"task": [{"id": "i", "value": 1}]},
                                 ThreadStatus.INTERRUPTED, {"a": None, "b": {"y": None, "z": 3}})
    thread = await store.get_thread("t1")
    assert thread.metadata == {"b": {"x": 1, "z": 3}, "c": "keep"}
    assert thread.values == {"v": 1} and thread.interrupts == {"task": [{"id": "i", "value": 1}]}
    assert thread.status == ThreadStatus.INTERRUPTED
    await admitted(store, "t1")
    await store.set_thread_state("t1", None, {}, ThreadStatus.IDLE)
    thread = await store.get_thread("t1")
    assert thread.status == ThreadStatus.BUSY and thread.values is None
    assert thread.metadata == {"b": {"x": 1, "z": 3}, "c": "keep", "graph_id": "echo",
                               "assistant_id": "a-1"}
    await store.set_thread_state("missing", {"v": 1}, {}, ThreadStatus.IDLE)
    with pytest.raises(ThreadNotFound):
        await store.get_thread("missing")


async def test_delete_run_with_an_outcome_restores_the_thread(store: Store) -> None:
    """Rollback: the run is deleted and the thread gets the state the rollback left."""
    first = await admitted(store, "t1")
    await store.mark_running(first.run_id)
    await store.finish_run(first.run_id, "t1", RunStatus.SUCCESS, outcome(v="before"))
    run = await admitted(store, "t1")
    await store.mark_running(run.run_id)
    queued = await admitted(store, "t1")
    assert await store.set_cancel_action(run.run_id, CancelAction.ROLLBACK)
    restored = ThreadOutcome(ThreadStatus.IDLE, {"v": "before"}, {}, None, "echo", "a-2")
    assert await store.delete_run(run.run_id, "t1", restored)
    thread = await store.get_thread("t1")
    assert thread.status == ThreadStatus.BUSY  # queued is still pending
    assert thread.values == {"v": "before"} and thread.metadata["assistant_id"] == "a-2"
    assert await store.delete_run(queued.run_id, "t1")
    assert (await store.get_thread("t1")).status == ThreadStatus.IDLE
    assert not await store.delete_run(first.run_id, "other-thread")
    assert await store.get_run(first.run_id) is not None


async def test_json_values_round_trip(store: Store) -> None:
    """Values come back equal: unicode, nesting, floats, 64-bit integers, nulls."""
    values = {"text": "héllo ✓ \U0001f600 \"q\" \\ \n", "n": [1, -2, 2**63 - 1, 2**64 - 1],
              "f": [0.1, 1.5, -2.25e-7, 1e20, 1e300], "deep": {"a": [{"b": None}, [], {}]},
              "bool": [True, False], "empty": ""}
    await store.create_thread("t1", {"m": values})
    run = await admitted(store, "t1", kwargs={"input": values}, metadata={"x": values})
    await store.mark_running(run.run_id)
    await store.finish_run(run.run_id, "t1", RunStatus.SUCCESS,
                           ThreadOutcome(ThreadStatus.IDLE, values, {"i": [values]}))
    thread = await store.get_thread("t1")
    assert thread.values == values and thread.interrupts == {"i": [values]}
    assert thread.metadata["m"] == values
    got = await store.get_run(run.run_id)
    assert got is not None and got.kwargs == {"input": values} and got.metadata == {"x": values}
    assert await search_ids(store, values={"f": [1e20]}) == ["t1"]
    assert await search_ids(store, metadata={"m": {"n": [2**64 - 1]}}) == ["t1"]


# ---- filters: bounds, sort ------------------------------------------------------------------


async def test_filters_out_of_bounds_are_refused_the_same_way(store: Store) -> None:
    from runtime.store.filters import MAX_FILTER_KEYS

    too_many = {f"k{i}": i for i in range(MAX_FILTER_KEYS + 1)}
    for kw in ({"metadata": too_many}, {"values": too_many}):
        with pytest.raises(InvalidRequest, match="at most 100 keys, got 101"):
            await store.search_threads(**kw)
        with pytest.raises(InvalidRequest, match="at most 100 keys"):
            await store.count_threads(**kw)
    with pytest.raises(InvalidRequest, match=r"metadata\.big: integer out of range"):
        await store.search_threads(metadata={"big": 2**63})
    with pytest.raises(InvalidRequest, match=r"values\.small: integer out of range"):
        await store.count_threads(values={"small": -(2**63) - 1})
    await store.create_thread("t1", {"big": 2**63 - 1})
    assert await search_ids(store, metadata={"big": 2**63 - 1}) == ["t1"]
    exactly = {f"k{i}": i for i in range(MAX_FILTER_KEYS)}
    assert await search_ids(store, metadata=exactly) == []


async def test_search_sorts_by_text_bytes(store: Store) -> None:
    """Sorting by ``thread_id`` compares bytes (upper case before lower case, ``_`` between),
    whatever the database's locale."""
    for tid in ("b", "B", "a_", "a", "A", "ä"):
        await store.create_thread(tid, {})
    assert await search_ids(store, sort_by="thread_id") == ["A", "B", "a", "a_", "b", "ä"]


async def test_empty_filters_match_threads_without_values(store: Store) -> None:
    await store.create_thread("t1", {})
    assert await search_ids(store, values={}, metadata={}) == ["t1"]
    assert await store.count_threads(values={}) == 1
    assert await search_ids(store, values={"v": None}) == []


async def test_nested_filters_are_containment(store: Store) -> None:
    await store.create_thread("c1", {"tags": ["a", "b"], "o": {"x": [1, {"y": 2, "z": 3}]}})
    await store.create_thread("c2", {"tags": "a", "o": {"x": 5}})
    assert await search_ids(store, metadata={"tags": ["a"]}) == ["c1"]
    assert await search_ids(store, metadata={"tags": []}) == ["c1"]
    assert await search_ids(store, metadata={"tags": "a"}) == ["c2"]  # a list is not "a"
    assert await search_ids(store, metadata={"o": {"x": [{"y": 2}]}}) == ["c1"]
    assert await search_ids(store, metadata={"o": {}}) == ["c1", "c2"]
    assert await search_ids(store, metadata={"o": {"x": [[1]]}}) == []
    assert await search_ids(store, metadata={"o": {"x": 5.0}}) == ["c2"]


# ---- races ------------------------------------------------------------------------------------


async def test_cancel_racing_the_finish_is_recorded_only_on_an_active_run(store: Store) -> None:
    """Whichever of the cancel intent and the terminal write lands first, the run ends once,
    and a cancel reported as recorded is stored (and one reported as too late is not)."""
    results: dict[str, bool] = {}

    async def cancel(run_id: str) -> None:
        results["cancel"] = await store.set_cancel_action(run_id, CancelAction.INTERRUPT)

    async def finish(run_id: str, i: int) -> None:
        results["finish"] = await store.finish_run(run_id, "t1", RunStatus.SUCCESS, outcome(i=i))

    for i in range(10):
        run = await admitted(store, "t1")
        assert await store.mark_running(run.run_id) is not None
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel, run.run_id)
                tg.start_soon(finish, run.run_id, i)
        got = await store.get_run(run.run_id)
        assert got is not None and results["finish"] and got.status == RunStatus.SUCCESS
        assert got.cancel_action == (CancelAction.INTERRUPT if results["cancel"] else None)
        assert (await store.get_thread("t1")).status == ThreadStatus.IDLE


async def test_mixed_operations_on_one_thread_keep_the_invariants(store: Store) -> None:
    """Admissions, starts, finishes, cancels, requeues and run deletions racing on two threads
    never fail (no deadlock) and leave at most one running run per thread, and each thread
    ``busy`` exactly while it has an active run."""
    import random

    rng = random.Random(7)
    threads = ("m1", "m2")

    async def worker(seed: int) -> None:
        local = random.Random(seed)
        for _ in range(25):
            tid = local.choice(threads)
            active = await store.active_runs(tid)
            op = local.random()
            if op < 0.35 or not active:
                await store.admit_run(new_run(tid), create_thread=True)
                continue
            run = local.choice(active)
            if op < 0.55:
                await store.mark_running(run.run_id)
            elif op < 0.75:
                await store.finish_run(run.run_id, tid, RunStatus.SUCCESS, outcome())
            elif op < 0.85:
                await store.set_cancel_action(run.run_id, CancelAction.ROLLBACK)
            elif op < 0.92:
                await store.requeue_run(run.run_id)
            else:
                await store.delete_run(run.run_id, tid, outcome())

    with anyio.fail_after(25):
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(worker, rng.randrange(2**32))
    for tid in threads:
        active = await store.active_runs(tid)
        assert sum(r.status == RunStatus.RUNNING for r in active) <= 1
        status = (await store.get_thread(tid)).status
        assert (status == ThreadStatus.BUSY) == bool(active), (tid, status, active)


# ---- the two engines side by side ---------------------------------------------------------------


class StepClock:
    """``now_iso`` for ``scripted_session``: the time of the current step (every call of one
    operation sees one time, however many times it asks)."""

    def __init__(self) -> None:
        self.step = 0

    def __call__(self) -> str:
        return f"2026-01-02T00:00:00.{self.step:06d}+00:00"


async def scripted_session(store: Store, clock: StepClock) -> list[Any]:
    """One session touching every method, with fixed ids; every result (or error) in order."""
    out: list[Any] = []
    n = 0

    def run(thread_id: str, strategy: MultitaskStrategy = MultitaskStrategy.ENQUEUE) -> Run:
        nonlocal n
        n += 1
        at = f"2026-01-01T00:00:{n:02d}.000000+00:00"
        return Run(f"run-{n:02d}", thread_id, "a-1", "echo", RunStatus.PENDING,
                   {"graph_id": "echo", "n": n}, {"input": {"k": [n, {"z": None}]}},
                   strategy, at, at)

    async def call(name: str, *args: Any, **kw: Any) -> Any:
        clock.step += 1
        try:
            result = await getattr(store, name)(*args, **kw)
        except Exception as exc:  # the error is part of the contract
            result = ("raised", type(exc).__name__, str(exc))
        out.append((name, result))
        return result

    await call("create_thread", "t1", {"user": "ann", "tags": ["a", "b"], "n": 1.5})
    await call("create_thread", "t2", {"user": "bob", "nested": {"x": {"y": 1}}})
    await call("create_thread", "t1", {})
    await call("create_thread", "t1", {"other": 1}, if_exists="do_nothing")
    await call("patch_thread_metadata", "t2", {"nested": {"x": 2}, "new": None})
    await call("patch_thread_metadata", "nope", {"a": 1})
    r1, r2, r3 = run("t1"), run("t1", MultitaskStrategy.INTERRUPT), run("t1")
    await call("admit_run", r1, create_thread=False, start_if_idle=True)
    await call("admit_run", r2, create_thread=False)
    await call("admit_run", run("t1", MultitaskStrategy.REJECT), create_thread=False)
    await call("admit_run", run("t9"), create_thread=False)
    await call("admit_run", run("t2"), create_thread=False, require_interrupted=True)
    await call("admit_run", r3, create_thread=False, start_if_idle=True)
    await call("mark_running", r2.run_id)
    await call("set_cancel_action", r1.run_id, CancelAction.INTERRUPT)
    await call("finish_run", r1.run_id, "t1", RunStatus.INTERRUPTED,
               ThreadOutcome(ThreadStatus.INTERRUPTED, {"msgs": ["hi"], "x": 1.25},
                             {"task": [{"id": "i1", "value": {"q": "?"}}]}, None, "echo", "a-2"))
    await call("finish_run", r1.run_id, "t1", RunStatus.SUCCESS, None)
    await call("mark_running", r2.run_id)
    await call("requeue_run", r2.run_id, 2)
    await call("mark_running", r2.run_id)
    await call("finish_run", r2.run_id, "t1", RunStatus.ERROR,
               ThreadOutcome(ThreadStatus.ERROR, {"msgs": []}, {}, {"error": "E", "message": "m"}))
    await call("set_cancel_action", r3.run_id, CancelAction.ROLLBACK)
    await call("delete_run", r3.run_id, "t1",
               ThreadOutcome(ThreadStatus.IDLE, {"msgs": ["restored"]}, {}))
    await call("delete_run", r3.run_id, "t1")
    await call("set_thread_state", "t2", {"v": {"deep": [1, 2]}}, {}, ThreadStatus.IDLE,
               {"nested": None, "src": "copy"})
    await call("admit_run", run("t3"), create_thread=True, thread_metadata={"made": "here"})
    await call("get_thread", "t1")
    await call("get_thread", "t2")
    await call("get_thread", "t3")
    await call("get_thread", "t9")
    await call("get_run", r2.run_id)
    await call("get_run", r2.run_id, "t2")
    await call("list_runs", "t1", limit=10)
    await call("list_runs", "t1", status="error")
    await call("active_runs")
    for kw in ({}, {"metadata": {"user": "ann"}}, {"metadata": {"tags": ["b"]}},
               {"values": {"msgs": ["restored"]}}, {"status": "busy"}, {"ids": ["t3", "t1"]},
               {"sort_by": "thread_id", "sort_order": "asc", "limit": 2},
               {"sort_by": "updated_at", "offset": 1}, {"metadata": {"n": 2**63}}):
        await call("search_threads", **kw)
        if "ids" not in kw and "sort_by" not in kw:
            await call("count_threads", **{k: v for k, v in kw.items() if k != "limit"})
    await call("delete_thread", "t3")
    await call("delete_thread", "t3")
    await call("active_runs")
    return out


async def test_both_engines_return_the_same_results(
    pg_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One scripted session on SQLite and on PostgreSQL, with the same clock: every result,
    timestamps and error messages included, is equal."""
    from runtime.store.postgres import PostgresStore
    from runtime.store.sqlite import SqliteStore

    results = []
    for opener in (lambda: SqliteStore.open(tmp_path / "s.sqlite"),
                   lambda: PostgresStore.open(pg_url)):
        clock = StepClock()
        monkeypatch.setattr("runtime.store.sqlite.now_iso", clock)
        monkeypatch.setattr("runtime.store.postgres.now_iso", clock)
        async with opener() as store:
            results.append(await scripted_session(store, clock))
    lite, pg = results
    assert len(lite) == len(pg)
    for step, (a, b) in enumerate(zip(lite, pg, strict=True)):
        assert a == b, (step, a, b)
