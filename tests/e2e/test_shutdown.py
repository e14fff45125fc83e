"""Graceful shutdown: SIGTERM during runs, then a restart on the same data (and port).

Issue 4: at SIGTERM the gateway stops admitting runs (503 with a clear detail), gives running
runs ``shutdown_timeout_s`` to finish, puts the rest back to ``pending`` (not a user cancel, not
a failed attempt: ``attempt`` stays 1), ends open streams and exits. No request made during the
shutdown gets a 500. The next process resumes the runs, and clients that reconnect (the SDK
retries ``runs.stream`` and ``runs.wait`` on its own) see them finish.

The restarted gateway listens on the SAME port as the stopped one, so the SDK's own reconnects
reach it, as they would reach a restarted server in production.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.e2e.test_crash_recovery import (
    collect_stream,
    contents,
    poll,
    steps_answer,
    stored_runs,
    user,
    wait_terminal,
)
from tests.server import GatewayProcess

MakeGateway = Callable[..., GatewayProcess]

SHUTDOWN_TIMEOUT_S = 1.0
EXIT_SLACK_S = 4.0  # "shutdown_timeout_s + a few seconds"
LONG = {"configurable": {"delay": 2.0}}  # 3 nodes x 2 s: cannot finish within the timeout


@pytest.fixture
def same_port() -> Iterator[Callable[[GatewayProcess], GatewayProcess]]:
    """Start a new gateway on the config, data folder and port of a stopped one."""
    started: list[GatewayProcess] = []

    def restart(old: GatewayProcess) -> GatewayProcess:
        assert old.proc is not None and old.proc.poll() is not None, "stop the old one first"
        server = GatewayProcess(old.config, port=old.port)
        started.append(server)
        return server.start()

    yield restart
    for server in started:
        server.kill()


async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll a condition on the test's own state under a deadline."""

    async def check() -> bool:
        await anyio.lowlevel.checkpoint()
        return condition()

    await poll(check, bool, timeout_s, what)


async def wait_exit(server: GatewayProcess, timeout_s: float) -> int:
    proc = server.proc
    assert proc is not None
    await until(lambda: proc.poll() is not None, timeout_s, "the process to exit")
    return int(proc.returncode)


async def wait_running(client: LangGraphClient, thread_id: str, run_id: str) -> None:
    await poll(lambda: client.runs.get(thread_id, run_id),
               lambda r: r["status"] == "running", 10, f"run {run_id} to start")


async def first_attempt_seen(client: LangGraphClient, thread_id: str, run_id: str) -> Any:
    """The ``attempt`` of the run's ``metadata`` event (its log replayed from -1)."""
    events = await collect_stream(client, thread_id, run_id, "-1")
    assert events and events[0][0] == "metadata", events[:1]
    return events[0][1]["attempt"]


@dataclass
class Outcome:
    """One request made around the SIGTERM."""

    at: float
    method: str
    status: int | None  # None: no HTTP response (connection refused / closed)
    error: str = ""
    body: str = ""


async def hammer(url: str, requests: list[tuple[str, str, dict[str, Any] | None]],
                 out: list[Outcome], stop: anyio.Event) -> None:
    """Send ``requests`` round-robin until ``stop``; record every outcome."""
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as http:
        while not stop.is_set():
            for method, path, body in requests:
                try:
                    resp = await http.request(method, path, json=body)
                    out.append(Outcome(time.monotonic(), method, resp.status_code,
                                       body=resp.text[:300]))
                except httpx.TimeoutException as exc:  # a hang, not a refusal
                    out.append(Outcome(time.monotonic(), method, -1, type(exc).__name__))
                except httpx.TransportError as exc:
                    out.append(Outcome(time.monotonic(), method, None, type(exc).__name__))
            await anyio.sleep(0.01)


def check_shutdown_outcomes(outcomes: list[Outcome], signalled_at: float) -> None:
    """POST (new run): 200 until the signal is processed, then 503, then refused; GET: 200 or
    refused. Never a 5xx but 503, never a hang."""
    bad = [o for o in outcomes if o.status is not None and (
        o.status == -1 or (o.method == "GET" and o.status != 200)
        or (o.method == "POST" and o.status not in (200, 503)))]
    assert not bad, bad
    posts = [o for o in outcomes if o.method == "POST"]
    assert posts and posts[0].status == 200 and posts[0].at < signalled_at
    refused = [i for i, o in enumerate(posts) if o.status != 200]
    assert refused, "no request was refused: the poller stopped too early"
    late_ok = [o for o in posts[refused[0]:] if o.status == 200]
    assert not late_ok, f"a run was admitted after the shutdown had refused one: {late_ok}"
    for o in posts:
        if o.status == 503:
            assert o.at >= signalled_at
            assert "shut" in o.body.lower(), o.body  # a clear detail


