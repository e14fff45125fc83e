"""The physical limits, measured in the same run as the servers.

In-process (this process, no HTTP): ``graph.ainvoke`` of the trivial graph with the gateway's
own checkpointer (``runtime.checkpointer.open_checkpointer``: ThreadedSqliteSaver, WAL,
synchronous NORMAL), with the library's stock ``AsyncSqliteSaver`` on aiosqlite (the same
pragmas), and with InMemorySaver, one at a time and at concurrency 8 on distinct threads;
``graph.astream(stream_mode="custom")`` of the emitter (events/s from the call to the last
event: the emitter writes all its events in one step, so timing from the first event would
only time the queue drain) and the time to the first ``values`` chunk of the trivial graph.
Bare HTTP (a subprocess, through the same client as the servers): ``bench.bare_app``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from bench.budget import Budget
from bench.client import Clients, closed_loop, median, pct_ms, sse
from bench.graphs.emitter import builder as emitter_builder
from bench.graphs.trivial import builder as trivial_builder
from bench.servers import start_bare
from runtime.checkpointer import open_checkpointer


@asynccontextmanager
async def _stock_saver(path: Path) -> AsyncIterator[AsyncSqliteSaver]:
    """langgraph-checkpoint-sqlite's own AsyncSqliteSaver with the gateway's pragmas."""
    async with aiosqlite.connect(str(path)) as conn:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000"):
            await conn.execute(f"PRAGMA {pragma}")
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        yield saver


async def _graph_limits(kind: str, tmp: Path, b: Budget) -> dict[str, Any]:
    out: dict[str, Any] = {}
    opened = (_stock_saver(tmp / "limit-stock.sqlite") if kind == "stock"
              else open_checkpointer(kind, tmp / f"limit-{kind}.sqlite"))
    async with opened as saver:
        graph = trivial_builder.compile(checkpointer=saver)
        for level in (1, 8):
            threads = [str(uuid.uuid4()) for _ in range(level)]

            async def invoke(w: int, threads: list[str] = threads) -> None:
                result = await graph.ainvoke({"n": 1}, {"configurable": {"thread_id": threads[w]}})
                if result.get("label") != "n=2":
                    raise ValueError(result)

            await invoke(0)  # warm-up
            cpu0 = time.process_time()  # this process, all threads (the saver's included)
            res = await closed_loop(invoke, level, b.limit_s, 10**6)
            out[f"c{level}"] = {**res.summary(), "cpu_ms_per_run":
                                1000 * (time.process_time() - cpu0) / max(1, len(res.latencies))}
        if kind == "sqlite":
            out["astream"] = await _astream_limits(saver, b)
    return out


async def _astream_limits(saver: Any, b: Budget) -> dict[str, Any]:
    emitter = emitter_builder.compile(checkpointer=saver)
    rates: list[float] = []
    for _ in range(max(b.sse_reps, 3)):
        config = {"configurable": {"thread_id": str(uuid.uuid4()), "n": b.events}}
        count, start = 0, time.perf_counter()
        async for _chunk in emitter.astream({}, config, stream_mode="custom"):
            count += 1
        rates.append(count / (time.perf_counter() - start))
    trivial = trivial_builder.compile(checkpointer=saver)
    firsts: list[float] = []
    thread = {"configurable": {"thread_id": str(uuid.uuid4())}}
    for _ in range(b.stream_runs):
        t0 = time.perf_counter()
        first = 0.0
        async for _chunk in trivial.astream({"n": 1}, thread, stream_mode="values"):
            first = first or time.perf_counter()
        firsts.append(first - t0)
    return {"events_per_s": median(rates), "first_p50_ms": pct_ms(firsts, 50)}


async def _bare_limits(tmp: Path, b: Budget) -> dict[str, Any]:
    server = start_bare(tmp)
    try:
        async with Clients(server.url) as clients:
            async def get(w: int) -> None:
                resp = await clients(w).get("/json")
                if resp.status_code != 200:
                    raise ValueError(resp.status_code)

            await get(0)
            out: dict[str, Any] = {"get_c8": (await closed_loop(get, 8, b.limit_s, 10**9)
                                              ).summary()}
            rates = [(await sse(clients(), "GET", f"/sse?n={b.events}")).rate()
                     for _ in range(max(b.sse_reps, 3))]
            firsts = []
            for _ in range(b.stream_runs):
                info = await sse(clients(), "GET", "/sse?n=1")
                firsts.append((info.t_first or info.t_end) - info.t_sent)
            out["sse"] = {"events_per_s": median(rates), "first_p50_ms": pct_ms(firsts, 50)}
            out["rss_mb"] = server.rss_kb() / 1024
            return out
    finally:
        server.stop()


async def measure_limits(tmp: Path, b: Budget) -> dict[str, Any]:
    """Every limit: ``{"sqlite": ..., "stock": ..., "memory": ..., "bare": ...}``."""
    return {"sqlite": await _graph_limits("sqlite", tmp, b),
            "stock": await _graph_limits("stock", tmp, b),
            "memory": await _graph_limits("memory", tmp, b),
            "bare": await _bare_limits(tmp, b)}
