"""Crons (issue 12) with the official Python SDK over a real socket, on fresh gateway processes
(a cron fires runs: each test gets a gateway of its own so no other test sees them).

Seconds-level schedules make fires happen within seconds: ``* * * * * */2`` (croniter's six
fields, seconds LAST, as the reference) and our ``@every 1s`` / ``@at <time>``.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import psycopg
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.server import GatewayProcess

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def runs_of(client: LangGraphClient, thread_id: str) -> list[dict[str, Any]]:
    return list(await client.runs.list(thread_id, limit=100))


async def wait_for(fetch: Any, done: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {value!r}")
        await anyio.sleep(0.1)


def fires(data_dir: Path, cron_id: str) -> list[tuple[str, str, str]]:
    """``(scheduled_for, fired_at, outcome)`` of a cron's fires, oldest first (SQLite)."""
    with sqlite3.connect(data_dir / "gateway.sqlite") as db:
        return list(db.execute("SELECT scheduled_for, fired_at, outcome FROM cron_fires "
                               "WHERE cron_id = ? ORDER BY seq", (cron_id,)))


@pytest.fixture
def server(make_gateway: Any) -> GatewayProcess:
    return make_gateway().start()  # type: ignore[no-any-return]


async def test_a_thread_cron_fires_on_its_thread(server: GatewayProcess) -> None:
    client = get_client(url=server.url)
    thread_id = str((await client.threads.create(metadata={"owner": "t"}))["thread_id"])
    cron: dict[str, Any] = await client.crons.create_for_thread(  # type: ignore[assignment]
        thread_id, "echo", schedule="* * * * * */2", input=user("tick"),
        metadata={"purpose": "demo"})
    assert list(cron) == ["cron_id", "assistant_id", "thread_id", "user_id", "end_time",
                          "schedule", "timezone", "payload", "next_run_date", "metadata",
                          "on_run_completed", "enabled", "created_at", "updated_at"]
    assert cron["thread_id"] == thread_id and cron["on_run_completed"] is None
    assert cron["payload"]["config"]["configurable"]["cron_id"] == cron["cron_id"]
    assert cron["metadata"] == {"purpose": "demo"} and cron["enabled"] is True
    assert await runs_of(client, thread_id) == []  # nothing fires at create
    runs = await wait_for(lambda: runs_of(client, thread_id), lambda r: len(r) >= 2, 10,
                          "two fires")
    run = runs[-1]
    assert run["kwargs"]["config"]["configurable"]["cron_id"] == cron["cron_id"]
    assert run["metadata"]["purpose"] == "demo"
    await client.runs.join(thread_id, run["run_id"])
    state = await client.threads.get_state(thread_id)
    assert [m["content"] for m in state["values"]["messages"]][:2] == ["tick", "echo: tick"]
    await client.crons.delete(cron["cron_id"])
    count = len(await runs_of(client, thread_id))
    await anyio.sleep(2.5)
    assert len(await runs_of(client, thread_id)) == count  # deleted: no more fires


async def test_stateless_crons_keep_or_delete_their_threads(server: GatewayProcess) -> None:
    client = get_client(url=server.url)
    keep: dict[str, Any] = await client.crons.create(  # type: ignore[assignment]
        "echo", schedule="@every 1s", input=user("kept"), on_run_completed="keep")
    gone: dict[str, Any] = await client.crons.create(  # type: ignore[assignment]
        "echo", schedule="@every 1s", input=user("gone"))
    assert keep["thread_id"] is None and keep["on_run_completed"] == "keep"
    assert gone["on_run_completed"] == "delete"
    threads = await wait_for(lambda: client.threads.search(limit=100),
                             lambda t: len(t) >= 2, 10, "kept threads")
    await client.crons.delete(keep["cron_id"])
    await client.crons.delete(gone["cron_id"])
    await anyio.sleep(1.5)  # the last runs end; a deleted-thread run leaves nothing
    threads = await client.threads.search(limit=100)
    contents = {m["content"] for t in threads for m in (t["values"] or {}).get("messages", [])}
    assert "kept" in contents and "gone" not in contents
    data = server.config.parent / "data"
    assert [o for _, _, o in fires(data, gone["cron_id"])] == []  # deleted with the cron


