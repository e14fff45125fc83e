"""Budget: the time bounds and sample counts of every scenario (``full`` and ``quick``).

Every loop stops at whichever comes first, its sample count or its time budget, so a slow
server (the reference polls its queue every 0.5 s) gets fewer samples, not a longer run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    wait_levels: tuple[int, ...] = (1, 8, 32)
    wait_s: float = 5.0  # per concurrency level
    wait_max_runs: int = 2000
    burst: int = 200  # concurrent /runs/wait in one burst
    get_ok_s: float = 2.0
    stream_runs: int = 30  # /runs/stream first-event samples
    stream_s: float = 12.0
    events: int = 2000  # custom events per emitter run
    sse_reps: int = 5
    sse_s: float = 8.0
    fanout_levels: tuple[int, ...] = (1, 10, 100)
    fanout_timeout_s: float = 90.0
    fanout_reps: int = 3
    fanout_rep_s: float = 12.0  # no further repetition of a level after this
    idle_runs: int = 50
    idle_joiners_per_run: int = 10
    growth_sizes: tuple[int, ...] = (1_000, 10_000)
    growth_samples: int = 30
    growth_s: float = 10.0  # per measured operation
    limit_s: float = 3.0  # per in-process loop
    long_turns: int = 400  # sequential /runs/wait turns on one thread (bench.longthread)
    long_s: float = 240.0  # a server's long thread stops here (the reference may be slow)


FULL = Budget()
QUICK = Budget(
    wait_s=2.0, wait_max_runs=500, get_ok_s=1.0, stream_runs=10, stream_s=5.0, sse_reps=3,
    sse_s=4.0, fanout_timeout_s=60.0, fanout_reps=1, growth_samples=15, growth_s=5.0, limit_s=1.5,
    long_turns=100, long_s=90.0,
)
