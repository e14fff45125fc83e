"""Crash recovery: SIGKILL a gateway with runs in flight, start a new one on the same data.

Issue 4 ("durable runs"): the store is the truth, so after a crash every accepted run is executed
again from its last checkpoint (``attempt`` + 1, at most ``max_attempts``), queued runs keep their
order, threads end ``idle``, no node output is applied twice, and clients that re-join
(``runs.join``, ``runs.join_stream``) see the runs finish. Joining a run that finished before the
restart returns at once.

The ``steps`` graph (``first -> second -> third``, each node sleeping ``delay`` seconds and
appending ``"<node>: <input>"``) places the kill: right after the creates returned (wherever the
runs are: the store of the dead process says, and the expected attempts follow from it), while a
run executes with no checkpoint yet (``durability="exit"``), mid-run, or while the last node runs.
Every kill point is verified before (API) and after (the SQLite files of the dead process) the
kill, so a test never passes by killing at the wrong moment.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.server import GatewayProcess

MakeGateway = Callable[..., GatewayProcess]

NODE_DELAY_S = 1.5  # each node of a slow run; a kill lands inside one of these sleeps
QUICK = {"configurable": {"delay": 0.05}}
SLOW = {"configurable": {"delay": NODE_DELAY_S}}
RECOVERY_DEADLINE_S = 30.0
AT_ONCE_S = 3.0  # a join on a finished run answers within this


# ---- helpers (also used by test_shutdown.py) ---------------------------------------------


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def contents(values: dict[str, Any] | None) -> list[tuple[str, str]]:
    return [(m["type"], m["content"]) for m in (values or {}).get("messages", [])]


def steps_answer(*inputs: str) -> list[tuple[str, str]]:
    """The messages of ``steps`` runs on one thread, each input exactly once, in order."""
    out: list[tuple[str, str]] = []
    for text in inputs:
        out += [("human", text), ("ai", f"first: {text}"), ("ai", f"second: {text}"),
                ("ai", f"third: {text}")]
    return out


async def poll(fetch: Callable[[], Awaitable[Any]], done: Callable[[Any], bool],
               timeout_s: float, what: str) -> Any:
    """Call ``fetch()`` until ``done(result)``; fail after ``timeout_s`` with the last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await fetch()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {result!r}")
        await anyio.sleep(0.03)


async def wait_terminal(client: LangGraphClient, thread_id: str, run_id: str,
                        timeout_s: float = RECOVERY_DEADLINE_S) -> dict[str, Any]:
    run: dict[str, Any] = await poll(
        lambda: client.runs.get(thread_id, run_id),
        lambda r: r["status"] not in ("pending", "running"), timeout_s,
        f"run {run_id} to finish")
    return run


async def wait_state_next(client: LangGraphClient, thread_id: str, nxt: list[str],
                          timeout_s: float = 15.0) -> dict[str, Any]:
    state: dict[str, Any] = await poll(
        lambda: client.threads.get_state(thread_id), lambda s: s["next"] == nxt, timeout_s,
        f"thread {thread_id} to reach next={nxt}")
    return state


def stored_runs(data_dir: Path) -> dict[str, tuple[str, int]]:
    """``{run_id: (status, attempt)}`` as a dead process left them in ``gateway.sqlite``."""
    with sqlite3.connect(data_dir / "gateway.sqlite") as db:
        rows = db.execute("SELECT run_id, status, attempt FROM runs").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def stored_checkpoints(data_dir: Path, thread_id: str) -> int:
    with sqlite3.connect(data_dir / "checkpoints.sqlite") as db:
        row = db.execute("SELECT COUNT(*) FROM checkpoints WHERE thread_id = ?",
                         (thread_id,)).fetchone()
    return int(row[0])


def expected_attempt(status_at_kill: str, attempt_at_kill: int) -> int:
    """A run left ``running`` is executed again (attempt + 1); a ``pending`` one never ran."""
    return attempt_at_kill + 1 if status_at_kill == "running" else attempt_at_kill


async def collect_stream(client: LangGraphClient, thread_id: str, run_id: str,
                         last_event_id: str | None) -> list[tuple[str, Any, str | None]]:
    return [(p.event, p.data, p.id) async for p in client.runs.join_stream(
        thread_id, run_id, last_event_id=last_event_id)]


