"""The gateway's Prometheus metrics (``prometheus_client``; served by ``GET /metrics``).

Per process: each gateway process counts what it did itself (scrape every process, not the
load balancer's address). Names follow Prometheus conventions (``_total`` for counters, base
units):

- ``gateway_runs_finished_total{status}``: runs this process finished (``success``, ``error``,
  ``interrupted``, ``rollback``);
- ``gateway_run_duration_seconds{status}``: from the start of execution to the terminal write;
- ``gateway_runs_active``: runs executing in this process now;
- ``gateway_runs_pending``: runs waiting to start (the whole store's queue);
- ``gateway_streams_open``: SSE responses open in this process;
- ``gateway_cron_fires_total{outcome}``: cron ticks this process fired (``created``) or whose
  run could not be created (``error``);
- plus ``prometheus_client``'s process and Python collectors (CPU, memory, open fds, GC).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RUNS_FINISHED = Counter("gateway_runs_finished", "Runs this process finished, by terminal status",
                        ["status"])
RUN_DURATION = Histogram(
    "gateway_run_duration_seconds", "Seconds from a run's start to its terminal write",
    ["status"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
                         900, 3600))
RUNS_ACTIVE = Gauge("gateway_runs_active", "Runs executing in this process")
RUNS_PENDING = Gauge("gateway_runs_pending", "Runs waiting to start (the store's queue)")
STREAMS_OPEN = Gauge("gateway_streams_open", "SSE responses open in this process")
CRON_FIRES = Counter("gateway_cron_fires", "Cron ticks fired by this process, by outcome",
                     ["outcome"])


def run_finished(status: str, seconds: float) -> None:
    """Count one run that reached ``status`` after ``seconds`` of execution."""
    RUNS_FINISHED.labels(status).inc()
    RUN_DURATION.labels(status).observe(seconds)