async def test_search_count_update_delete(server: GatewayProcess) -> None:
    client = get_client(url=server.url)
    raw = client.http.client
    thread_id = str((await client.threads.create())["thread_id"])
    made = []
    for i in range(3):
        made.append(await client.crons.create_for_thread(
            thread_id, "echo", schedule=f"{i} 3 * * *", metadata={"team": "a", "i": i},
            enabled=i != 2))
    other = await client.crons.create("echo", schedule="0 4 * * *", metadata={"team": "b"})
    assert await client.crons.count() == 4
    assert await client.crons.count(metadata={"team": "a"}) == 3
    assert await client.crons.count(thread_id=thread_id) == 3
    found = await client.crons.search(metadata={"team": "a"}, sort_by="created_at",
                                      sort_order="asc", limit=2)
    assert [c["cron_id"] for c in found] == [made[0]["cron_id"], made[1]["cron_id"]]
    assert [c["cron_id"] for c in await client.crons.search(enabled=False)] == [
        made[2]["cron_id"]]
    picked = await client.crons.search(select=["cron_id", "schedule"], limit=10)
    assert all(set(c) == {"cron_id", "schedule"} for c in picked) and len(picked) == 4
    r = await raw.post("/runs/crons/search", json={"limit": 2, "offset": 1})
    assert r.headers["x-pagination-next"] == "3" and len(r.json()) == 2

    cron_id = made[0]["cron_id"]
    updated = await client.crons.update(cron_id, schedule="30 6 * * *",
                                        timezone="America/New_York", metadata={"extra": 2})
    assert updated["schedule"] == "30 6 * * *" and updated["timezone"] == "America/New_York"
    assert updated["metadata"] == {"team": "a", "i": 0, "extra": 2}
    when = datetime.fromisoformat(updated["next_run_date"]).astimezone(
        ZoneInfo("America/New_York"))
    assert (when.hour, when.minute) == (6, 30)
    assert updated["updated_at"] > made[0]["updated_at"]
    later = await client.crons.update(cron_id, end_time=datetime(2031, 1, 1, tzinfo=UTC))
    assert later["end_time"] == "2031-01-01T00:00:00+00:00"
    cleared = await client.crons.update(cron_id, end_time=None)
    assert cleared["end_time"] is None
    r = await raw.patch(f"/runs/crons/{cron_id}", json={})
    assert r.status_code == 400 and r.json() == {"detail": "Request body cannot be empty"}
    got = (await raw.get(f"/runs/crons/{cron_id}")).json()
    assert got == {**cleared, "updated_at": got["updated_at"]}

    await client.crons.delete(other["cron_id"])
    r = await raw.delete(f"/runs/crons/{other['cron_id']}")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    await client.threads.delete(thread_id)  # a thread's crons go with it
    assert await client.crons.count() == 0


async def test_validation_errors_name_the_field(server: GatewayProcess) -> None:
    raw = get_client(url=server.url).http.client
    thread_id = (await raw.post("/threads", json={})).json()["thread_id"]
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"assistant_id": "echo"}, 422, "schedule"),
        ({"schedule": "* * * * *"}, 422, "assistant_id"),
        ({"assistant_id": "echo", "schedule": "61 * * * *"}, 422, "Invalid cron schedule"),
        ({"assistant_id": "echo", "schedule": "@every 0s"}, 422, "Invalid cron schedule"),
        ({"assistant_id": "echo", "schedule": 5}, 422, "schedule"),
        ({"assistant_id": "echo", "schedule": "* * * * *", "timezone": "Mars/Olympus"}, 422,
         "Invalid timezone: 'Mars/Olympus'"),
        ({"assistant_id": "echo", "schedule": "* * * * *", "end_time": "tomorrow"}, 422,
         "end_time"),
        ({"assistant_id": "echo", "schedule": "* * * * *", "on_run_completed": "archive"},
         422, "on_run_completed"),
        ({"assistant_id": "echo", "schedule": "0 0 30 2 *"}, 400, "failed to find next date"),
        ({"assistant_id": "echo", "schedule": "@at 2020-01-01T00:00:00Z"}, 400,
         "failed to find next date"),
        ({"assistant_id": "echo", "schedule": "* * * * *", "config": {"configurable": 5}},
         422, "config.configurable"),
    ]
    for body, status, detail in cases:
        r = await raw.post("/runs/crons", json=body)
        assert r.status_code == status and detail in r.json()["detail"], (body, r.text)
    r = await raw.post("/runs/crons", json={"assistant_id": str(uuid_of(0)),
                                              "schedule": "* * * * *"})
    assert r.status_code == 404, r.text
    r = await raw.post(f"/threads/{uuid_of(1)}/runs/crons",
                   json={"assistant_id": "echo", "schedule": "* * * * *"})
    assert r.status_code == 404 and "not found" in r.json()["detail"]
    r = await raw.post(f"/threads/{thread_id}/runs/crons",
                   json={"assistant_id": "echo", "schedule": "* * * * *",
                         "multitask_strategy": "sometimes"})
    assert r.status_code == 422 and "multitask_strategy" in r.json()["detail"]
    assert (await raw.get("/runs/crons/not-a-uuid")).json() == {
        "detail": "Invalid cron ID: must be a UUID"}
    r = await raw.get(f"/runs/crons/{uuid_of(2)}")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    r = await raw.patch(f"/runs/crons/{uuid_of(2)}", content=b"")  # found by the fuzz: a 500
    assert r.status_code == 400 and r.json() == {"detail": "Request body cannot be empty"}
    r = await raw.patch(f"/runs/crons/{uuid_of(2)}", json={"enabled": False})
    assert r.status_code == 404 and r.json() == {"detail": f"Cron '{uuid_of(2)}' not found"}
    assert (await raw.post("/runs/crons/count", json={})).json() == 0  # nothing half-made


