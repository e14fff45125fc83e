"""open_runtime(): the composition root. Opens the stores, loads the graphs, recovers runs left
by an earlier process, runs the scheduler, and shuts all of it down in order.

Two modes:
- **one process** (SQLite in ``data_dir``, memory, or PostgreSQL without Redis): ``RunManager``,
  whose scheduler decides in memory; the data is locked to this process (step 0);
- **cluster** (``database_url`` and ``redis_url``, ``bridge: redis``): ``ClusterRunManager``
  (runtime/runs/cluster.py): any number of processes on one database, runs claimed and leased
  there, cancels over Redis pub/sub, wake-ups over PostgreSQL NOTIFY. Steps 0 and 3 below are
  skipped: leases, not a start-up sweep, recover a dead process's runs.

Start-up, before the server accepts requests:
  0. take the exclusive lock on ``data_dir``, or on the PostgreSQL database with
     ``database_url`` (runtime/datadir.py): a second process on the same data fails here, with
     DataDirLocked or DatabaseLocked, before it opens or recovers anything;
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
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import anyio

from runtime.bridge.memory import MemoryStreamBridge
from runtime.bridge.protocol import BridgeLimits, SharedStreamBridge, StreamBridge
from runtime.bridge.redis import RedisStreamBridge
from runtime.bridge.sqlite import SqliteStreamBridge
from runtime.checkpointer import Saver, open_checkpointer
from runtime.control.pg_notify import PgNotifyControlChannel
from runtime.control.protocol import ControlChannel
from runtime.control.redis import RedisControlChannel
from runtime.control.split import SplitControlChannel
from runtime.crons.protocol import CronStore
from runtime.crons.scheduler import CronScheduler, ToSpec
from runtime.datadir import exclusive_data_dir, exclusive_database
from runtime.graphs import GraphRegistry
from runtime.kvstore import ItemStore, open_item_store
from runtime.runs import ClusterRunManager, RunManager
from runtime.saver_tracking import TrackingSaver
from runtime.spec import RunLimits
from runtime.state import ThreadState
from runtime.store.postgres import PostgresStore
from runtime.store.protocol import ClusterStore, Store
from runtime.store.sqlite import SqliteStore
from runtime.types import RunStatus
from runtime.webhooks.sender import WebhookConfig, WebhookSender

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
    database_url: str | None = None
    redis_url: str | None = None
    redis_key_prefix: str = "gw:"
    lease_s: float = 30.0
    cron_run_spec: ToSpec | None = None  # payload -> RunSpec; None: no cron scheduler
    cron_poll_s: float = 1.0
    webhooks: WebhookConfig | None = None  # None or disabled: nothing sent

    @property
    def cluster(self) -> bool:
        """N processes share the data: PostgreSQL and Redis, with the Redis bridge."""
        return bool(self.database_url and self.redis_url and self.bridge_kind == "redis")


@dataclass
class Runtime:
    """The opened runtime: what the HTTP edge talks to."""

    manager: RunManager
    state: ThreadState
    store: Store
    graphs: GraphRegistry
    checkpointer: Saver
    crons: CronStore
    items: ItemStore


@asynccontextmanager
async def open_runtime(config: RuntimeConfig) -> AsyncIterator[Runtime]:
    """Open the runtime (see the module docstring for the start-up and shutdown sequence).

    Raises:
        DataDirLocked / DatabaseLocked: another process serves the same data.
        psycopg.OperationalError, redis.RedisError: PostgreSQL or Redis unreachable.
    """
    async with AsyncExitStack() as stack:
        inner, store = await _open_stores(config, stack)
        saver = TrackingSaver(inner)
        item_store = await stack.enter_async_context(
            open_item_store(config.data_dir, config.database_url))
        graphs = GraphRegistry(config.graphs, config.base_dir, saver, item_store)
        bridge, background = await _open_bridge(config, stack)
        control: ControlChannel | None = None
        manager: RunManager
        if config.cluster:
            assert config.database_url and config.redis_url
            control = SplitControlChannel(
                await stack.enter_async_context(RedisControlChannel.connect(
                    config.redis_url, key_prefix=config.redis_key_prefix)),
                await stack.enter_async_context(
                    PgNotifyControlChannel.connect(config.database_url)))
            manager = ClusterRunManager(
                cast(ClusterStore, store), cast(SharedStreamBridge, bridge), graphs, saver,
                config.limits, control, lease_s=config.lease_s,
                max_attempts=config.max_attempts)
        else:
            manager = RunManager(store, bridge, graphs, saver, config.limits)
            await _recover(manager, config.max_attempts)
        state = ThreadState(store, graphs, saver, manager.bridge)
        crons = store.crons
        runtime = Runtime(manager, state, store, graphs, saver, crons, ItemStore(item_store))
        async with anyio.create_task_group() as tg:
            if config.webhooks is not None and not config.webhooks.disabled:
                manager.webhooks = store.webhooks
                sender = WebhookSender(store.webhooks, config.webhooks)
                tg.start_soon(sender.run, name="webhook sender")
            if config.cron_run_spec is not None:
                scheduler = CronScheduler(crons, manager, config.cron_run_spec,
                                          poll_s=config.cron_poll_s)
                tg.start_soon(scheduler.run, name="cron scheduler")
            if control is not None:
                tg.start_soon(control.run, name="control channel")
            tg.start_soon(manager.run_scheduler, tg, name="run scheduler")
            if background is not None:
                tg.start_soon(background, name="bridge background")
            try:
                yield runtime
            finally:
                manager.begin_shutdown()
                with anyio.CancelScope(shield=True):
                    await manager.drain(config.limits.shutdown_timeout_s)
                tg.cancel_scope.cancel()


async def _open_stores(config: RuntimeConfig, stack: AsyncExitStack) -> tuple[Saver, Store]:
    """Step 0 and 1: the lock on the data, then the checkpointer and the run/thread store
    (PostgreSQL with ``database_url``, else SQLite files in ``data_dir``, else memory)."""
    data, url = config.data_dir, config.database_url
    if url:
        if not config.cluster:  # one process on this database (module docstring)
            stack.enter_context(exclusive_database(url))
        saver = await stack.enter_async_context(open_checkpointer("postgres", None, url))
        return saver, await stack.enter_async_context(PostgresStore.open(url))
    if data is not None:
        stack.enter_context(exclusive_data_dir(data))
    saver = await stack.enter_async_context(
        open_checkpointer("sqlite" if data else "memory",
                          data / "checkpoints.sqlite" if data else None))
    store = await stack.enter_async_context(
        SqliteStore.open(data / "gateway.sqlite" if data else ":memory:"))
    return saver, store


async def _open_bridge(
    config: RuntimeConfig, stack: AsyncExitStack
) -> tuple[StreamBridge, Callable[[], Coroutine[Any, Any, None]] | None]:
    """The StreamBridge and the background task it needs (run in the runtime's task group);
    it is closed after the task group (its queued events flushed first)."""
    if config.bridge_kind == "redis" and config.redis_url:
        redis_bridge = await stack.enter_async_context(RedisStreamBridge.connect(
            config.redis_url, config.bridge, key_prefix=config.redis_key_prefix))
        return redis_bridge, redis_bridge.run
    if config.bridge_kind == "sqlite" and config.data_dir is not None:
        durable = await SqliteStreamBridge.connect(config.data_dir / "events.sqlite",
                                                   config.bridge)

        async def close() -> None:
            with anyio.CancelScope(shield=True):
                await durable.aclose()

        stack.push_async_callback(close)
        return durable, durable.run_flusher
    return MemoryStreamBridge(config.bridge), None


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
