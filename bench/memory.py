"""Memory under load: RSS of a real gateway process over 10,000 short runs.

``python -m bench.memory [--runs 10000] [--concurrency 16] [--retention 2]``

Starts the gateway on the trivial graph with a short ``stream_retention_s`` (so finished runs
leave memory during the measurement), drives ``/threads/{id}/runs/wait`` on fresh threads, and
samples the server's VmRSS after every 1,000 runs. The claim it checks (issue 4): RSS after
10,000 runs is within a stated bound of RSS after 1,000 (default 1.3x) once retention has
expired. Prints a table and exits 1 if the bound is exceeded.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.server import GatewayProcess  # noqa: E402

TRIVIAL = str(ROOT / "bench/graphs/trivial.py") + ":graph"


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def drive(url: str, runs: int, concurrency: int, pid: int, retention_s: float,
                every: int = 1000) -> list[tuple[int, int]]:
    """Run ``runs`` short runs; returns ``[(runs done, RSS KiB after retention)]``."""
    samples: list[tuple[int, int]] = []
    done = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        async def one() -> None:
            thread = (await http.post("/threads", json={})).json()["thread_id"]
            res = await http.post(f"/threads/{thread}/runs/wait",
                                  json={"assistant_id": "trivial", "input": {"n": 1}})
            res.raise_for_status()

        while done < runs:
            batch = min(every, runs - done)
            sem = asyncio.Semaphore(concurrency)

            async def guarded(sem: asyncio.Semaphore = sem) -> None:
                async with sem:
                    await one()

            await asyncio.gather(*(guarded() for _ in range(batch)))
            done += batch
            await asyncio.sleep(retention_s + 0.5)  # let finished runs' logs expire
            samples.append((done, rss_kib(pid)))
            print(f"  {done:>6} runs  RSS {samples[-1][1] / 1024:7.1f} MiB", flush=True)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--retention", type=float, default=2.0)
    parser.add_argument("--bound", type=float, default=1.3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = folder / "config.yaml"
        config.write_text(yaml.safe_dump({
            "graphs": {"trivial": TRIVIAL}, "data_dir": str(folder / "data"),
            "stream_retention_s": args.retention, "max_concurrent_runs": 64,
        }))
        server = GatewayProcess(config).start()
        try:
            assert server.proc is not None
            start = time.monotonic()
            samples = asyncio.run(drive(server.url, args.runs, args.concurrency,
                                        server.proc.pid, args.retention))
            elapsed = time.monotonic() - start
        finally:
            server.stop()
    first, last = samples[0][1], samples[-1][1]
    ratio = last / first
    print(f"RSS after {samples[0][0]} runs: {first / 1024:.1f} MiB; after {samples[-1][0]}: "
          f"{last / 1024:.1f} MiB; ratio {ratio:.2f} (bound {args.bound}); "
          f"{args.runs / elapsed:.0f} runs/s including pauses")
    return 0 if ratio <= args.bound else 1


if __name__ == "__main__":
    sys.exit(main())