def uuid_of(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


async def test_next_run_date_is_computed_in_the_timezone(server: GatewayProcess) -> None:
    client = get_client(url=server.url)
    before = datetime.now(UTC)
    cron: dict[str, Any] = await client.crons.create(  # type: ignore[assignment]
        "echo", schedule="0 9 * * 1-5", timezone="Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    expected = before.astimezone(berlin)
    while True:  # the next weekday 09:00 in Berlin, independently of croniter
        expected = (expected + timedelta(days=0 if expected.hour < 9 else 1)).replace(
            hour=9, minute=0, second=0, microsecond=0)
        if expected.weekday() < 5 and expected > before:
            break
        expected += timedelta(days=1)
        expected = expected.replace(hour=0)
    assert datetime.fromisoformat(cron["next_run_date"]) == expected.astimezone(UTC)
    assert cron["next_run_date"].endswith("+00:00") and cron["timezone"] == "Europe/Berlin"


async def test_end_time_and_one_off_schedules(server: GatewayProcess) -> None:
    client = get_client(url=server.url)
    raw = client.http.client
    soon = datetime.now(UTC) + timedelta(seconds=2)
    thread_id = str((await client.threads.create())["thread_id"])
    bounded: dict[str, Any] = await client.crons.create_for_thread(  # type: ignore[assignment]
        thread_id, "echo", schedule="@every 1s", input=user("bounded"),
        end_time=datetime.now(UTC) + timedelta(seconds=3))
    past = str((await client.threads.create())["thread_id"])
    await client.crons.create_for_thread(past, "echo", schedule="@every 1s",
                                         end_time=datetime.now(UTC) - timedelta(seconds=1))
    once_thread = str((await client.threads.create())["thread_id"])
    once: dict[str, Any] = await client.crons.create_for_thread(  # type: ignore[assignment]
        once_thread, "echo", schedule=f"@at {soon.isoformat()}", input=user("once"))
    assert datetime.fromisoformat(once["next_run_date"]) == soon
    await anyio.sleep(5)
    fired = len(await runs_of(client, thread_id))
    assert 1 <= fired <= 4, fired  # fired while before its end_time
    await anyio.sleep(1.5)
    assert len(await runs_of(client, thread_id)) == fired  # and not after
    assert await runs_of(client, past) == []  # expired at create: never fires
    assert len(await runs_of(client, once_thread)) == 1
    done = (await raw.get(f"/runs/crons/{once['cron_id']}")).json()
    assert done["enabled"] is False and done["next_run_date"] is None
    assert bounded["end_time"] is not None


async def test_a_restart_that_spans_ticks_fires_once(make_gateway: Any) -> None:
    """Ticks missed while the gateway was down fire ONCE at start-up (coalesced)."""
    first = make_gateway().start()
    client = get_client(url=first.url)
    thread_id = str((await client.threads.create())["thread_id"])
    cron: dict[str, Any] = await client.crons.create_for_thread(  # type: ignore[assignment]
        thread_id, "echo", schedule="@every 2s", input=user("r"))
    await wait_for(lambda: runs_of(client, thread_id), lambda r: len(r) >= 1, 10, "a fire")
    first.kill()
    down_at = datetime.now(UTC)
    await anyio.sleep(6.5)  # three ticks missed
    second = make_gateway().start()
    up_at = datetime.now(UTC)
    client = get_client(url=second.url)
    await anyio.sleep(0.8)
    data = second.config.parent / "data"
    after = [f for f in fires(data, cron["cron_id"])
             if datetime.fromisoformat(f[1]) >= down_at]
    missed = [f for f in after if datetime.fromisoformat(f[0]) < up_at]
    assert len(missed) == 1, after  # one catch-up for all the missed ticks
    assert missed[0][2] == "created"


@pytest.mark.timeout(120)
async def test_two_processes_on_postgres_fire_each_tick_once(
    make_gateway: Any, pg_url: str, redis_prefix: tuple[str, str],
) -> None:
    redis_url, prefix = redis_prefix
    engines = {"database_url": pg_url, "redis_url": redis_url, "redis_key_prefix": prefix}
    a = make_gateway(**engines).start()
    b = make_gateway(**engines).start()
    client = get_client(url=a.url)
    thread_id = str((await client.threads.create())["thread_id"])
    cron: dict[str, Any] = await client.crons.create_for_thread(  # type: ignore[assignment]
        thread_id, "echo", schedule="* * * * * *", input=user("t"))
    await anyio.sleep(6)
    await client.crons.update(cron["cron_id"], enabled=False)
    await anyio.sleep(1.5)  # the last fire's run is admitted
    runs = await runs_of(get_client(url=b.url), thread_id)
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT scheduled_for), "
                           "count(*) FILTER (WHERE outcome = 'created') FROM cron_fires "
                           "WHERE cron_id = %s", (cron["cron_id"],)).fetchone()
    assert row is not None
    total, distinct, created = row
    assert total >= 4 and total == distinct == created, row  # each tick fired once
    assert len(runs) == total  # one run per tick, whichever process fired it
    with psycopg.connect(pg_url) as conn:
        owners = conn.execute("SELECT count(DISTINCT owner) FROM runs").fetchone()
    assert owners is not None and owners[0] >= 1


