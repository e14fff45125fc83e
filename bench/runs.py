"""Scenarios 1-3 against one server URL: ``/runs/wait`` throughput and latency at several
concurrencies and in one burst, ``/runs/stream`` time to first event, and the SSE delivery
rate of custom events to one client. Also ``GET /ok`` at concurrency 8 (framework overhead).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from bench.budget import Budget
from bench.client import Clients, burst, call, closed_loop, create_threads, median, pct_ms, sse
from bench.rawhttp import post_once

TRIVIAL = {"assistant_id": "trivial", "input": {"n": 1}}


def emitter_body(n: int, delay: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {"assistant_id": "emitter", "input": {}, "stream_mode": ["custom"],
            "config": {"configurable": {"n": n, "delay": delay}}, **extra}


async def wait_run(client: httpx.AsyncClient, thread_id: str) -> None:
    """One ``/threads/{id}/runs/wait`` on the trivial graph; checks the final state."""
    out = await call(client, "POST", f"/threads/{thread_id}/runs/wait", TRIVIAL)
    if not isinstance(out, dict) or out.get("label") != "n=2":
        raise ValueError(f"unexpected /wait body {out!r}")


async def wait_run_raw(base_url: str, thread_id: str) -> None:
    """``wait_run`` on a fresh connection through the lean client (``bench.rawhttp``)."""
    status, body = await post_once(base_url, f"/threads/{thread_id}/runs/wait",
                                   orjson.dumps(TRIVIAL))
    out = orjson.loads(body) if status == 200 else None
    if not isinstance(out, dict) or out.get("label") != "n=2":
        raise ValueError(f"unexpected /wait answer {status} {body[:200]!r}")


async def wait_scenarios(clients: Clients, b: Budget,
                         cpu_s: Callable[[], float] | None = None,
                         burst_too: bool = True) -> dict[str, Any]:
    """Scenario 1: ``/runs/wait`` at each concurrency level (one thread per worker), then
    ``b.burst`` concurrent requests at once (one thread and one new connection each, sent by
    the lean client of ``bench.rawhttp``: httpx was the bottleneck there). With ``cpu_s``
    (the server's CPU seconds so far), each level also records the server's CPU milliseconds
    per run. ``burst_too=False`` skips the burst (its lean client sends no credentials)."""
    out: dict[str, Any] = {}
    warm = await create_threads(clients, 1)
    for _ in range(3):
        await wait_run(clients(), warm[0])
    for level in b.wait_levels:
        threads = await create_threads(clients, level)
        cpu0 = cpu_s() if cpu_s else 0.0
        res = await closed_loop(lambda w, t=threads: wait_run(clients(w), t[w]), level,
                                b.wait_s, b.wait_max_runs)
        out[f"c{level}"] = res.summary()
        if cpu_s and res.latencies:
            out[f"c{level}"]["cpu_ms_per_run"] = 1000 * (cpu_s() - cpu0) / len(res.latencies)
    if not burst_too:
        return out
    threads = await create_threads(clients, b.burst)
    res = await burst([lambda t=t: wait_run_raw(clients.base_url, t) for t in threads])
    out["burst"] = {**res.summary(), "concurrency": b.burst}
    return out


async def get_ok(clients: Clients, b: Budget) -> dict[str, Any]:
    """``GET /ok`` at concurrency 8: the HTTP stack's per-request cost."""
    async def op(w: int) -> None:
        resp = await clients(w).get("/ok")
        if resp.status_code != 200:
            raise ValueError(resp.status_code)

    return (await closed_loop(op, 8, b.get_ok_s, 10**9)).summary()


async def stream_first_event(clients: Clients, b: Budget) -> dict[str, Any]:
    """Scenario 2: ``POST /threads/{id}/runs/stream`` (trivial graph, values): time from
    sending the request to the first ``event:`` line (``metadata``), and to the close."""
    thread = (await create_threads(clients, 1))[0]
    first: list[float] = []
    total: list[float] = []
    deadline = time.perf_counter() + b.stream_s
    for i in range(b.stream_runs + 1):
        if i > 1 and time.perf_counter() > deadline:
            break
        info = await sse(clients(), "POST", f"/threads/{thread}/runs/stream",
                         {**TRIVIAL, "stream_mode": ["values"]}, names=("values",))
        if i == 0 or info.t_first is None:
            continue  # warm-up
        first.append(info.t_first - info.t_sent)
        total.append(info.t_end - info.t_sent)
    return {"n": len(first), "first_p50_ms": pct_ms(first, 50), "first_p99_ms": pct_ms(first, 99),
            "total_p50_ms": pct_ms(total, 50)}


async def sse_rate(clients: Clients, b: Budget) -> dict[str, Any]:
    """Scenario 3: one client streams an emitter run (``stream_mode=custom``); custom events
    per second from the first frame to the last custom frame (median of ``b.sse_reps``)."""
    thread = (await create_threads(clients, 1))[0]
    rates: list[float] = []
    end_to_end: list[float] = []
    lossless = True
    deadline = time.perf_counter() + b.sse_s
    for i in range(b.sse_reps):
        if i and time.perf_counter() > deadline:
            break
        info = await sse(clients(), "POST", f"/threads/{thread}/runs/stream",
                         emitter_body(b.events))
        lossless &= info.counts.get("custom", 0) == b.events
        rates.append(info.rate("custom"))
        end_to_end.append(info.counts.get("custom", 0) / (info.t_end - info.t_sent))
        await asyncio.sleep(0.2)
    return {"events_per_s": median(rates), "events_per_s_incl_start": median(end_to_end),
            "reps": len(rates), "lossless": lossless}
