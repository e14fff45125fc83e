"""``python -m bench [--quick] [--no-reference] [--no-sqlite-bridge] [--only a,b]``: the benchmark.

Order: our gateway (``bench/config.yaml``, data in a temp folder) through every scenario; our
gateway with ``bridge: sqlite`` through the scenarios that publish events; our gateway on
PostgreSQL + Redis with 1, 2 and 3 processes (``--processes``; a database and key prefix of
their own per column, requests balanced round robin) through the same; the
reference ``langgraph dev`` (installed into ``bench/.venv-ref`` on first use) through the same
scenarios; then the physical limits (with ``longthread`` selected, the in-process long
thread too, even without ``limits``). Prints the table and the issue-6 targets and writes
``bench/results/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.budget import FULL, QUICK, Budget
from bench.client import Clients
from bench.engines import EnginesUnavailable, engines
from bench.growth import growth
from bench.limits import measure_limits
from bench.longthread import long_thread, long_thread_limits
from bench.reference import ensure_reference, reference_version
from bench.report import format_table, format_targets, table_rows, targets, write_json
from bench.runs import get_ok, sse_rate, stream_first_event, wait_scenarios
from bench.servers import (
    AUTH_HEADERS,
    Cluster,
    Server,
    start_cluster,
    start_gateway,
    start_gateway_with_auth,
    start_reference,
)
from bench.streams import fanout, idle_streams

SCENARIOS = ("wait", "get_ok", "stream", "sse", "fanout", "idle", "growth", "longthread")
# what the durable event log (``bridge: sqlite``) is measured on: the paths that publish events
SQLITE_BRIDGE_SCENARIOS = {"wait", "stream", "sse", "fanout"}
# the PostgreSQL + Redis columns: those, and the long thread (its checkpoints are the store's)
PG_SCENARIOS = SQLITE_BRIDGE_SCENARIOS | {"longthread"}


async def bench_server(server: Server | Cluster, b: Budget, only: set[str],
                       headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Every selected scenario against one server (or a cluster, its requests balanced round
    robin over its processes); a failing scenario records its error. ``headers``: credentials
    sent with every request (then the ``wait`` burst, whose client sends none, is skipped)."""
    out: dict[str, Any] = {}
    async with Clients(server.url, ports=getattr(server, "ports", None),
                       headers=headers) as clients:
        steps: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            "wait": lambda: wait_scenarios(clients, b, server.cpu_s, burst_too=not headers),
            "get_ok": lambda: get_ok(clients, b),
            "stream": lambda: stream_first_event(clients, b),
            "sse": lambda: sse_rate(clients, b),
            "fanout": lambda: fanout(clients, server.rss_kb, b),
            "idle": lambda: idle_streams(clients, server.rss_kb, b),
            "growth": lambda: growth(clients, b),
            "longthread": lambda: long_thread(clients, b, server.cpu_s),
        }
        out["rss_start_mb"] = server.rss_kb() / 1024
        for name, step in steps.items():
            if name not in only:
                continue
            t0 = time.perf_counter()
            try:
                out[name] = await step()
            except Exception as exc:  # keep going: one broken scenario must not hide the rest
                out[name] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"  {server.name} {name}: FAILED {exc!r}", flush=True)
            print(f"  {server.name} {name}: {time.perf_counter() - t0:.1f}s", flush=True)
        out["rss_end_mb"] = server.rss_kb() / 1024
    return out


def _run_server(start: Callable[[], Server | Cluster], b: Budget,
                only: set[str], headers: dict[str, str] | None = None) -> dict[str, Any]:
    server = start()
    try:
        return asyncio.run(bench_server(server, b, only, headers))
    finally:
        server.stop()


