"""ThreadedSqliteSaver: LangGraph's ``SqliteSaver`` with its async methods, one hop each.

``AsyncSqliteSaver`` (langgraph-checkpoint-sqlite) sends every cursor, execute, fetch, commit
and close of one checkpoint operation to aiosqlite's worker thread as a separate hop; the
benchmark's trivial two-node run made 36 such hops, all queued on one connection, and under
load they (not SQLite) bounded how many runs per second a process carries. This saver keeps
the library's own SQL and serialization (the synchronous ``SqliteSaver``, same tables, same
file format, so existing checkpoint files stay readable) and runs each whole operation in a
worker thread: one hop per ``aput``, ``aput_writes``, ``aget_tuple`` or ``alist``.

Invariants:
1. Operations run one at a time, in the order they were called, on one dedicated thread
   (``ThreadLane``), so a statement issued after a write has started runs after that write
   (``TrackingSaver.settled`` and rollback rely on it).
2. A submitted operation always runs to its end; a checkpoint write is never left half-done,
   whatever happens to its caller.
3. Group commit: operations queued together run as one batch of the lane and are committed
   once, after the batch and before any of their callers is woken, so an ``aput`` that has
   returned is on disk (``synchronous=NORMAL``), as before. ``SqliteSaver`` commits after each
   operation; its connection here (``GroupCommitConnection``) turns those commits into a
   mark, and the lane's end of batch commits. Measured on the benchmark's trivial graph at
   c=8: fewer commits and wake-ups per run, less CPU per run (see README, Benchmark).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.sqlite import SqliteSaver

from runtime.sqlite_db import ThreadLane, connect_wal

T = TypeVar("T")


class GroupCommitConnection(sqlite3.Connection):
    """A connection whose ``commit()`` is deferred to ``flush()`` (the lane's end of batch)."""

    def commit(self) -> None:
        """Deferred: the transaction stays open until ``flush()``."""

    def flush(self) -> None:
        """Commit the open transaction, if any.

        Raises:
            sqlite3.Error: the commit failed; the transaction is rolled back, so writes whose
                callers were told of the failure never land with a later batch.
        """
        if not self.in_transaction:
            return
        try:
            super().commit()
        except BaseException:
            self.rollback()
            raise


class ThreadedSqliteSaver(SqliteSaver):
    """A ``SqliteSaver`` whose async API runs each operation in a worker thread.

    Open with ``ThreadedSqliteSaver.open(path)``; ``call(fn)`` runs any other function of the
    connection (``fn(conn)``) in the same FIFO lane, under the saver's lock, and commits.
    """

    def __init__(self, conn: sqlite3.Connection, lane: ThreadLane) -> None:
        super().__init__(conn)
        self.lane = lane

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path) -> AsyncIterator[ThreadedSqliteSaver]:
        """Open (and create) the checkpoint file in WAL mode, set up its tables, close on exit.

        Raises:
            sqlite3.Error: the file cannot be opened or set up.
        """
        lane = ThreadLane("sqlite-checkpoints")

        def connect() -> ThreadedSqliteSaver:
            conn = connect_wal(path, factory=GroupCommitConnection)
            assert isinstance(conn, GroupCommitConnection)
            saver = cls(conn, lane)
            saver.setup()
            conn.flush()
            lane.end_batch = conn.flush
            return saver

        def close(saver: ThreadedSqliteSaver) -> None:
            lane.end_batch = None
            cast(GroupCommitConnection, saver.conn).flush()
            saver.conn.close()

        try:
            saver = await lane.run(connect)
            try:
                yield saver
            finally:
                await lane.run(partial(close, saver))
        finally:
            lane.close()

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` in the saver's lane, under its lock, committed with its batch; returns
        its result. If ``fn`` raises, its writes are rolled back (and only its own: the batch's
        earlier writes are committed first)."""
        def locked() -> T:
            with self.lock:
                conn = cast(GroupCommitConnection, self.conn)
                conn.flush()
                try:
                    return fn(conn)
                except BaseException:
                    conn.rollback()
                    raise

        return await self.lane.run(locked)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self.lane.run(partial(self.get_tuple, config))

    async def alist(
        self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None, limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        def collect() -> list[CheckpointTuple]:
            items: Iterator[CheckpointTuple] = self.list(config, filter=filter, before=before,
                                                         limit=limit)
            return list(items)

        for item in await self.lane.run(collect):
            yield item

    async def aput(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self.lane.run(partial(self.put, config, checkpoint, metadata, new_versions))

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
        task_path: str = "",
    ) -> None:
        await self.lane.run(partial(self.put_writes, config, writes, task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        await self.lane.run(partial(self.delete_thread, thread_id))

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        return await self.lane.run(partial(self.get_delta_channel_history, config=config,
                                       channels=channels))