async def test_metrics_and_log_lines_with_ids(server: GatewayProcess) -> None:
    """``GET /metrics`` (Prometheus text) counts runs by status, their durations and cron
    fires; log lines carry ``run_id``/``thread_id``/``cron_id``; a fire whose run cannot be
    created (``reject`` on a busy thread) is logged, counted and recorded."""
    from prometheus_client.parser import text_string_to_metric_families

    client = get_client(url=server.url)
    raw = client.http.client
    thread_id = str((await client.threads.create())["thread_id"])
    await client.runs.wait(thread_id, "echo", input=user("ok"))
    failed = await client.runs.create(thread_id, "fail", input=user("no"))
    await client.runs.join(thread_id, failed["run_id"])
    busy = await client.runs.create(thread_id, "echo", input=user("long"),
                                    config={"configurable": {"delay": 4}})
    cron: dict[str, Any] = await client.crons.create_for_thread(  # type: ignore[assignment]
        thread_id, "echo", schedule="@every 1s", multitask_strategy="reject")
    await anyio.sleep(2.5)
    await client.crons.update(cron["cron_id"], enabled=False)
    await client.runs.join(thread_id, busy["run_id"])

    text = (await raw.get("/metrics")).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("gateway_runs_finished_total", (("status", "success"),))] >= 2
    assert samples[("gateway_runs_finished_total", (("status", "error"),))] >= 1
    assert samples[("gateway_run_duration_seconds_count", (("status", "success"),))] >= 2
    assert samples[("gateway_cron_fires_total", (("outcome", "error"),))] >= 1
    assert samples[("gateway_runs_active", ())] == 0
    assert samples[("gateway_runs_pending", ())] == 0
    assert ("process_cpu_seconds_total", ()) in samples

    log = server.log()
    assert f"run_id={failed['run_id']} thread_id={thread_id}" in log  # the failure's lines
    assert f"cron {cron['cron_id']}" in log and f"cron_id={cron['cron_id']}" in log
    data = server.config.parent / "data"
    assert "error" in {outcome for _, _, outcome in fires(data, cron["cron_id"])}


async def test_max_concurrency_skips_ticks_while_runs_are_active(
    server: GatewayProcess,
) -> None:
    """``max_concurrency: 1`` (raw HTTP: a body field; SDKs: ``metadata.x_gateway``): a tick
    that comes while the cron's run is still active is skipped and recorded."""
    client = get_client(url=server.url)
    raw = client.http.client
    slow = {"assistant_id": "echo", "schedule": "@every 1s", "input": user("slow"),
            "context": {"delay": 2.5}, "max_concurrency": 1}
    r = await raw.post("/runs/crons", json=slow)
    assert r.status_code == 200, r.text
    cron = r.json()
    via_sdk: dict[str, Any] = await client.crons.create(  # type: ignore[assignment]
        "echo", schedule="@every 1s", input=user("sdk"), context={"delay": 2.5},
        metadata={"x_gateway": {"max_concurrency": 1}})
    await anyio.sleep(4.5)
    await client.crons.update(cron["cron_id"], enabled=False)
    await client.crons.update(via_sdk["cron_id"], enabled=False)
    data = server.config.parent / "data"
    for cron_id in (cron["cron_id"], via_sdk["cron_id"]):
        outcomes = [o for _, _, o in fires(data, cron_id)]
        assert outcomes.count("created") in (1, 2) and "skipped" in outcomes, outcomes
    for bad, field in (({"max_concurrency": 0}, "max_concurrency"),
                       ({"on_max_concurrency": "wait"}, "on_max_concurrency"),
                       ({"retry": {"on": ["success"]}}, "retry.on"),
                       ({"retry": {"max_attempts": 0}}, "retry.max_attempts")):
        r = await raw.post("/runs/crons", json={"assistant_id": "echo", "schedule": "@daily",
                                                **bad})
        assert r.status_code == 422 and field in r.json()["detail"], (bad, r.text)
        r = await raw.patch(f"/runs/crons/{cron['cron_id']}", json=bad)
        assert r.status_code == 422 and field in r.json()["detail"], (bad, r.text)