async def rejoin(client: LangGraphClient, thread_id: str, run_id: str) -> dict[str, Any]:
    """What a client that re-joins a run sees: ``runs.join`` and ``join_stream`` from -1."""
    out: dict[str, Any] = {}

    async def join() -> None:
        out["join"] = await client.runs.join(thread_id, run_id)

    async def stream() -> None:
        out["stream"] = await collect_stream(client, thread_id, run_id, "-1")

    async with anyio.create_task_group() as tg:
        tg.start_soon(join)
        tg.start_soon(stream)
    return out


def assert_rejoin_saw_finish(seen: dict[str, Any], run_id: str, text: str,
                             attempt: int) -> None:
    answer = ("ai", f"third: {text}")
    assert contents(seen["join"])[-1] == answer, seen["join"]
    events = seen["stream"]
    assert events, f"join_stream of {run_id} from -1 yielded nothing"
    name, data, _ = events[0]
    assert name == "metadata", events[0]
    assert data == {"run_id": run_id, "attempt": attempt}, data
    assert not [e for e in events if e[0] == "error"], events
    last_values = [e[1] for e in events if e[0] == "values"][-1]
    assert contents(last_values)[-1] == answer, last_values


def checkpoints_of(history: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    return [h for h in history if h["metadata"].get("run_id") == run_id]


# ---- 1. SIGKILL at several points ----------------------------------------------------------


async def place_kill(kill_point: str, client: LangGraphClient, thread_a: str, thread_b: str,
                     r1: str, r3: str) -> None:
    """Return once R1 (thread A) has reached ``kill_point``; R3 (thread B) is running too."""
    if kill_point == "just_admitted":
        return  # kill right after the creates returned; the store tells where they were
    for thread_id, run_id in ((thread_a, r1), (thread_b, r3)):
        await poll(lambda t=thread_id, r=run_id: client.runs.get(t, r),
                   lambda r: r["status"] == "running", 10, f"run {run_id} to start")
    if kill_point == "before_first_checkpoint":
        # durability="exit": R1 runs `first`, and no checkpoint of thread A exists yet
        assert await client.threads.get_history(thread_a) == []
    elif kill_point == "mid_run":
        state = await wait_state_next(client, thread_a, ["second"])
        assert state["metadata"]["run_id"] == r1 and state["metadata"]["step"] >= 1
        assert contents(state["values"]) == [("human", "r1"), ("ai", "first: r1")]
    elif kill_point == "last_node":
        state = await wait_state_next(client, thread_a, ["third"])
        assert state["metadata"]["run_id"] == r1
        assert contents(state["values"])[-1] == ("ai", "second: r1")
    else:  # pragma: no cover
        raise AssertionError(kill_point)


@pytest.mark.anyio
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "kill_point", ["just_admitted", "before_first_checkpoint", "mid_run", "last_node"])
async def test_runs_recover_after_sigkill(make_gateway: MakeGateway, kill_point: str) -> None:
    a = make_gateway().start()
    data_dir = a.config.parent / "data"
    client = get_client(url=a.url)
    thread_a = (await client.threads.create(graph_id="steps"))["thread_id"]
    thread_b = (await client.threads.create(graph_id="steps"))["thread_id"]
    durability = "exit" if kill_point == "before_first_checkpoint" else None
    r1 = (await client.runs.create(thread_a, "steps", input=user("r1"), config=SLOW,
                                   durability=durability))["run_id"]
    r2 = (await client.runs.create(thread_a, "steps", input=user("r2"),
                                   config=QUICK))["run_id"]  # enqueue (default) behind R1
    r3 = (await client.runs.create(thread_b, "steps", input=user("r3"), config=SLOW))["run_id"]
    await place_kill(kill_point, client, thread_a, thread_b, r1, r3)
    a.kill()

    at_kill = stored_runs(data_dir)
    assert at_kill[r2] == ("pending", 1), at_kill  # queued behind R1
    if kill_point != "just_admitted":
        assert at_kill[r1] == ("running", 1) and at_kill[r3] == ("running", 1), at_kill
    if kill_point == "before_first_checkpoint":
        assert stored_checkpoints(data_dir, thread_a) == 0
    attempts = {run_id: expected_attempt(*at_kill[run_id]) for run_id in (r1, r2, r3)}

    b = make_gateway().start()
    client_b = get_client(url=b.url)
    seen: dict[str, dict[str, Any]] = {}

    async def rejoin_into(thread_id: str, run_id: str) -> None:
        seen[run_id] = await rejoin(client_b, thread_id, run_id)

    with anyio.fail_after(RECOVERY_DEADLINE_S):
        async with anyio.create_task_group() as tg:  # clients re-join as soon as B is up
            for thread_id, run_id in ((thread_a, r1), (thread_a, r2), (thread_b, r3)):
                tg.start_soon(rejoin_into, thread_id, run_id)
    for thread_id, run_id in ((thread_a, r1), (thread_a, r2), (thread_b, r3)):
        final = await wait_terminal(client_b, thread_id, run_id, 5)
        assert final["status"] == "success", (run_id, final)

    for run_id, text in ((r1, "r1"), (r2, "r2"), (r3, "r3")):
        assert_rejoin_saw_finish(seen[run_id], run_id, text, attempts[run_id])

    # every input once, every node output once, R2 entirely after R1
    thread = await client_b.threads.get(thread_a)
    assert thread["status"] == "idle", thread
    assert contents(thread["values"]) == steps_answer("r1", "r2")
    thread = await client_b.threads.get(thread_b)
    assert thread["status"] == "idle", thread
    assert contents(thread["values"]) == steps_answer("r3")

    history = await client_b.threads.get_history(thread_a, limit=100)
    of_r1, of_r2 = checkpoints_of(history, r1), checkpoints_of(history, r2)
    assert of_r1 and of_r2
    assert max(h["created_at"] for h in of_r1) < min(h["created_at"] for h in of_r2)
    steps_r1 = [h["metadata"]["step"] for h in of_r1]
    assert len(steps_r1) == len(set(steps_r1)), f"R1 restarted instead of resumed: {steps_r1}"
    assert of_r1[0]["metadata"]["run_attempt"] == attempts[r1]  # R1's final checkpoint
    assert {h["metadata"]["run_attempt"] for h in of_r2} == {attempts[r2]}
    assert len(await client_b.runs.list(thread_a)) == 2
    assert len(await client_b.runs.list(thread_b)) == 1


