"""One gateway process on PostgreSQL + Redis (``database_url``, ``redis_url``): the official
clients see the same gateway as on SQLite. Real PostgreSQL and Redis on this machine, a
database and a key prefix of this test's own (tests/services.py).

With both URLs the process runs in cluster mode (runtime/runs/cluster.py) even alone; the
multi-process tests are tests/e2e/test_cluster.py. PostgreSQL without Redis is one process.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import redis
from langgraph_sdk import get_client

from tests.e2e.test_js_sdk import node_binary, run_js_suite
from tests.server import ROOT, GatewayProcess, free_port

pytestmark = pytest.mark.anyio
MakeGateway = Callable[..., GatewayProcess]


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture
def engines(pg_url: str, redis_prefix: tuple[str, str]) -> dict[str, str]:
    redis_url, prefix = redis_prefix
    return {"database_url": pg_url, "redis_url": redis_url, "redis_key_prefix": prefix}


@pytest.mark.timeout(90)
async def test_threads_runs_streams_on_postgres_and_redis(
    make_gateway: MakeGateway, engines: dict[str, str],
) -> None:
    server = make_gateway(**engines).start()
    client = get_client(url=server.url)
    thread_id = str((await client.threads.create(metadata={"team": "a"}))["thread_id"])

    streamed = [(p.event, p.data) async for p in client.runs.stream(
        thread_id, "echo", input=user("hi"), stream_mode=["values", "custom"])]
    assert [e for e, _ in streamed] == ["metadata", "values", "custom", "custom", "values"]
    assert streamed[-1][1]["messages"][-1]["content"] == "echo: hi"

    run = await client.runs.create(thread_id, "echo", input=user("again"),
                                   config={"configurable": {"delay": 0.3}})
    joined = [p.event async for p in client.runs.join_stream(thread_id, run["run_id"])]
    assert joined[0] == "metadata" and joined[-1] == "values"
    failed = await client.runs.wait(thread_id, "fail", input=user("no"), raise_error=False)
    assert failed == {"__error__": {"error": "ValueError", "message": "deliberate failure: no"}}

    assert (await client.threads.get(thread_id))["status"] == "error"
    assert [t["thread_id"] for t in await client.threads.search(metadata={"team": "a"})] == [
        thread_id]
    history = await client.threads.get_history(thread_id, limit=100)
    assert len(history) >= 6
    copy = await client.threads.copy(thread_id)
    state = await client.threads.get_state(copy["thread_id"])
    assert [m["content"] for m in state["values"]["messages"]][:4] == [
        "hi", "echo: hi", "again", "echo: again"]

    # the run's stream went through Redis, under this test's prefix
    redis_url, prefix = engines["redis_url"], engines["redis_key_prefix"]
    keys = redis.Redis.from_url(redis_url).keys(prefix + "*")
    assert any(run["run_id"].encode() in k for k in keys), keys


@pytest.mark.timeout(90)
async def test_rollback_and_interrupt_on_postgres(
    make_gateway: MakeGateway, engines: dict[str, str],
) -> None:
    server = make_gateway(**engines).start()
    client = get_client(url=server.url)
    thread_id = str((await client.threads.create())["thread_id"])
    await client.runs.wait(thread_id, "echo", input=user("kept"))
    first = await client.runs.create(thread_id, "echo", input=user("dropped"),
                                     config={"configurable": {"delay": 5}})
    second = await client.runs.create(thread_id, "echo", input=user("next"),
                                      multitask_strategy="rollback")
    await client.runs.join(thread_id, second["run_id"])
    state = await client.threads.get_state(thread_id)
    assert [m["content"] for m in state["values"]["messages"]] == [
        "kept", "echo: kept", "next", "echo: next"]
    runs = {r["run_id"]: r["status"] for r in await client.runs.list(thread_id)}
    assert first["run_id"] not in runs and runs[second["run_id"]] == "success"


@pytest.mark.timeout(120)
async def test_killed_gateway_recovers_its_run_from_postgres(
    make_gateway: MakeGateway, engines: dict[str, str],
) -> None:
    """The one process is SIGKILLed mid-run; a new one on the same database and Redis takes
    the run over once its lease expired (the sweep, not a start-up recovery), from its last
    checkpoint."""
    first = make_gateway(lease_s=2, **engines).start()
    client = get_client(url=first.url)
    thread_id = str((await client.threads.create())["thread_id"])
    run = await client.runs.create(thread_id, "steps", input=user("once"),
                                   config={"configurable": {"delay": 1.0}})
    with anyio.fail_after(20):  # the first node's checkpoint is written
        while True:
            state = await client.threads.get_state(thread_id)
            if state["next"] == ["second"] or state["next"] == ["third"]:
                break
            await anyio.sleep(0.05)
    first.kill()
    second = make_gateway(lease_s=2, **engines).start()
    client = get_client(url=second.url)
    with anyio.fail_after(30):
        await client.runs.join(thread_id, run["run_id"])
    finished = await client.runs.get(thread_id, run["run_id"])
    assert finished["status"] == "success"
    state = await client.threads.get_state(thread_id)
    assert [m["content"] for m in state["values"]["messages"]] == [
        "once", "first: once", "second: once", "third: once"]  # no node ran twice
    events = [p async for p in client.runs.join_stream(thread_id, run["run_id"],
                                                       last_event_id="-1")]
    assert events[0].data == {"run_id": run["run_id"], "attempt": 2}


@pytest.mark.timeout(60)
async def test_postgres_without_redis_is_one_process(
    make_gateway: MakeGateway, pg_url: str,
) -> None:
    """Without Redis, cancels and streams have no way between processes: a second process
    on the database is refused (exit 2, one line), and the first goes on."""
    first = make_gateway(database_url=pg_url).start()
    with anyio.fail_after(30):
        refused = await anyio.run_process(
            [sys.executable, "-m", "gateway", "serve", "--config", str(first.config),
             "--port", str(free_port())], cwd=ROOT, check=False)
    assert refused.returncode == 2, refused.stderr
    assert b"in use by another gateway" in refused.stderr
    assert b"redis_url" in refused.stderr
    client = get_client(url=first.url)
    thread_id = str((await client.threads.create())["thread_id"])
    body = await client.runs.wait(thread_id, "echo", input=user("still here"))
    assert body["messages"][-1]["content"] == "echo: still here"


@pytest.mark.skipif(node_binary() is None, reason="node is not installed")
@pytest.mark.timeout(300)
def test_js_sdk_suite_on_postgres_and_redis(
    make_gateway: MakeGateway, engines: dict[str, str],
) -> None:
    """The whole JS SDK suite (2.x) against a gateway on PostgreSQL + Redis."""
    server = make_gateway(**engines).start()
    run_js_suite(server.url, server_log=server.log)


@pytest.mark.timeout(60)
async def test_an_output_with_u0000_on_postgres(
    make_gateway: MakeGateway, engines: dict[str, str],
) -> None:
    """jsonb refuses U+0000. A run whose output holds it must still finish (not stay
    ``running``); the state endpoints answer it exactly (the checkpointer keeps it), the
    thread's stored copy has U+FFFD, and the thread goes on."""
    server = make_gateway(**engines).start()
    client = get_client(url=server.url)
    thread_id = str((await client.threads.create())["thread_id"])
    with anyio.fail_after(20):
        body = await client.runs.wait(thread_id, "nul_output", input=user("x"))
    assert body["messages"][-1]["content"] == "nul:\x00:end"
    assert [r["status"] for r in await client.runs.list(thread_id)] == ["success"]
    state = await client.threads.get_state(thread_id)
    assert state["values"]["messages"][-1]["content"] == "nul:\x00:end"
    thread = await client.threads.get(thread_id)
    assert thread["values"]["messages"][-1]["content"] == "nul:\ufffd:end"
    after = await client.runs.wait(thread_id, "echo", input=user("next"))
    assert after["messages"][-1]["content"] == "echo: next"
    r = await client.http.client.post("/threads", json={"metadata": {"k": "\x00"}})
    assert r.status_code == 422 and "U+0000" in r.json()["detail"]


@pytest.mark.timeout(60)
async def test_join_after_the_stream_expired_on_redis(
    make_gateway: MakeGateway, engines: dict[str, str],
) -> None:
    """After ``stream_retention_s`` the Redis stream is gone too: a fresh join of a failed run
    gets its stored error at once, a join of a finished run ends at once."""
    server = make_gateway(stream_retention_s=0.3, **engines).start()
    client = get_client(url=server.url)
    thread_id = str((await client.threads.create())["thread_id"])
    failed = await client.runs.create(thread_id, "fail", input=user("gone"))
    await client.runs.join(thread_id, failed["run_id"])
    redis_client = redis.Redis.from_url(engines["redis_url"])
    key = f"{engines['redis_key_prefix']}run:{failed['run_id']}"
    with anyio.fail_after(10):  # retention over: the stream expired in Redis
        while True:
            if not redis_client.exists(key):
                break
            await anyio.sleep(0.1)
    with anyio.fail_after(3):
        events = [(p.event, p.data) async for p in client.runs.join_stream(
            thread_id, failed["run_id"])]
    assert events == [("error", {"error": "ValueError", "message": "deliberate failure: gone"})]
