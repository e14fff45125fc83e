"""Scenario 6 against one server URL: cost growth with the number of stored threads.

Threads carry ``{"bench": "growth", "user_id": "user-<i>"}``. At each size (1k, then 10k) we
measure p50 latency of: run create (``POST /threads/{id}/runs``, trivial graph, on stored
threads), thread search by one ``user_id`` (exactly one match, ``limit: 10``; a full scan shows
up as growth), and run list (``GET /threads/{id}/runs`` on threads that have a run).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.budget import Budget
from bench.client import Clients, call, create_threads, pct_ms
from bench.runs import TRIVIAL


async def _timed(op: Callable[[int], Awaitable[object]], samples: int, budget_s: float,
                 ) -> list[float]:
    """Run ``op(i)`` one at a time, ``samples`` times or until ``budget_s`` is spent."""
    out: list[float] = []
    deadline = time.perf_counter() + budget_s
    for i in range(samples):
        if i >= 3 and time.perf_counter() > deadline:
            break
        t = time.perf_counter()
        await op(i)
        out.append(time.perf_counter() - t)
    return out


async def _measure(clients: Clients, ids: list[str], rng: random.Random, b: Budget,
                   ) -> dict[str, Any]:
    client = clients()
    with_runs: list[tuple[str, str]] = []
    picks = rng.sample(range(len(ids)), b.growth_samples)

    async def create(i: int) -> None:
        run = await call(client, "POST", f"/threads/{ids[picks[i]]}/runs", TRIVIAL)
        with_runs.append((run["thread_id"], run["run_id"]))

    async def search(i: int) -> None:
        k = picks[i]
        found = await call(client, "POST", "/threads/search",
                           {"metadata": {"user_id": f"user-{k}"}, "limit": 10})
        if len(found) != 1 or found[0]["thread_id"] != ids[k]:
            raise ValueError(f"search for user-{k} returned {len(found)} threads")

    async def list_runs(i: int) -> None:
        thread_id, run_id = with_runs[i % len(with_runs)]
        runs = await call(client, "GET", f"/threads/{thread_id}/runs")
        if not runs or runs[0]["run_id"] != run_id:
            raise ValueError("run list does not show the run")

    create_s = await _timed(create, b.growth_samples, b.growth_s)
    await asyncio.gather(*(call(clients(i), "GET", f"/threads/{t}/runs/{r}/join")
                           for i, (t, r) in enumerate(with_runs)))
    search_s = await _timed(search, b.growth_samples, b.growth_s)
    list_s = await _timed(list_runs, b.growth_samples, b.growth_s)
    return {"run_create_p50_ms": pct_ms(create_s, 50), "search_p50_ms": pct_ms(search_s, 50),
            "list_runs_p50_ms": pct_ms(list_s, 50),
            "samples": [len(create_s), len(search_s), len(list_s)]}


async def growth(clients: Clients, b: Budget) -> dict[str, Any]:
    """Scenario 6 at every size of ``b.growth_sizes``, plus the last/first ratios."""
    rng = random.Random(6)
    ids: list[str] = []
    out: dict[str, Any] = {}
    for size in b.growth_sizes:
        t0 = time.perf_counter()
        base = len(ids)
        ids += await create_threads(
            clients, size - base, 32,
            metadata=lambda i, base=base: {"bench": "growth", "user_id": f"user-{base + i}"})
        made_s = time.perf_counter() - t0
        stored = await call(clients(), "POST", "/threads/count", {})
        out[f"n{size}"] = {**await _measure(clients, ids, rng, b), "stored_threads": stored,
                           "threads_created_per_s": (size - base) / made_s}
    first, last = (out[f"n{s}"] for s in (b.growth_sizes[0], b.growth_sizes[-1]))
    for key in ("run_create_p50_ms", "search_p50_ms", "list_runs_p50_ms"):
        if first[key] and last[key]:
            out[key.replace("_p50_ms", "_growth")] = last[key] / first[key]
    return out