# ---- 2. max_attempts ------------------------------------------------------------------------


async def first_event(client: LangGraphClient, thread_id: str, run_id: str) -> tuple[str, Any]:
    """The first event of the run's log (join_stream from -1), without waiting for the end."""
    async with aclosing(client.runs.join_stream(thread_id, run_id, last_event_id="-1")) as it:
        async for part in it:
            return part.event, part.data
    raise AssertionError(f"join_stream of {run_id} from -1 yielded nothing")


@pytest.mark.anyio
@pytest.mark.timeout(60)
@pytest.mark.parametrize("max_attempts", [1, 2])
async def test_run_over_max_attempts_ends_error(
    make_gateway: MakeGateway, max_attempts: int,
) -> None:
    server = make_gateway(max_attempts=max_attempts).start()
    data_dir = server.config.parent / "data"
    client = get_client(url=server.url)
    thread_id = (await client.threads.create(graph_id="steps"))["thread_id"]
    run_id = (await client.runs.create(thread_id, "steps", input=user("doomed"),
                                       config=SLOW))["run_id"]
    for attempt in range(1, max_attempts + 1):
        # attempt `attempt` is executing `second` (`first` is checkpointed): kill it there
        await wait_state_next(client, thread_id, ["second"])
        await poll(lambda c=client: c.runs.get(thread_id, run_id),
                   lambda r: r["status"] == "running", 10, "the run to execute")
        assert await first_event(client, thread_id, run_id) == (
            "metadata", {"run_id": run_id, "attempt": attempt})
        server.kill()
        assert stored_runs(data_dir)[run_id] == ("running", attempt)
        server = make_gateway(max_attempts=max_attempts).start()
        client = get_client(url=server.url)

    run = await wait_terminal(client, thread_id, run_id, 10)
    assert run["status"] == "error", run
    thread = await poll(lambda: client.threads.get(thread_id),
                        lambda t: t["status"] != "busy", 10, "the thread to leave busy")
    assert thread["status"] == "error", thread
    message = str(thread.get("error", {}).get("message", "")).lower()
    assert "attempt" in message or "crash" in message, thread.get("error")

    with anyio.fail_after(AT_ONCE_S):
        joined = await client.runs.join(thread_id, run_id)
    assert "__error__" in joined, joined
    why = joined["__error__"]["message"].lower()
    assert "attempt" in why or "crash" in why, joined
    with anyio.fail_after(AT_ONCE_S):
        events = await collect_stream(client, thread_id, run_id, "-1")
    assert [e for e in events if e[0] not in ("metadata", "values", "error")] == [], events
    # not executed a further time: the state is what the first attempt checkpointed
    state = await client.threads.get_state(thread_id)
    assert contents(state["values"]) == [("human", "doomed"), ("ai", "first: doomed")]
    assert stored_runs(data_dir)[run_id] == ("error", max_attempts)


