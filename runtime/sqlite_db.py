"""One SQLite connection driven from worker threads, one thread hop per store operation.

Why not aiosqlite for the run store: aiosqlite hands every statement, fetch and commit to its
worker thread separately, so one admission (BEGIN, SELECT, SELECT, INSERT, UPDATE, COMMIT)
costs six hops between the event loop and the worker, each a GIL hand-off and a self-pipe
wake-up. Measured with the benchmark's trivial graph: 19 hops per run for the store alone.
Here a whole transaction is one synchronous function run in a worker thread: one hop.

Invariants:
1. Calls are serialized by a ``CapacityLimiter(1)``: the connection is never used by two
   threads at once (it is opened with ``check_same_thread=False`` for that reason).
2. ``write(fn)`` runs ``fn`` between ``BEGIN IMMEDIATE`` and ``COMMIT`` in the same hop and
   rolls back if ``fn`` raises, so a transaction is atomic whatever happens to the caller.
3. A caller cancelled while its operation runs waits for the operation to finish (the worker
   is never abandoned mid-transaction); the cancellation is delivered right after.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")

Op = Callable[[sqlite3.Connection], T]


class SqliteDb:
    """An open SQLite database; open with ``SqliteDb.open(path, schema)``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._limiter = anyio.CapacityLimiter(1)

    @classmethod
    @asynccontextmanager
    async def open(
        cls, path: Path | str, schema: str,
        functions: dict[str, tuple[int, Callable[..., Any]]] | None = None,
    ) -> AsyncIterator[SqliteDb]:
        """Open (and create) ``path`` (``":memory:"`` for tests) in WAL mode, run ``schema``
        (a script of idempotent statements), register ``functions`` (``name -> (n_args,
        fn)``, deterministic), and close on exit.

        Raises:
            sqlite3.Error: the file cannot be opened or the schema fails.
        """
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            for name, (n_args, fn) in (functions or {}).items():
                conn.create_function(name, n_args, fn, deterministic=True)
            conn.executescript(schema)
            return conn

        conn = await anyio.to_thread.run_sync(connect)
        try:
            yield cls(conn)
        finally:
            await anyio.to_thread.run_sync(conn.close)

    async def read(self, op: Op[T]) -> T:
        """``op(conn)`` in one hop, outside any explicit transaction (a consistent snapshot
        per statement)."""
        return await anyio.to_thread.run_sync(partial(op, self._conn), limiter=self._limiter)

    async def write(self, op: Op[T]) -> T:
        """``op(conn)`` inside ``BEGIN IMMEDIATE ... COMMIT`` in one hop; rolled back (and the
        exception re-raised) if ``op`` raises."""
        return await anyio.to_thread.run_sync(partial(_transaction, self._conn, op),
                                              limiter=self._limiter)


def _transaction(conn: sqlite3.Connection, op: Op[T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = op(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result