async def test_queued_ticks_wait_for_the_active_run(server: GatewayProcess) -> None:
    """``on_max_concurrency: queue``: no tick is skipped; the next fire waits for the run."""
    client = get_client(url=server.url)
    r = await client.http.client.post("/runs/crons", json={
        "assistant_id": "echo", "schedule": "@every 1s", "input": user("q"),
        "context": {"delay": 1.5}, "max_concurrency": 1, "on_max_concurrency": "queue"})
    cron = r.json()
    await anyio.sleep(5)
    await client.crons.update(cron["cron_id"], enabled=False)
    outcomes = [o for _, _, o in fires(server.config.parent / "data", cron["cron_id"])]
    assert "skipped" not in outcomes and 2 <= outcomes.count("created") <= 3, outcomes


async def test_a_failed_run_is_retried_with_backoff(server: GatewayProcess) -> None:
    client = get_client(url=server.url)
    thread_id = str((await client.threads.create())["thread_id"])
    when = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    r = await client.http.client.post(f"/threads/{thread_id}/runs/crons", json={
        "assistant_id": "fail", "schedule": f"@at {when}", "input": user("again"),
        "retry": {"max_attempts": 3, "initial_delay_s": 0.2, "max_delay_s": 0.4}})
    assert r.status_code == 200, r.text
    runs = await wait_for(lambda: runs_of(client, thread_id),
                          lambda rs: len(rs) == 3 and all(x["status"] == "error" for x in rs),
                          15, "three failed attempts")
    await anyio.sleep(1.5)
    assert len(await runs_of(client, thread_id)) == 3  # max_attempts: no fourth
    outcomes = [o for _, _, o in fires(server.config.parent / "data", r.json()["cron_id"])]
    assert outcomes == ["created", "retried", "retried"]
    assert {run["kwargs"]["config"]["configurable"]["cron_id"] for run in runs} == {
        r.json()["cron_id"]}


async def test_a_cron_with_context_fires(server: GatewayProcess) -> None:
    """The cron's own ``cron_id`` in ``configurable`` is not the user's ``configurable``: a
    cron with ``context`` fires (it failed every fire with 'Cannot specify both configurable
    and context'); a cron with both is refused when written (400), not at every fire."""
    client = get_client(url=server.url)
    thread_id = str((await client.threads.create())["thread_id"])
    await client.crons.create_for_thread(thread_id, "echo", schedule="@every 1s",
                                         input=user("ctx"), context={"delay": 0})
    runs = await wait_for(lambda: runs_of(client, thread_id), lambda r: len(r) >= 1, 10,
                          "a fire")
    assert runs[0]["kwargs"]["context"] == {"delay": 0}
    r = await client.http.client.post("/runs/crons", json={
        "assistant_id": "echo", "schedule": "@daily", "context": {"delay": 0},
        "config": {"configurable": {"delay": 0}}})
    assert r.status_code == 400 and "Cannot specify both" in r.json()["detail"]


@pytest.mark.timeout(60)
async def test_the_scheduled_agent_example(server: GatewayProcess) -> None:
    """``examples/schedule_report.py`` against a gateway: two fires of ``report_agent``."""
    import sys

    from tests.server import ROOT

    with anyio.fail_after(40):
        done = await anyio.run_process(
            [sys.executable, str(ROOT / "examples/schedule_report.py"), "--url", server.url,
             "--schedule", "@every 1s", "--fires", "2", "--note", "all green"], check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, (out, done.stderr.decode())
    assert "Report #1 (" in out and "Report #2 (" in out, out
    assert "1 note(s) so far; last: all green" in out
    client = get_client(url=server.url)
    assert await client.crons.count() == 0  # the script deleted its cron
