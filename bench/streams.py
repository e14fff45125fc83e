"""Scenarios 4-5 against one server URL: fan-out of one run to many joiners, and idle open
SSE connections, both with the server's RSS (``VmRSS`` of the process tree).

Fan-out: a background emitter run (``stream_resumable: true``, a short pause first) is joined by
K concurrent ``GET /threads/{t}/runs/{r}/stream`` with ``Last-Event-ID: -1`` (full replay, so
a joiner that attaches late still must get every event). Idle: slow runs, each joined by
several clients that receive nothing; RSS with the connections open minus RSS without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from bench.budget import Budget
from bench.client import Clients, SseCount, call, create_threads, sse
from bench.runs import emitter_body

Rss = Callable[[], int]


async def _peak_rss(rss: Rss, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def fanout_one(clients: Clients, rss: Rss, joiners: int, b: Budget,
                     ) -> dict[str, Any]:
    """One emitter run of ``b.events`` custom events joined by ``joiners`` clients."""
    thread = (await create_threads(clients, 1))[0]
    rss_before = rss()
    run = await call(clients(), "POST", f"/threads/{thread}/runs",
                     emitter_body(b.events, delay=0.3, stream_resumable=True))
    path = f"/threads/{thread}/runs/{run['run_id']}/stream"
    infos = [SseCount() for _ in range(joiners)]
    peak, stop = [rss_before], asyncio.Event()
    sampler = asyncio.create_task(_peak_rss(rss, peak, stop))
    tasks = [asyncio.create_task(sse(clients(j), "GET", path, headers={"Last-Event-ID": "-1"},
                                     info=info)) for j, info in enumerate(infos)]
    t0 = time.perf_counter()
    done, pending = await asyncio.wait(tasks, timeout=b.fanout_timeout_s)
    timed_out = bool(pending)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    failures = [repr(t.exception()) for t in done if t.exception() is not None]
    stop.set()
    await sampler
    got = [i.counts.get("custom", 0) for i in infos]
    firsts = [i.t_first_named for i in infos if i.t_first_named is not None]
    lasts = [i.t_last for i in infos if i.t_last is not None]
    span = (max(lasts) - min(firsts)) if firsts and lasts else 0.0
    return {
        "joiners": joiners,
        "lossless": not timed_out and not failures and all(g == b.events for g in got),
        "min_received": min(got), "errors": len(failures), "timed_out": timed_out,
        "first_error": failures[0] if failures else None,
        "events_per_s": sum(got) / span if span > 0 else 0.0,
        "elapsed_s": time.perf_counter() - t0,
        "rss_before_mb": rss_before / 1024, "rss_peak_mb": peak[0] / 1024,
        "rss_growth_mb": (peak[0] - rss_before) / 1024,
        "rss_after_mb": rss() / 1024,
    }


async def fanout(clients: Clients, rss: Rss, b: Budget) -> dict[str, Any]:
    """Scenario 4 at every level of ``b.fanout_levels``: up to ``b.fanout_reps`` runs per level
    while the level has used less than ``b.fanout_rep_s``; the median rate, lossless only if
    every run was, the largest RSS growth."""
    out: dict[str, Any] = {}
    for k in b.fanout_levels:
        reps: list[dict[str, Any]] = []
        t0 = time.perf_counter()
        while len(reps) < b.fanout_reps and (not reps or time.perf_counter() - t0 < b.fanout_rep_s):
            reps.append(await fanout_one(clients, rss, k, b))
        mid = sorted(reps, key=lambda r: r["events_per_s"])[len(reps) // 2]
        out[f"j{k}"] = {**mid, "reps": len(reps),
                        "rates": [r["events_per_s"] for r in reps],
                        "lossless": all(r["lossless"] for r in reps),
                        "min_received": min(r["min_received"] for r in reps),
                        "errors": sum(r["errors"] for r in reps),
                        "first_error": next((r["first_error"] for r in reps if r["first_error"]),
                                            None),
                        "rss_peak_mb": max(r["rss_peak_mb"] for r in reps),
                        "rss_growth_mb": max(r["rss_growth_mb"] for r in reps)}
    return out


async def _idle_round(clients: Clients, rss: Rss, b: Budget) -> dict[str, Any]:
    n = b.idle_runs * b.idle_joiners_per_run
    threads = await create_threads(clients, b.idle_runs)
    await asyncio.sleep(0.5)
    rss_before = rss()
    slow = {"assistant_id": "slow", "input": {}, "config": {"configurable": {"sleep": 300}}}
    runs = await asyncio.gather(*(call(clients(i), "POST", f"/threads/{t}/runs", slow)
                                  for i, t in enumerate(threads)))
    await asyncio.sleep(1.0)
    rss_runs = rss()
    opened = [0]
    all_open = asyncio.Event()

    def on_open() -> None:
        opened[0] += 1
        if opened[0] == n:
            all_open.set()

    paths = [f"/threads/{r['thread_id']}/runs/{r['run_id']}/stream" for r in runs
             for _ in range(b.idle_joiners_per_run)]
    tasks = [asyncio.create_task(sse(clients(j), "GET", path, names=(), opened=on_open))
             for j, path in enumerate(paths)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_open.wait(), 30.0)
    await asyncio.sleep(1.0)
    rss_open = rss()
    n_open = opened[0]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(call(clients(i), "POST", f"/threads/{r['thread_id']}/runs/"
                                f"{r['run_id']}/cancel?action=interrupt")
                           for i, r in enumerate(runs)),
                         return_exceptions=True)
    await asyncio.sleep(2.0)
    return {"connections": n_open, "requested": n,
            "kb_per_connection": (rss_open - rss_runs) / n_open if n_open else None,
            "rss_before_mb": rss_before / 1024, "rss_runs_mb": rss_runs / 1024,
            "rss_open_mb": rss_open / 1024, "rss_after_mb": rss() / 1024}


async def idle_streams(clients: Clients, rss: Rss, b: Budget) -> dict[str, Any]:
    """Scenario 5: ``b.idle_runs`` slow runs, each joined by ``b.idle_joiners_per_run``
    clients (no events flow); RSS before the runs, with the runs, with the connections open,
    and after connections and runs have ended. KB per connection is from the first round;
    a second identical round shows whether RSS stays flat once runs end (memory is reused,
    nothing leaks) or keeps growing."""
    first = await _idle_round(clients, rss, b)
    second = await _idle_round(clients, rss, b)
    return {**first, "rss_growth_after_mb": first["rss_after_mb"] - first["rss_before_mb"],
            "second_round": second,
            "rss_growth_round2_mb": second["rss_after_mb"] - first["rss_after_mb"]}