def _auth_cost(results: dict[str, Any]) -> str | None:
    """One line: server CPU per ``/runs/wait`` run with custom auth over without, c=8."""
    try:
        with_auth = results["ours_auth"]["wait"]["c8"]["cpu_ms_per_run"]
        without = results["ours"]["wait"]["c8"]["cpu_ms_per_run"]
    except (KeyError, TypeError):
        return None
    return (f"\ncustom auth (examples/auth.py), /runs/wait c=8, server CPU per run: "
            f"{with_auth:.2f} ms vs {without:.2f} ms without auth ({with_auth / without:.2f}x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter budgets, fewer samples")
    parser.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                        help="also benchmark langgraph dev (installed on first use)")
    parser.add_argument("--sqlite-bridge", action=argparse.BooleanOptionalAction, default=True,
                        help="also benchmark our gateway with bridge: sqlite (durable events)")
    parser.add_argument("--postgres", action=argparse.BooleanOptionalAction, default=True,
                        help="also benchmark our gateway on PostgreSQL + Redis (a database "
                             "of its own is created and dropped per column)")
    parser.add_argument("--processes", default="1,2,3",
                        help="PostgreSQL + Redis columns: how many gateway processes each "
                             "(requests balanced round robin over them)")
    parser.add_argument("--only", default=",".join(SCENARIOS + ("limits",)),
                        help="comma list of: " + ", ".join(SCENARIOS + ("limits",)))
    parser.add_argument("--auth", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure /runs/wait under custom auth (examples/auth.py)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep data folders and logs")
    args = parser.parse_args(argv)
    b = QUICK if args.quick else FULL
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    started = time.perf_counter()
    load_start = os.getloadavg()
    if load_start[0] > 0.5 * (os.cpu_count() or 1):
        print(f"note: load average {load_start[0]:.1f} before the run; other processes share "
              "the CPUs, expect noise (the ratios measured side by side are what count)")
    results: dict[str, Any] = {}
    notes: list[str] = []
    try:
        print("our gateway ...", flush=True)
        results["ours"] = _run_server(lambda: start_gateway(tmp), b, only)
        if args.auth and "wait" in only:
            print("our gateway, custom auth (examples/auth.py) ...", flush=True)
            results["ours_auth"] = _run_server(lambda: start_gateway_with_auth(tmp), b,
                                               {"wait"}, AUTH_HEADERS)
        if args.sqlite_bridge and only & SQLITE_BRIDGE_SCENARIOS:
            print("our gateway, bridge: sqlite ...", flush=True)
            results["ours_sqlite"] = _run_server(lambda: start_gateway(tmp, "sqlite"), b,
                                                 only & SQLITE_BRIDGE_SCENARIOS)
        for n in sorted({int(x) for x in args.processes.split(",") if x.strip()}):
            if not args.postgres or not only & PG_SCENARIOS:
                break
            print(f"our gateway, PostgreSQL + Redis, {n} process(es) ...", flush=True)
            try:
                with engines() as env:
                    results["ours_pg" if n == 1 else f"ours_pg{n}"] = _run_server(
                        lambda n=n, env=env: start_cluster(tmp, n, env), b,
                        only & PG_SCENARIOS)
            except EnginesUnavailable as exc:
                notes.append(f"PostgreSQL + Redis skipped: {exc}")
                print(notes[-1], flush=True)
                break
        if args.reference:
            langgraph, why = ensure_reference()
            if langgraph is None:
                notes.append(f"reference skipped: {why}")
                print(notes[-1], flush=True)
            else:
                print(f"reference (langgraph-api {reference_version()}) ...", flush=True)
                results["reference"] = _run_server(lambda: start_reference(tmp, langgraph),
                                                   b, only)
        else:
            notes.append("reference skipped: --no-reference")
        if "limits" in only:
            print("physical limits ...", flush=True)
            results["limits"] = asyncio.run(measure_limits(tmp, b))
        if "longthread" in only:
            print("physical limits: long thread in-process ...", flush=True)
            t0 = time.perf_counter()
            results.setdefault("limits", {})["longthread"] = asyncio.run(
                long_thread_limits(tmp, b))
            print(f"  limits longthread: {time.perf_counter() - t0:.1f}s", flush=True)
    finally:
        if args.keep_tmp:
            print(f"logs and data kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    rows = table_rows(results)
    goals = targets(results)
    print()
    print(format_table(rows))
    print("\ntargets of issue 6 (our gateway):")
    print(format_targets(goals))
    auth_line = _auth_cost(results)
    if auth_line:
        print(auth_line)
    for note in notes:
        print("note:", note)
    path = write_json({
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": args.quick,
        "elapsed_s": time.perf_counter() - started,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "platform": platform.platform(), "loadavg_start": load_start,
                    "loadavg_end": os.getloadavg()},
        "reference_version": reference_version() if "reference" in results else None,
        "notes": notes, "results": results, "table": rows, "targets": goals,
    })
    print(f"\nwrote {path} ({time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
