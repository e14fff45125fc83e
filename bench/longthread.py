"""The long thread: what one run costs as its thread's state grows.

One chat thread of the ``echo`` graph (``bench/graphs/echo.py``), ``b.long_turns`` sequential
turns, each sending one new user message (the graph appends it and an AI echo, so the state
grows by two messages a turn). Figures: p50 wall latency of the first ``WINDOW`` turns and of
the last ``WINDOW`` turns, their ratio (``growth``), the CPU milliseconds per run over each
window, and the final state's message count and size.

* against a server (``long_thread``): ``POST /threads/{id}/runs/wait``; the latency runs from
  sending the request to the last byte of the answer (its JSON is decoded and checked after
  the clock stops); CPU is the server's (``cpu_s``: its process and descendants, so not the
  PostgreSQL server's). The state size is the length of ``GET /threads/{id}/state``'s body.
  Stops early after ``b.long_s`` (``turns`` says how many ran).
* in-process (``long_thread_limits``): ``graph.ainvoke`` on the same graph with the stock
  ``AsyncSqliteSaver`` (aiosqlite, a temp file, the gateway's pragmas) and with langgraph's
  ``AsyncPostgresSaver`` on a fresh database (``bench.engines``); CPU is this process's
  (``time.process_time()``, all threads). The state size is the JSON of the final state's
  values (messages as plain ``model_dump`` dicts, close to what the API sends).

Each side first runs one warm-up turn on a throwaway thread, so the first window does not
time the graph's first load.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from bench.budget import Budget
from bench.client import JSON, Clients, HttpError, create_threads, pct_ms
from bench.engines import engines
from bench.graphs.echo import builder as echo_builder
from bench.limits import _stock_saver

WINDOW = 10  # turns per measured window (the first ones and the last ones)
ASSISTANT = "echo"
# ~190 characters: 800 messages (400 turns) of this make a ~280 KB state, as in the chat
# thread the scenario was first measured on
FILLER = ("a user message of ordinary length in a long chat thread, sent once per turn; "
          "each run appends it and an echo of it, so the checkpointed state grows by two "
          "messages a turn")


def user_message(turn: int) -> dict[str, Any]:
    return {"role": "user", "content": f"turn {turn}: {FILLER}"}


def _summary(latencies: list[float], cpu_windows: tuple[float | None, float | None],
             turns_wanted: int) -> dict[str, Any]:
    n = len(latencies)
    first = pct_ms(latencies[:WINDOW], 50)
    last = pct_ms(latencies[-WINDOW:], 50) if n >= 2 * WINDOW else None
    return {"turns": n, "turns_wanted": turns_wanted, "first_p50_ms": first,
            "last_p50_ms": last, "growth": last / first if first and last else None,
            "first_cpu_ms_per_run": cpu_windows[0], "last_cpu_ms_per_run": cpu_windows[1]}


async def _turns(turn: Callable[[int], Awaitable[None]], turns: int, budget_s: float,
                 cpu: Callable[[], float] | None) -> tuple[list[float],
                                                           tuple[float | None, float | None]]:
    """Run ``turn(1..turns)`` back to back (stopping early once ``budget_s`` has passed and
    two windows are done); per-turn wall latencies and the CPU ms per run of the first and
    the last ``WINDOW`` turns (``cpu()`` is read between turns, off the clock)."""
    latencies: list[float] = []
    marks: list[float] = []  # marks[i]: CPU seconds before turn i + 1 (and after the last)
    deadline = time.perf_counter() + budget_s
    for i in range(1, turns + 1):
        if cpu:
            marks.append(cpu())
        t0 = time.perf_counter()
        await turn(i)
        latencies.append(time.perf_counter() - t0)
        if i >= 2 * WINDOW and time.perf_counter() > deadline:
            break
    if not cpu:
        return latencies, (None, None)
    marks.append(cpu())
    n = len(latencies)
    first = 1000 * (marks[min(n, WINDOW)] - marks[0]) / min(n, WINDOW) if n else None
    last = 1000 * (marks[n] - marks[n - WINDOW]) / WINDOW if n >= 2 * WINDOW else None
    return latencies, (first, last)


async def long_thread(clients: Clients, b: Budget,
                      cpu_s: Callable[[], float] | None = None) -> dict[str, Any]:
    """The long thread against one server (see the module docstring)."""
    client = clients()
    warm, thread = await create_threads(clients, 2)

    async def turn(i: int, thread_id: str = thread) -> None:
        path = f"/threads/{thread_id}/runs/wait"
        body = orjson.dumps({"assistant_id": ASSISTANT,
                             "input": {"messages": [user_message(i)]}})
        resp = await client.request("POST", path, content=body, headers=JSON)
        if resp.status_code != 200:
            raise HttpError(f"POST {path}: {resp.status_code} {resp.text[:200]}")
        answer[0] = resp.content  # the last answer only: 400 of them would be ~55 MB

    answer = [b""]
    await turn(1, warm)
    latencies, cpu = await _turns(turn, b.long_turns, b.long_s, cpu_s)
    out = _summary(latencies, cpu, b.long_turns)
    last = orjson.loads(answer[0])
    got = len(last.get("messages") or []) if isinstance(last, dict) else -1
    if got != 2 * len(latencies):
        raise ValueError(f"after {len(latencies)} turns /wait returned {got} messages")
    state = await client.get(f"/threads/{thread}/state")
    if state.status_code != 200:
        raise HttpError(f"GET /threads/{thread}/state: {state.status_code}")
    values = orjson.loads(state.content).get("values") or {}
    out["messages"] = len(values.get("messages") or [])
    out["state_kb"] = len(state.content) / 1024
    return out


def _plain(value: Any) -> Any:
    """Messages as the plain dicts the API sends (``model_dump``), for the state size."""
    if isinstance(value, BaseMessage):
        return value.model_dump()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


async def _inprocess(saver: Any, b: Budget) -> dict[str, Any]:
    graph: Any = echo_builder.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    final: dict[str, Any] = {}

    async def turn(i: int, config: dict[str, Any] = config) -> None:
        nonlocal final
        final = await graph.ainvoke({"messages": [user_message(i)]}, config)

    await turn(1, {"configurable": {"thread_id": str(uuid.uuid4())}})  # warm-up
    latencies, cpu = await _turns(turn, b.long_turns, float("inf"), time.process_time)
    out = _summary(latencies, cpu, b.long_turns)
    if len(final.get("messages") or []) != 2 * len(latencies):
        raise ValueError(f"after {len(latencies)} turns: {len(final.get('messages') or [])} "
                         "messages")
    out["messages"] = len(final["messages"])
    out["state_kb"] = len(orjson.dumps(_plain({"values": final}))) / 1024
    return out


@asynccontextmanager
async def _postgres_saver() -> AsyncIterator[AsyncPostgresSaver]:
    with engines() as env:
        async with AsyncPostgresSaver.from_conn_string(env["GATEWAY_DATABASE_URL"]) as saver:
            await saver.setup()
            yield saver


async def long_thread_limits(tmp: Path, b: Budget) -> dict[str, Any]:
    """``{"sqlite": ..., "postgres": ...}``: the long thread in-process, ainvoke with the
    stock AsyncSqliteSaver and with AsyncPostgresSaver; ``{"error": ...}`` for either that
    could not run (no PostgreSQL, say)."""
    out: dict[str, Any] = {}
    try:
        async with _stock_saver(tmp / "limit-longthread.sqlite") as saver:
            out["sqlite"] = await _inprocess(saver, b)
    except Exception as exc:
        out["sqlite"] = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        async with _postgres_saver() as saver:
            out["postgres"] = await _inprocess(saver, b)
    except Exception as exc:  # EnginesUnavailable (no PostgreSQL) included
        out["postgres"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out

