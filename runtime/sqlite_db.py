"""One SQLite connection driven from worker threads, one thread hop per store operation.

Why not aiosqlite for the run store: aiosqlite hands every statement, fetch and commit to its
worker thread separately, so one admission (BEGIN, SELECT, SELECT, INSERT, UPDATE, COMMIT)
costs six hops between the event loop and the worker, each a GIL hand-off and a self-pipe
wake-up. Measured with the benchmark's trivial graph: 19 hops per run for the store alone.
Here a whole transaction is one synchronous function run in a worker thread: one hop.

Invariants:
1. Calls run one at a time, in call order, on one dedicated thread (``ThreadLane``): the
   connection is never used by two threads at once.
2. ``write(fn)`` runs ``fn`` between ``BEGIN IMMEDIATE`` and ``COMMIT`` in the same hop and
   rolls back if ``fn`` raises, so a transaction is atomic whatever happens to the caller.
3. An operation, once submitted, always runs to its end (commit or rollback), whatever happens
   to its caller: a cancelled caller stops waiting at once, and the result is dropped. Callers
   that must know the outcome (admission, start, finalization) shield their call.

``ThreadLane`` is used instead of ``anyio.to_thread.run_sync``: the latter looks up the root task
on every call (``find_root_task`` walks all tasks under uvicorn), which the benchmark's profile
showed as 13% of the event loop's busy time at one run at a time. Its result comes back through
one ``call_soon_threadsafe`` onto a plain future (no ``wrap_future``, no cancel scope): about
12% less CPU per run at c=8 than ``run_in_executor`` under a shielded scope.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

Op = Callable[[sqlite3.Connection], T]


def connect_wal(
    path: Path | str, explicit_transactions: bool = False,
    factory: type[sqlite3.Connection] = sqlite3.Connection,
) -> sqlite3.Connection:
    """A connection usable from the worker thread that runs it (``check_same_thread=False``)
    with the gateway's pragmas: WAL, ``synchronous=NORMAL``, a 5 s busy timeout. Creates the
    file's folder. ``explicit_transactions`` leaves transactions to the caller (``BEGIN``);
    otherwise sqlite3 opens them implicitly (what ``SqliteSaver`` expects). ``factory`` is
    the connection class (``sqlite3.connect(factory=...)``)."""
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, factory=factory)
    if explicit_transactions:
        conn.isolation_level = None
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class ThreadLane:
    """One dedicated worker thread running submitted functions one at a time, in order.

    ``await lane.run(fn)`` returns ``fn()``'s result (or raises its exception). Functions
    submitted while the thread is busy run back to back as one batch (at most ``MAX_BATCH``);
    after a batch, ``end_batch()`` runs once if set (the checkpointer commits there: one
    commit for the batch, a group commit), and only then are the batch's callers woken, with
    one ``call_soon_threadsafe`` per event loop. If ``end_batch`` raises, every call of the
    batch raises that exception. Close with ``lane.close()`` after the last call.
    """

    MAX_BATCH = 64

    def __init__(self, name: str, end_batch: Callable[[], object] | None = None) -> None:
        self.end_batch = end_batch
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=f"{name}_0", daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the lane and return its result (or raise its exception)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, loop, future))
        return await future

    def close(self) -> None:
        """Stop the thread once the calls already submitted have run."""
        self._queue.put(None)
        self._thread.join()

    def _serve(self) -> None:
        stop = False
        while not stop:
            batch: list[_Call] = []
            item = self._queue.get()
            while item is not None:
                batch.append(item)
                if len(batch) >= self.MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            stop = item is None
            settled = [_call(fn) for fn, _, _ in batch]
            if self.end_batch is not None and batch:
                try:
                    self.end_batch()
                except BaseException as failed:  # the batch's writes are not durable
                    settled = [(None, failed)] * len(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
            for (_, loop, future), (result, exc) in zip(batch, settled, strict=True):
                by_loop.setdefault(loop, []).append((future, result, exc))
            for loop, items in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle_all, items)
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    pass


_Call = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


def _call(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return fn(), None
    except BaseException as exc:  # handed to the caller, never lost in the thread
        return None, exc


class SqliteDb:
    """An open SQLite database; open with ``SqliteDb.open(path, schema)``."""

    def __init__(self, conn: sqlite3.Connection, lane: ThreadLane) -> None:
        self._conn = conn
        self._lane = lane

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
        def connect() -> sqlite3.Connection:
            conn = connect_wal(path, explicit_transactions=True)
            for name, (n_args, fn) in (functions or {}).items():
                conn.create_function(name, n_args, fn, deterministic=True)
            conn.executescript(schema)
            return conn

        lane = ThreadLane("sqlite-store")
        try:
            conn = await lane.run(connect)
            try:
                yield cls(conn, lane)
            finally:
                await lane.run(conn.close)
        finally:
            lane.close()

    async def read(self, op: Op[T]) -> T:
        """``op(conn)`` in one hop, outside any explicit transaction (a consistent snapshot
        per statement)."""
        return await self._lane.run(partial(op, self._conn))

    async def write(self, op: Op[T]) -> T:
        """``op(conn)`` inside ``BEGIN IMMEDIATE ... COMMIT`` in one hop; rolled back (and the
        exception re-raised) if ``op`` raises."""
        return await self._lane.run(partial(_transaction, self._conn, op))


def _settle_all(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, exc in items:
        if future.done():  # the caller was cancelled
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)


def _transaction(conn: sqlite3.Connection, op: Op[T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = op(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result
