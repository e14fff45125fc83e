"""``python -m bench.profile [--scenario wait1|wait8|sse] [--seconds 8] [--postgres]``: where
the gateway
spends its time under one load, sampled by py-spy (all threads, idle samples excluded).

Starts the gateway as ``bench`` does, records it with ``py-spy record --threads -f raw``
while driving the load from this process, then prints the busy share of each thread
and the top functions by self time and by inclusive time, as percentages of busy samples.
py-spy is looked up on PATH and in ``bench/.venv-ref/bin`` (``pip install py-spy``).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from bench.budget import FULL
from bench.client import Clients, closed_loop, create_threads, sse
from bench.engines import engines
from bench.reference import VENV
from bench.runs import emitter_body, wait_run
from bench.servers import Server, start_gateway

RATE = 250  # samples per second


def find_py_spy() -> str | None:
    found = shutil.which("py-spy") or VENV / "bin" / "py-spy"
    return str(found) if Path(found).exists() else None


async def drive(url: str, scenario: str, seconds: float) -> str:
    """Apply the load; returns a one-line summary."""
    async with Clients(url) as clients:
        if scenario.startswith("wait"):
            level = int(scenario.removeprefix("wait"))
            threads = await create_threads(clients, level)
            res = await closed_loop(lambda w: wait_run(clients(w), threads[w]), level, seconds,
                                    10**9)
            s = res.summary()
            return f"{s['n']} runs, {s['per_s']:.0f} runs/s, p50 {s['p50_ms']:.1f} ms"
        thread = (await create_threads(clients, 1))[0]
        events, loop = 0, asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            info = await sse(clients(), "POST", f"/threads/{thread}/runs/stream",
                             emitter_body(FULL.events))
            events += info.counts.get("custom", 0)
        return f"{events} custom events in {seconds:.0f}s ({events / seconds:.0f}/s incl. starts)"


def _idle_sites() -> set[tuple[str, int]]:
    """(file suffix, line) of the blocking waits whose samples are idle, not work: the event
    loop's ``poll``, aiosqlite's, the executor's and the SQLite lanes' queue ``get``,
    ``threading`` waits."""
    import concurrent.futures.thread
    import selectors
    import threading

    import aiosqlite.core

    import runtime.sqlite_db

    needles = {selectors: "self._selector.poll(", aiosqlite.core: "tx.get()",
               concurrent.futures.thread: "work_queue.get(block=True)",
               threading: "waiter.acquire(", runtime.sqlite_db: "item = self._queue.get()"}
    sites = set()
    for module, needle in needles.items():
        path = Path(str(module.__file__))
        suffix = "/".join(path.parts[-2:]) if module not in (selectors, threading) \
            else path.name
        for no, text in enumerate(path.read_text().splitlines(), 1):
            if needle in text:
                sites.add((suffix, no))
    return sites


# Frames that are on (nearly) every stack of their thread: left out of the inclusive ranking.
_ROOTS = re.compile(r"^(_run_code|_run_module_as_main|<module>|main|Server\.run|asyncio_run|"
                    r"Runner\.run|BaseEventLoop\.(run_forever|run_until_complete|_run_once)|"
                    r"Handle\._run|Thread\.(run|_bootstrap|_bootstrap_inner)) ")
# Where a busy sample goes, first match wins: (label, thread or innermost-frame or any-frame test).
_CATEGORIES: list[tuple[str, str, re.Pattern[str]]] = [
    ("SQLite worker threads (store, checkpointer, event log)", "thread",
     re.compile("_connection_worker|AnyIO worker|sqlite-")),
    ("other threads (executors)", "thread", re.compile(r"^(?!.*MainThread)")),
    ("loop thread: handing a call to aiosqlite (queue put, GIL hand-off)", "leaf",
     re.compile(r"^Connection\._execute \(aiosqlite")),
    ("checkpointer (ThreadedSqliteSaver, loop side)", "any",
     re.compile(r"^(AsyncSqliteSaver|ThreadedSqliteSaver)\.")),
    ("LangGraph (Pregel loop, node tasks, stream writer)", "any",
     re.compile(r"^(Pregel\.astream|arun_with_retry|Runnable(Callable|Seq)\.|AsyncPregelLoop\.|"
                r"PregelRunner\.|FuturesDict\.)")),
    ("run task: encode + publish events (execute_run)", "any", re.compile(r"^execute_run ")),
    ("run finalize (final state read, store write)", "any",
     re.compile(r"^RunExecution\._finalize ")),
    ("run admission (create: validation, store insert)", "any",
     re.compile(r"^RunManager\.create ")),
    ("scheduler (mark running)", "any", re.compile(r"^RunManager\._dispatch ")),
    ("SSE delivery (sse-starlette, h11, socket writes)", "any",
     re.compile(r"^EventSourceResponse\.")),
    ("HTTP request handling (uvicorn, starlette, handlers)", "any",
     re.compile(r"^(RequestResponseCycle|H11Protocol)\.")),
    ("event loop itself (select, self-pipe reads, callbacks)", "any", re.compile(".")),
]


def _category(thread: str, names: list[str]) -> str:
    for label, kind, pattern in _CATEGORIES:
        if kind == "thread" and pattern.search(thread):
            return label
        if kind == "leaf" and pattern.search(names[-1]):
            return label
        if kind == "any" and any(pattern.search(n) for n in names):
            return label
    return "?"


_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*):(?P<line>\d+)\)$")


def _parse(frame: str) -> tuple[str, str, int]:
    m = _FRAME.match(frame)
    if not m:
        return frame, "", 0
    path = re.sub(r"^.*?(site-packages|lib/python3\.\d+)/", "", m["file"])
    return m["func"], path.replace(str(Path.cwd()) + "/", ""), int(m["line"])


def summarize(raw: Path, seconds: float, top: int) -> str:
    """Thread shares and top functions of a py-spy ``raw`` (collapsed stacks) file, counting
    only busy samples (a sample whose innermost frame is a blocking wait is idle)."""
    idle = _idle_sites()
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    cats: Counter[str] = Counter()
    total = idle_n = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        parts = stack.split(";")
        thread = next((p for p in parts if p.startswith("thread ")), "?")
        frames = [_parse(p) for p in parts if not p.startswith(("process ", "thread "))]
        if not frames:
            continue
        func, path, no = frames[-1]
        if any(path.endswith(sfx) and no == ln for sfx, ln in idle):
            idle_n += n
            continue
        total += n
        threads[re.sub(r"\(\d+\): ", "", thread)] += n
        names = [f"{f} ({p})" for f, p, _ in frames]
        cats[_category(thread, names)] += n
        self_t[names[-1]] += n
        for name in set(names):
            incl[name] += n
    if not total:
        return "no busy samples"
    lines = [f"busy samples: {total} = {total / (RATE * seconds):.0%} of one core "
             f"({idle_n} idle samples dropped)", "busy share per thread:"]
    lines += [f"  {n / total:6.1%}  {name}  ({n / (RATE * seconds):.0%} of one core)"
              for name, n in threads.most_common()]
    lines.append("busy samples by activity:")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in cats.most_common()]
    lines.append(f"top {top} functions by self time (% of busy samples):")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in self_t.most_common(top)]
    lines.append(f"top {top} functions by inclusive time (event loop and thread roots left out):")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in
              [(f, n) for f, n in incl.most_common() if not _ROOTS.match(f)][:top]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="wait1", help="wait1, wait8, wait32 or sse")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", type=Path, help="also keep py-spy's collapsed stacks here")
    parser.add_argument("--postgres", action="store_true",
                        help="the gateway on PostgreSQL + Redis (a database of its own)")
    args = parser.parse_args(argv)
    py_spy = find_py_spy()
    if py_spy is None:
        print("py-spy not found: pip install py-spy (e.g. into bench/.venv-ref)")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="gateway-profile-"))
    with ExitStack() as stack:
        env = stack.enter_context(engines()) if args.postgres else None
        server = start_gateway(tmp, "redis" if env else "memory", env)
        summary = _record(py_spy, server, args, tmp / "profile.txt")
    print(f"scenario {args.scenario}: {summary}")
    print(summarize(tmp / "profile.txt", args.seconds, args.top))
    if args.raw:
        shutil.copy(tmp / "profile.txt", args.raw)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _record(py_spy: str, server: Server, args: argparse.Namespace, raw: Path) -> str:
    """Record ``server`` with py-spy while the load runs; the load's summary."""
    try:
        spy = subprocess.Popen([py_spy, "record", "-p", str(server.proc.pid), "-r", str(RATE),
                                "-d", str(int(args.seconds) + 1), "--threads",
                                "-f", "raw", "-o", str(raw)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        summary = asyncio.run(drive(server.url, args.scenario, args.seconds))
        spy.wait(60)
    finally:
        server.stop()
    return summary


if __name__ == "__main__":
    sys.exit(main())
