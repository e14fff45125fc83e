"""Three gateway processes on one PostgreSQL database and one Redis (issue 11): real processes,
real engines, the official SDK over real sockets, nginx in front for one test.

What they share is checked from every side: a run created on A is joined on B and resumed on C
with ``Last-Event-ID``; cancels (interrupt, rollback) come from a process that does not own the
run; a SIGKILLed owner's run finishes elsewhere (attempt 2, no node twice) within
``2 x lease_s + 2 s``; a SIGSTOPped owner that outlived its lease writes nothing when it wakes;
200 runs over 20 threads posted to random processes run FIFO per thread, each exactly once;
SIGTERM of every process in turn loses no run; a Redis flush loses no run and hangs no stream.

The owner of a run is read from its row (``owner`` is ``<host>:<pid>:<random>``), so a test
kills the process that executes the run, whichever it is.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import anyio
import psycopg
import pytest
import redis
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.e2e.test_crash_recovery import (
    contents,
    poll,
    steps_answer,
    user,
    wait_state_next,
    wait_terminal,
)
from tests.e2e.test_nginx import Nginx, nginx_binary
from tests.server import GatewayProcess

pytestmark = pytest.mark.anyio
MakeGateway = Callable[..., GatewayProcess]

LEASE_S = 2.0
TAKEOVER_S = 2 * LEASE_S + 2  # the bound, from the kill to the run running again
SLOW = {"configurable": {"delay": 1.5}}


@pytest.fixture
def engines(pg_url: str, redis_prefix: tuple[str, str]) -> dict[str, Any]:
    redis_url, prefix = redis_prefix
    return {"database_url": pg_url, "redis_url": redis_url, "redis_key_prefix": prefix,
            "lease_s": LEASE_S, "shutdown_timeout_s": 2}


@pytest.fixture
def cluster(engines: dict[str, Any], make_gateway: MakeGateway) -> list[GatewayProcess]:
    """Three processes on the same database and Redis prefix."""
    return [make_gateway(**engines).start() for _ in range(3)]


def sdk(server: GatewayProcess) -> LangGraphClient:
    return get_client(url=server.url)


def run_row(pg_url: str, run_id: str) -> dict[str, Any] | None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("SELECT status, attempt, owner FROM runs WHERE run_id = %s",
                           (run_id,)).fetchone()
    return None if row is None else {"status": row[0], "attempt": row[1], "owner": row[2]}


def owner_of(cluster: list[GatewayProcess], pg_url: str, run_id: str) -> GatewayProcess:
    row = run_row(pg_url, run_id)
    assert row is not None and row["status"] == "running" and row["owner"], row
    pid = int(str(row["owner"]).split(":")[1])
    for server in cluster:
        if server.proc is not None and server.proc.pid == pid:
            return server
    raise AssertionError(f"owner {row['owner']} is none of the cluster's processes")


async def wait_row(pg_url: str, run_id: str, done: Callable[[dict[str, Any] | None], bool],
                   timeout_s: float, what: str) -> dict[str, Any] | None:
    async def fetch() -> dict[str, Any] | None:
        return run_row(pg_url, run_id)

    row: dict[str, Any] | None = await poll(fetch, done, timeout_s, what)
    return row


# ---- create on A, join on B, resume on C, cancel from C --------------------------------------


@pytest.mark.timeout(120)
async def test_create_on_a_join_on_b_resume_on_c_cancel_from_c(
    cluster: list[GatewayProcess], pg_url: str,
) -> None:
    a, b, c = (sdk(s) for s in cluster)
    thread_id = str((await a.threads.create())["thread_id"])
    run = await a.runs.create(thread_id, "steps", input=user("x"),
                              config={"configurable": {"delay": 0.5}},
                              stream_mode=["values", "updates"])
    head = []
    async with aclosing(b.runs.join_stream(thread_id, run["run_id"])) as events:
        async for part in events:
            head.append(part)
            if len(head) == 3:
                break
    assert head[0].event == "metadata" and head[0].data["run_id"] == run["run_id"]
    rest = [p async for p in c.runs.join_stream(thread_id, run["run_id"],
                                                 last_event_id=head[-1].id)]
    full = [p async for p in a.runs.join_stream(thread_id, run["run_id"], last_event_id="-1")]
    assert [(p.event, p.data, p.id) for p in head + rest] == [
        (p.event, p.data, p.id) for p in full]  # nothing lost, nothing repeated
    assert [p.event for p in full].count("updates") == 3
    assert contents(full[-1].data) == steps_answer("x")

    # interrupt from C of a run that executes elsewhere; wait=1 waits for its end
    slow = await a.runs.create(thread_id, "steps", input=user("stop"), config=SLOW)
    await wait_state_next(b, thread_id, ["second"])
    owner = owner_of(cluster, pg_url, slow["run_id"])
    canceller = next(s for s in cluster if s is not owner)
    with anyio.fail_after(10):
        stopped = await sdk(canceller).runs.cancel(thread_id, slow["run_id"], wait=True)
    assert contents(stopped)[-2:] == [("human", "stop"), ("ai", "first: stop")]
    assert (await b.runs.get(thread_id, slow["run_id"]))["status"] == "interrupted"

    # rollback from another process: the run and its checkpoints are gone everywhere
    doomed = await a.runs.create(thread_id, "steps", input=user("doomed"), config=SLOW)
    await wait_state_next(c, thread_id, ["second"])
    owner = owner_of(cluster, pg_url, doomed["run_id"])
    canceller = next(s for s in cluster if s is not owner)
    with anyio.fail_after(10):
        await sdk(canceller).runs.cancel(thread_id, doomed["run_id"], wait=True,
                                         action="rollback")
    for client in (a, b, c):
        assert doomed["run_id"] not in [r["run_id"] for r in await client.runs.list(thread_id)]
    state = await c.threads.get_state(thread_id)
    assert ("human", "doomed") not in contents(state["values"])
    assert (await a.threads.get(thread_id))["status"] == "interrupted" or (
        await a.threads.get(thread_id))["status"] == "idle"

    # a pending run cancelled from a process that never saw it
    blocker = await a.runs.create(thread_id, "steps", input=user("block"),
                                  config={"configurable": {"delay": 0.5}})
    queued = await b.runs.create(thread_id, "steps", input=user("queued"),
                                 multitask_strategy="enqueue")
    await c.runs.cancel(thread_id, queued["run_id"])
    await a.runs.join(thread_id, blocker["run_id"])
    assert (await b.runs.get(thread_id, queued["run_id"]))["status"] == "interrupted"
    after = await c.runs.wait(thread_id, "steps", input=user("after"))
    assert contents(after)[-4:] == steps_answer("after")
    assert (await b.threads.get(thread_id))["status"] == "idle"


# ---- SIGKILL of the owner ----------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kill_point", ["before_first_checkpoint", "mid_run", "last_node",
                                        "during_finalization"])
async def test_killed_owner_run_finishes_elsewhere(
    cluster: list[GatewayProcess], pg_url: str, kill_point: str,
) -> None:
    """``during_finalization``: the test holds the thread's row lock, so the owner's terminal
    write (which takes it first) blocks after the graph's last checkpoint is written; the owner
    is killed there, and its blocked statement's backend terminated (a statement that reached
    the server would otherwise still commit: that is a finished run, not a lost one). The next
    attempt finds the graph complete and runs no node again."""
    a = sdk(cluster[0])
    thread_id = str((await a.threads.create())["thread_id"])
    durability = "exit" if kill_point == "before_first_checkpoint" else None
    run = await a.runs.create(thread_id, "steps", input=user("once"), config=SLOW,
                              durability=durability)
    run_id = run["run_id"]
    if kill_point == "before_first_checkpoint":
        await wait_row(pg_url, run_id, lambda r: r is not None and r["status"] == "running",
                       10, "the run to start")
        await anyio.sleep(0.5)
        assert await a.threads.get_history(thread_id) == []
    else:
        await wait_state_next(a, thread_id, ["second" if kill_point == "mid_run" else "third"])
    blocker: psycopg.Connection[Any] | None = None
    if kill_point == "during_finalization":  # hold the thread row: the terminal write waits
        blocker = psycopg.connect(pg_url)
        blocker.execute("SELECT 1 FROM threads WHERE thread_id = %s FOR UPDATE", (thread_id,))
        await wait_state_next(a, thread_id, [])  # the last checkpoint is written
        blocked_sql = ("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND query LIKE '%%gw_finish_run_fenced_v1%%'")
        with psycopg.connect(pg_url, autocommit=True) as conn:  # the owner waits on our lock
            blocked = await poll(
                lambda: anyio.to_thread.run_sync(
                    lambda: conn.execute(blocked_sql).fetchall()),
                lambda rows: len(rows) == 1, 10, "the terminal write to wait")
    owner = owner_of(cluster, pg_url, run_id)
    survivors = [s for s in cluster if s is not owner]
    owner.kill()
    killed_at = time.monotonic()
    if blocker is not None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (blocked[0][0],))
        blocker.commit()
        blocker.close()

    row = await wait_row(pg_url, run_id, lambda r: r is not None and r["attempt"] == 2
                         and r["status"] != "pending", TAKEOVER_S + 5, "the takeover")
    taken_over_s = time.monotonic() - killed_at
    assert row is not None and taken_over_s <= TAKEOVER_S, (taken_over_s, row)
    client = sdk(survivors[0])
    finished = await wait_terminal(client, thread_id, run_id, 30)
    assert finished["status"] == "success"
    state = await client.threads.get_state(thread_id)
    assert contents(state["values"]) == steps_answer("once")  # no node ran twice
    row = run_row(pg_url, run_id)
    assert row is not None and row["attempt"] == 2
    assert int(str(row["owner"]).split(":")[1]) in {s.proc.pid for s in survivors if s.proc}
    events = [p async for p in sdk(survivors[1]).runs.join_stream(
        thread_id, run_id, last_event_id="-1")]
    assert events[0].event == "metadata" and events[0].data["attempt"] == 2
    assert contents(events[-1].data) == steps_answer("once")


# ---- SIGSTOP past the lease --------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_frozen_owner_writes_nothing_when_it_wakes(
    cluster: list[GatewayProcess], pg_url: str, engines: dict[str, Any],
) -> None:
    a = sdk(cluster[0])
    thread_id = str((await a.threads.create())["thread_id"])
    run = await a.runs.create(thread_id, "steps", input=user("frozen"), config=SLOW)
    run_id = run["run_id"]
    await wait_state_next(a, thread_id, ["second"])
    owner = owner_of(cluster, pg_url, run_id)
    survivor = sdk(next(s for s in cluster if s is not owner))
    assert owner.proc is not None
    owner.proc.send_signal(signal.SIGSTOP)
    try:
        finished = await wait_terminal(survivor, thread_id, run_id, TAKEOVER_S + 15)
    finally:
        owner.proc.send_signal(signal.SIGCONT)
    assert finished["status"] == "success"
    done_state = await survivor.threads.get_state(thread_id)
    history = await survivor.threads.get_history(thread_id, limit=100)
    key = f"{engines['redis_key_prefix']}run:{run_id}"
    stream_before = redis.Redis.from_url(engines["redis_url"]).xrange(key)
    await anyio.sleep(3 * LEASE_S)  # the woken zombie had every chance to write
    assert contents(done_state["values"]) == steps_answer("frozen")
    assert await survivor.threads.get_state(thread_id) == done_state
    assert await survivor.threads.get_history(thread_id, limit=100) == history
    assert redis.Redis.from_url(engines["redis_url"]).xrange(key) == stream_before
    row = run_row(pg_url, run_id)
    assert row is not None and row["status"] == "success" and row["attempt"] == 2
    assert "lease" in owner.log()  # it noticed, and said so
    # and it is a working member again
    again = await sdk(owner).runs.wait(thread_id, "steps", input=user("again"))
    assert contents(again)[-4:] == steps_answer("again")


# ---- many runs, many threads, random processes ---------------------------------------------------


@pytest.mark.timeout(240)
async def test_200_runs_over_20_threads_fifo_and_exactly_once(
    cluster: list[GatewayProcess], pg_url: str,
) -> None:
    clients = [sdk(s) for s in cluster]
    threads = [str((await clients[0].threads.create())["thread_id"]) for _ in range(20)]
    rng = random.Random(11)
    posted: dict[str, list[str]] = {t: [] for t in threads}
    run_ids: list[tuple[str, str]] = []
    for i in range(200):
        thread_id = rng.choice(threads)
        text = f"m{i}"
        run = await rng.choice(clients).runs.create(
            thread_id, "echo", input=user(text), multitask_strategy="enqueue")
        posted[thread_id].append(text)
        run_ids.append((thread_id, run["run_id"]))
    with anyio.fail_after(150):
        for thread_id, run_id in run_ids:
            await rng.choice(clients).runs.join(thread_id, run_id)
    for thread_id in threads:
        state = await clients[1].threads.get_state(thread_id)
        expected = [x for text in posted[thread_id] for x in (("human", text),
                                                             ("ai", f"echo: {text}"))]
        assert contents(state["values"]) == expected  # FIFO, each exactly once, no overlap
    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = conn.execute("SELECT status, attempt, count(*) FROM runs GROUP BY 1, 2").fetchall()
        owners = conn.execute("SELECT count(DISTINCT owner) FROM runs").fetchone()
    assert rows == [("success", 1, 200)]
    assert owners is not None and owners[0] >= 2  # the work was shared


# ---- rolling restart -------------------------------------------------------------------------


@pytest.mark.timeout(240)
async def test_rolling_restart_loses_no_run(
    make_gateway: MakeGateway, cluster: list[GatewayProcess], engines: dict[str, Any],
    pg_url: str,
) -> None:
    members = list(cluster)
    entry = sdk(members[0])
    threads = [str((await entry.threads.create())["thread_id"]) for _ in range(6)]
    created: list[tuple[str, str, str]] = []
    draining: set[GatewayProcess] = set()

    async def feed(stop: anyio.Event) -> None:
        i = 0
        while not stop.is_set():
            # as a load balancer does: no new request to a process being drained
            live = [s for s in members if s.proc is not None and s.proc.poll() is None
                    and s not in draining]
            thread_id = threads[i % 6]  # the feed's own threads
            try:
                run = await sdk(random.choice(live)).runs.create(
                    thread_id, "steps", input=user(f"r{i}"),
                    config={"configurable": {"delay": 0.8}})  # longer than the drain
            except Exception:  # the process we picked is shutting down (503): try another
                await anyio.sleep(0.05)
                continue
            created.append((thread_id, run["run_id"], f"r{i}"))
            i += 1
            await anyio.sleep(0.1)

    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed, stop)
        for index in range(len(members)):
            await anyio.sleep(1.5)
            old = members[index]
            # a run that is surely executing on the process when it stops (a slow one, created
            # there: the admission takes its lease): the drain cannot finish it; hand-back
            own = str((await sdk(old).threads.create())["thread_id"])
            slow = await sdk(old).runs.create(own, "steps", input=user(f"slow{index}"),
                                              config={"configurable": {"delay": 1.5}})
            created.append((own, slow["run_id"], f"slow{index}"))
            threads.append(own)
            await wait_row(pg_url, slow["run_id"],
                           lambda r: r is not None and r["status"] == "running", 10,
                           "the slow run to start")
            draining.add(old)
            # uvicorn re-raises the SIGTERM once its graceful shutdown is over
            assert await anyio.to_thread.run_sync(old.stop) in (0, -signal.SIGTERM)
            assert "Traceback" not in old.log(), old.log()
            members[index] = await anyio.to_thread.run_sync(make_gateway(**engines).start)
        await anyio.sleep(1.0)
        stop.set()
    assert len(created) >= 20
    client = sdk(members[-1])
    with anyio.fail_after(90):
        for thread_id, run_id, _ in created:
            await client.runs.join(thread_id, run_id)
    for thread_id in threads:
        texts = [text for t, _, text in created if t == thread_id]
        state = await client.threads.get_state(thread_id)
        assert contents(state["values"]) == steps_answer(*texts)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        statuses = conn.execute("SELECT status, attempt, count(*) FROM runs GROUP BY 1, 2"
                                ).fetchall()
    assert statuses == [("success", 1, len(created))]  # a hand-back charges no attempt
    handed_back = sum(s.log().count("handed back at shutdown") for s in cluster)
    assert handed_back >= 3  # every stop handed at least its slow run back


# ---- Redis flushed mid-run -------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_redis_flush_mid_run_loses_no_run_and_hangs_no_stream(
    cluster: list[GatewayProcess], engines: dict[str, Any],
) -> None:
    a, b = sdk(cluster[0]), sdk(cluster[1])
    thread_id = str((await a.threads.create())["thread_id"])
    run = await a.runs.create(thread_id, "steps", input=user("flush"), config=SLOW)
    await wait_state_next(a, thread_id, ["second"])
    seen: list[str] = []

    async def follow(client: LangGraphClient) -> None:
        try:
            async for part in client.runs.join_stream(thread_id, run["run_id"]):
                seen.append(part.event)
        except Exception as exc:  # a broken stream is allowed; a hung one is not
            seen.append(f"broken: {type(exc).__name__}")

    redis_client = redis.Redis.from_url(engines["redis_url"])
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow, b)
            tg.start_soon(follow, sdk(cluster[2]))
            await anyio.sleep(0.3)
            for key in redis_client.scan_iter(engines["redis_key_prefix"] + "*"):
                redis_client.delete(key)
    final = await wait_terminal(b, thread_id, run["run_id"], 20)
    assert final["status"] == "success"
    state = await b.threads.get_state(thread_id)
    assert contents(state["values"]) == steps_answer("flush")
    after = await b.runs.wait(thread_id, "steps", input=user("later"))
    assert contents(after)[-4:] == steps_answer("later")


# ---- nginx in front of the three -------------------------------------------------------------


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")
@pytest.mark.timeout(120)
async def test_three_processes_behind_nginx(cluster: list[GatewayProcess], pg_url: str) -> None:
    """nginx spreads requests over the three (round robin): a create, a join with
    ``Last-Event-ID`` after a dropped connection and a cancel each land anywhere, and the
    client cannot tell."""
    proxy = Nginx([s.port for s in cluster]).start()
    try:
        client = get_client(url=proxy.url)
        thread_id = str((await client.threads.create())["thread_id"])
        streamed = [(p.event, p.data, p.id) async for p in client.runs.stream(
            thread_id, "steps", input=user("via nginx"),
            config={"configurable": {"delay": 0.2}}, stream_mode="values")]
        assert contents(streamed[-1][1]) == steps_answer("via nginx")
        run = await client.runs.create(thread_id, "steps", input=user("joined"),
                                       config={"configurable": {"delay": 0.4}})
        head = []
        async with aclosing(client.runs.join_stream(thread_id, run["run_id"])) as events:
            async for part in events:
                head.append((part.event, part.data, part.id))
                if len(head) == 2:
                    break
        rest = [(p.event, p.data, p.id) async for p in client.runs.join_stream(
            thread_id, run["run_id"], last_event_id=head[-1][2])]
        full = [(p.event, p.data, p.id) async for p in client.runs.join_stream(
            thread_id, run["run_id"], last_event_id="-1")]
        assert head + rest == full
        slow = await client.runs.create(thread_id, "steps", input=user("cut"), config=SLOW)
        await wait_state_next(client, thread_id, ["second"])
        await client.runs.cancel(thread_id, slow["run_id"], wait=True)
        assert (await client.runs.get(thread_id, slow["run_id"]))["status"] == "interrupted"
        with psycopg.connect(pg_url, autocommit=True) as conn:
            owners = conn.execute("SELECT count(DISTINCT owner) FROM runs").fetchone()
        assert owners is not None and owners[0] >= 1
    finally:
        proxy.stop()