@pytest.mark.anyio
@pytest.mark.timeout(90)
async def test_sigterm_requeues_running_runs_and_refuses_new_ones(
    make_gateway: MakeGateway, same_port: Callable[[GatewayProcess], GatewayProcess],
) -> None:
    a = make_gateway(shutdown_timeout_s=SHUTDOWN_TIMEOUT_S).start()
    client = get_client(url=a.url)
    thread_r = (await client.threads.create(graph_id="steps"))["thread_id"]
    thread_s = (await client.threads.create(graph_id="steps"))["thread_id"]
    thread_c = (await client.threads.create(graph_id="echo"))["thread_id"]
    run_r = (await client.runs.create(thread_r, "steps", input=user("r"), config=LONG))["run_id"]

    streamed: list[Any] = []  # runs.stream of run S (the creator's stream)
    joined_r: list[Any] = []  # join_stream of run R
    ends: dict[str, tuple[float, str]] = {}

    async def stream_s() -> None:
        try:
            async for part in client.runs.stream(thread_s, "steps", input=user("s"),
                                                 config=LONG):
                streamed.append(part)
            ends["stream"] = (time.monotonic(), "finished")
        except httpx.HTTPError as exc:
            ends["stream"] = (time.monotonic(), repr(exc))

    async def join_stream_r() -> None:
        try:
            async for part in client.runs.join_stream(thread_r, run_r, last_event_id="-1"):
                joined_r.append(part)
            ends["join_stream"] = (time.monotonic(), "finished")
        except httpx.HTTPError as exc:
            ends["join_stream"] = (time.monotonic(), repr(exc))

    outcomes: list[Outcome] = []
    stop = anyio.Event()
    new_run = {"assistant_id": "echo", "input": user("c")}
    requests = [("POST", f"/threads/{thread_c}/runs", new_run),
                ("GET", f"/threads/{thread_r}/runs/{run_r}", None)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(stream_s)
        tg.start_soon(join_stream_r)
        await until(lambda: bool(streamed) and bool(joined_r), 10, "both streams to start")
        run_s = streamed[0].data["run_id"]
        await wait_running(client, thread_r, run_r)
        await wait_running(client, thread_s, run_s)
        tg.start_soon(hammer, a.url, requests, outcomes, stop)
        await until(lambda: any(o.status == 200 for o in outcomes), 5,
                    "a run admitted before the signal")
        signalled_at = time.monotonic()
        assert a.proc is not None
        a.proc.send_signal(signal.SIGTERM)
        code = await wait_exit(a, SHUTDOWN_TIMEOUT_S + 15)
        exit_s = time.monotonic() - signalled_at
        await anyio.sleep(0.3)  # place: a few requests against the closed port
        stop.set()

        assert code in (0, -signal.SIGTERM), (code, a.log()[-3000:])
        assert exit_s <= SHUTDOWN_TIMEOUT_S + EXIT_SLACK_S, f"exit took {exit_s:.1f}s"
        # both streams were cut (not ended cleanly); each carries a Location, so the SDK
        # keeps reconnecting with Last-Event-ID instead of reporting a fake end
        assert "join_stream" not in ends or ends["join_stream"][1] != "finished", ends
        check_shutdown_outcomes(outcomes, signalled_at)
        assert "Traceback" not in a.log(), a.log()[-3000:]

        # the same folder and port: the SDK's runs.stream reconnects on its own
        b = same_port(a)
        client_b = get_client(url=b.url)
        await until(lambda: "stream" in ends, 40, "runs.stream to end after the restart")
        await until(lambda: "join_stream" in ends, 40, "join_stream to end after the restart")
    assert ends["stream"][1] == "finished", ends["stream"]
    assert ends["join_stream"][1] == "finished", ends["join_stream"]
    assert not [p for p in streamed if p.event == "error"], streamed
    assert contents([p.data for p in streamed if p.event == "values"][-1])[-1] == (
        "ai", "third: s")

    for thread_id, run_id, text in ((thread_r, run_r, "r"), (thread_s, run_s, "s")):
        run = await wait_terminal(client_b, thread_id, run_id)
        assert run["status"] == "success", run
        thread = await client_b.threads.get(thread_id)
        assert thread["status"] == "idle", thread
        assert contents(thread["values"]) == steps_answer(text)
        # a shutdown is not a failed attempt
        assert await first_attempt_seen(client_b, thread_id, run_id) == 1
        state = await client_b.threads.get_state(thread_id)
        assert state["metadata"]["run_attempt"] == 1, state["metadata"]

    # every run admitted with a 200 during the window ran once, after the restart if need be
    admitted = sum(1 for o in outcomes if o.method == "POST" and o.status == 200)
    runs_c = await client_b.runs.list(thread_c, limit=100)
    assert len(runs_c) == admitted, (len(runs_c), admitted)
    for run in runs_c:
        assert (await wait_terminal(client_b, thread_c, run["run_id"]))["status"] == "success"
    values_c = (await client_b.threads.get(thread_c))["values"]
    assert contents(values_c).count(("human", "c")) == admitted


@pytest.mark.anyio
@pytest.mark.timeout(90)
@pytest.mark.filterwarnings("ignore:Request failed, attempting reconnect:UserWarning")
async def test_sigterm_with_open_wait_and_join(
    make_gateway: MakeGateway, same_port: Callable[[GatewayProcess], GatewayProcess],
) -> None:
    """``/wait`` and ``/join`` requests open at SIGTERM neither hold the exit past the timeout
    nor get a fake result; ``runs.wait`` (which retries its Location) gets the real one."""
    a = make_gateway(shutdown_timeout_s=SHUTDOWN_TIMEOUT_S).start()
    client = get_client(url=a.url)
    thread_id = (await client.threads.create(graph_id="steps"))["thread_id"]
    results: dict[str, Any] = {}

    async def wait_run() -> None:
        try:
            results["wait"] = await client.runs.wait(thread_id, "steps", input=user("w"),
                                                     config=LONG)
        except httpx.HTTPError as exc:
            results["wait"] = exc

    async def join_run(run_id: str) -> None:
        try:
            results["join"] = await client.runs.join(thread_id, run_id)
        except httpx.HTTPError as exc:
            results["join"] = exc
        results["join_ended"] = time.monotonic()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_run)
        runs = await poll(lambda: client.runs.list(thread_id),
                          lambda rs: bool(rs) and rs[0]["status"] == "running", 10,
                          "the /wait run to start")
        run_id = runs[0]["run_id"]
        tg.start_soon(join_run, run_id)
        await poll(lambda: client.threads.get_state(thread_id), lambda s: s["next"] == ["first"],
                   10, "the first checkpoint")
        signalled_at = time.monotonic()
        assert a.proc is not None
        a.proc.send_signal(signal.SIGTERM)
        code = await wait_exit(a, SHUTDOWN_TIMEOUT_S + 15)
        exit_s = time.monotonic() - signalled_at
        assert code in (0, -signal.SIGTERM), (code, a.log()[-3000:])
        assert exit_s <= SHUTDOWN_TIMEOUT_S + EXIT_SLACK_S, (
            f"exit took {exit_s:.1f}s with /wait and /join open")
        await until(lambda: "join_ended" in results, 5, "the open /join to end")
        joined = results["join"]
        # the run did not finish: a result here would be a fake end
        assert isinstance(joined, httpx.TransportError), joined

        b = same_port(a)
        await until(lambda: "wait" in results, 40, "runs.wait to return after the restart")
    waited = results["wait"]
    assert isinstance(waited, dict), waited
    assert contents(waited) == steps_answer("w")
    client_b = get_client(url=b.url)
    assert (await wait_terminal(client_b, thread_id, run_id))["status"] == "success"
    assert await first_attempt_seen(client_b, thread_id, run_id) == 1


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_sigterm_lets_a_run_finish_within_the_timeout(make_gateway: MakeGateway) -> None:
    """A run that can end within ``shutdown_timeout_s`` ends ``success`` in the stopping
    process (executed once); the run queued behind it is not started during the shutdown and
    runs after the restart, in order."""
    timeout_s = 4.0
    a = make_gateway(shutdown_timeout_s=timeout_s).start()
    client = get_client(url=a.url)
    thread_id = (await client.threads.create(graph_id="steps"))["thread_id"]
    r1 = (await client.runs.create(thread_id, "steps", input=user("r1"),
                                   config={"configurable": {"delay": 0.7}}))["run_id"]
    r2 = (await client.runs.create(thread_id, "steps", input=user("r2"),
                                   config={"configurable": {"delay": 0.05}}))["run_id"]
    await poll(lambda: client.threads.get_state(thread_id), lambda s: s["next"] == ["second"],
               10, "R1 in its second node")  # about 1.4 s of R1 left
    signalled_at = time.monotonic()
    assert a.proc is not None
    a.proc.send_signal(signal.SIGTERM)
    code = await wait_exit(a, timeout_s + 15)
    exit_s = time.monotonic() - signalled_at
    assert code in (0, -signal.SIGTERM), (code, a.log()[-3000:])
    assert exit_s <= timeout_s + EXIT_SLACK_S, f"exit took {exit_s:.1f}s"
    at_exit = stored_runs(a.config.parent / "data")
    assert at_exit[r1] == ("success", 1), at_exit
    assert at_exit[r2] == ("pending", 1), at_exit  # not started while shutting down

    b = make_gateway(shutdown_timeout_s=timeout_s).start()
    client_b = get_client(url=b.url)
    assert (await wait_terminal(client_b, thread_id, r2))["status"] == "success"
    thread = await client_b.threads.get(thread_id)
    assert thread["status"] == "idle", thread
    assert contents(thread["values"]) == steps_answer("r1", "r2")
    history = await client_b.threads.get_history(thread_id, limit=100)
    of_r1 = [h for h in history if h["metadata"].get("run_id") == r1]
    assert {h["metadata"]["run_attempt"] for h in of_r1} == {1}
    assert sorted(h["metadata"]["step"] for h in of_r1) == [-1, 0, 1, 2, 3]
