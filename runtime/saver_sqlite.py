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
   returned is committed (it survives a SIGKILL; with ``synchronous=NORMAL`` a power loss may
   undo the last commits, as before). ``SqliteSaver`` commits after each operation; its
   connection here (``GroupCommitConnection``) ignores those commits and the lane's
   ``GroupCommit`` (sqlite_db.py) commits at the end of each batch. On the benchmark's trivial
   graph at c=8 this took the server's CPU per run from about 5.2 to 3.5 ms.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.sqlite import SqliteSaver

from runtime.sqlite_db import GroupCommit, ThreadLane, connect_wal

T = TypeVar("T")


class GroupCommitConnection(sqlite3.Connection):
    """A connection whose ``commit()`` does nothing: ``SqliteSaver`` commits after every
    operation; here the lane's ``GroupCommit`` commits once per batch instead."""

    def commit(self) -> None:
        """Deferred to the end of the lane batch (``GroupCommit.end``)."""


class ThreadedSqliteSaver(SqliteSaver):
    """A ``SqliteSaver`` whose async API runs each operation in a worker thread.

    Open with ``ThreadedSqliteSaver.open(path)``; ``call(fn)`` runs any other function of the
    connection (``fn(conn)``) in the same FIFO lane, under the saver's lock, and commits.
    """

    def __init__(self, conn: sqlite3.Connection, lane: ThreadLane) -> None:
        super().__init__(conn)
        self.lane = lane

    @property
    def group(self) -> GroupCommit:
        """The group commit of the saver's lane (set once the connection is open)."""
        assert self.lane.group is not None
        return self.lane.group

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path) -> AsyncIterator[ThreadedSqliteSaver]:
        """Open (and create) the checkpoint file in WAL mode, set up its tables, close on exit.

        Raises:
            sqlite3.Error: the file cannot be opened or set up.
        """
        lane = ThreadLane("sqlite-checkpoints")

        def connect() -> ThreadedSqliteSaver:
            saver = cls(connect_wal(path, factory=GroupCommitConnection), lane)
            saver.setup()
            lane.group = GroupCommit(saver.conn)
            return saver

        try:
            saver = await lane.run(connect)
            try:
                yield saver
            finally:
                await lane.run(saver.group.close)
        finally:
            lane.close()

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` in the saver's lane, under its lock, committed with its batch; returns
        its result. If ``fn`` raises, its writes are rolled back (and only its own: the batch's
        earlier writes are committed first)."""
        def locked() -> T:
            with self.lock:
                self.group.end()
                try:
                    return fn(self.conn)
                except BaseException:
                    self.conn.rollback()
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