# ---- 3. re-joining with a Last-Event-ID from the dead process --------------------------------


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_resume_with_last_event_id_of_killed_process(make_gateway: MakeGateway) -> None:
    """A client streaming from A re-joins B with the last id it saw (as the SDK does on a
    reconnect): it must get the new attempt from its start (or an explicit gap), never a silent
    partial replay that skips the new attempt's first events (design.md 4.4)."""
    a = make_gateway().start()
    client = get_client(url=a.url)
    thread_id = (await client.threads.create(graph_id="steps"))["thread_id"]
    run_id = (await client.runs.create(thread_id, "steps", input=user("r"),
                                       config=SLOW))["run_id"]
    seen_on_a: list[tuple[str, Any, str | None]] = []

    async def follow_a() -> None:
        try:
            async for p in client.runs.join_stream(thread_id, run_id, last_event_id="-1"):
                seen_on_a.append((p.event, p.data, p.id))
        except httpx.HTTPError:
            pass  # the kill cuts the stream

    async with anyio.create_task_group() as tg:
        tg.start_soon(follow_a)
        await wait_state_next(client, thread_id, ["third"])

        async def events_on_a() -> list[tuple[str, Any, str | None]]:
            return list(seen_on_a)

        await poll(events_on_a, lambda events: any(
            e[0] == "values" and contents(e[1])[-1:] == [("ai", "second: r")]
            for e in events), 5, "A's stream to show `second`")
        a.kill()
        tg.cancel_scope.cancel()  # the SDK would keep reconnecting to the dead process
    last_id = seen_on_a[-1][2]
    assert last_id is not None and len(seen_on_a) >= 4, seen_on_a

    b = make_gateway().start()
    client_b = get_client(url=b.url)
    with anyio.fail_after(RECOVERY_DEADLINE_S):
        resumed = await collect_stream(client_b, thread_id, run_id, last_id)
    run = await wait_terminal(client_b, thread_id, run_id, 5)
    assert run["status"] == "success"
    full = await collect_stream(client_b, thread_id, run_id, "-1")  # attempt 2's whole log
    assert full[0][0] == "metadata" and full[0][1]["attempt"] == 2, full[:1]
    assert resumed, "the resumed stream yielded nothing"
    assert contents([e[1] for e in resumed if e[0] == "values"][-1])[-1] == ("ai", "third: r")
    if resumed[0][0] != "gap":
        assert [e[:2] for e in resumed] == [e[:2] for e in full], (
            f"resumed with Last-Event-ID {last_id} from the dead process: got "
            f"{[(e[0], e[2]) for e in resumed]}, attempt 2's log is "
            f"{[(e[0], e[2]) for e in full]}")


# ---- 4. join after restart -------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_join_finished_run_after_restart_returns_at_once(
    make_gateway: MakeGateway,
) -> None:
    a = make_gateway().start()
    client = get_client(url=a.url)
    thread_id = (await client.threads.create())["thread_id"]
    await client.runs.wait(thread_id, "echo", input=user("one"))
    last = [p async for p in client.runs.stream(thread_id, "echo", input=user("two"))]
    run_id = last[0].data["run_id"]
    last_id = last[-1].id
    final_values = last[-1].data
    failed_thread = (await client.threads.create())["thread_id"]
    failed = await client.runs.create(failed_thread, "fail", input=user("boom"))
    await client.runs.join(failed_thread, failed["run_id"])
    a.kill()

    b = make_gateway().start()
    client_b = get_client(url=b.url)
    with anyio.fail_after(AT_ONCE_S):
        joined = await client_b.runs.join(thread_id, run_id)
    assert joined == final_values
    assert contents(joined)[-1] == ("ai", "echo: two")
    with anyio.fail_after(AT_ONCE_S):
        joined_failed = await client_b.runs.join(failed_thread, failed["run_id"])
    assert "__error__" in joined_failed, joined_failed

    for last_event_id in (None, "-1", last_id):
        with anyio.fail_after(AT_ONCE_S):  # ends at once, no heartbeat-only hang
            events = await collect_stream(client_b, thread_id, run_id, last_event_id)
        assert not [e for e in events if e[0] == "error"], (last_event_id, events)
        values = [e[1] for e in events if e[0] == "values"]
        if values:  # a replay, if any, ends with the final values
            assert values[-1] == final_values
    assert (await client_b.runs.get(thread_id, run_id))["status"] == "success"
