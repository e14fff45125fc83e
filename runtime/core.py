"""open_runtime(): the composition root. Opens the stores, loads the graphs, recovers runs left
by an earlier process, runs the scheduler, and shuts all of it down in order.

Start-up, before the server accepts requests:
  0. take the exclusive lock on ``data_dir`` (runtime/datadir.py): a second process on the same
     files fails here with DataDirLocked, before it opens or recovers anything;
  1. open the checkpointer and the run/thread store (SQLite files under ``data_dir``);
  2. load the graphs (a bad graph spec fails start-up with GraphLoadError);
  3. recover: runs left ``running`` by a dead process go back to ``pending`` with
     ``attempt + 1`` (at most ``max_attempts``, after which they end ``error``); runs left
     ``pending`` are queued again in their original order; their threads stay ``busy``;
  4. start the scheduler in the runtime's task group.

Shutdown (at most ``shutdown_timeout_s`` + ``finalize_timeout_s``):
  1. stop admitting runs (``create`` raises Unavailable -> 503);
  2. give running runs ``shutdown_timeout_s`` to finish;
  3. cancel the task group: runs still running go back to ``pending`` (not a user cancel, not
     a failed attempt) and their streams end;
  4. flush the durable event log (``bridge: sqlite``), close the store and the checkpointer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from runtime.bridge.memory import MemoryStreamBridge
from runtime.bridge.protocol import BridgeLimits
from runtime.bridge.sqlite import SqliteStreamBridge
from runtime.checkpointer import Saver, open_checkpointer
from runtime.datadir import exclusive_data_dir
from runtime.graphs import GraphRegistry
from runtime.runs import RunManager
from runtime.saver_tracking import TrackingSaver
from runtime.spec import RunLimits
from runtime.state import ThreadState
from runtime.store.protocol import Store
from runtime.store.sqlite import SqliteStore
from runtime.types import RunStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeConfig:
    """Everything the runtime needs.

    Attributes:
        graphs: ``{graph_id: "./path.py:attr"}``.
        base_dir: folder relative graph paths resolve against.
        data_dir: folder of ``gateway.sqlite`` and ``checkpoints.sqlite``; None keeps everything
            in memory (tests).
        max_attempts: executions a run gets across crashes before it ends ``error``.
        bridge_kind: ``memory``, or ``sqlite`` to also keep every event in
            ``data_dir/events.sqlite`` (resume and replay across restarts).
    """

    graphs: dict[str, str]
    base_dir: Path
    data_dir: Path | None
    bridge: BridgeLimits = field(default_factory=BridgeLimits)
    bridge_kind: str = "memory"
    limits: RunLimits = field(default_factory=RunLimits)
    max_attempts: int = 3


@dataclass
class Runtime:
    """The opened runtime: what the HTTP edge talks to."""

    manager: RunManager
    state: ThreadState
    store: Store
    graphs: GraphRegistry
    checkpointer: Saver


@asynccontextmanager
async def open_runtime(config: RuntimeConfig) -> AsyncIterator[Runtime]:
    """Open the runtime (see the module docstring for the start-up and shutdown sequence).

    Raises:
        DataDirLocked: another process serves ``config.data_dir``.
    """
    data = config.data_dir
    kind = "sqlite" if data is not None else "memory"
    with exclusive_data_dir(data) if data is not None else nullcontext():
        async with _open_runtime(config, data, kind) as runtime:
            yield runtime


@asynccontextmanager
async def _open_runtime(
    config: RuntimeConfig, data: Path | None, kind: str
) -> AsyncIterator[Runtime]:
    async with (
        open_checkpointer(kind, data / "checkpoints.sqlite" if data else None) as saver,
        SqliteStore.open(data / "gateway.sqlite" if data else ":memory:") as store,
    ):
        saver = TrackingSaver(saver)
        graphs = GraphRegistry(config.graphs, config.base_dir, saver)
        durable: SqliteStreamBridge | None = None
        if config.bridge_kind == "sqlite" and data is not None:
            durable = await SqliteStreamBridge.connect(data / "events.sqlite", config.bridge)
        bridge = durable if durable is not None else MemoryStreamBridge(config.bridge)
        manager = RunManager(store, bridge, graphs, saver, config.limits)
        await _recover(manager, config.max_attempts)
        state = ThreadState(store, graphs, saver, manager.bridge)
        runtime = Runtime(manager, state, store, graphs, saver)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(manager.run_scheduler, tg, name="run scheduler")
                if durable is not None:
                    tg.start_soon(durable.run_flusher, name="event flusher")
                try:
                    yield runtime
                finally:
                    manager.begin_shutdown()
                    with anyio.CancelScope(shield=True):
                        await manager.drain(config.limits.shutdown_timeout_s)
                    tg.cancel_scope.cancel()
        finally:
            if durable is not None:
                with anyio.CancelScope(shield=True):
                    await durable.aclose()


async def _recover(manager: RunManager, max_attempts: int) -> None:
    """Re-queue the runs an earlier process left pending or running (step 3 above)."""
    for run in await manager.store.active_runs():
        if run.status == RunStatus.RUNNING:
            attempt = run.attempt + 1
            if attempt > max_attempts:
                logger.warning("run %s: giving up after %d attempts", run.run_id, run.attempt)
                await manager.fail_recovered(run, max_attempts)
                continue
            await manager.store.requeue_run(run.run_id, attempt)
            run = run.replace(status=RunStatus.PENDING, attempt=attempt)
        logger.info("run %s: recovered (attempt %d)", run.run_id, run.attempt)
        manager.adopt(run)
