"""One SQLite connection driven from worker threads, one thread hop per store operation.

Why not aiosqlite for the run store: aiosqlite hands every statement, fetch and commit to its
worker thread separately, so one admission (BEGIN, SELECT, SELECT, INSERT, UPDATE, COMMIT)
costs six hops between the event loop and the worker, each a GIL hand-off and a self-pipe
wake-up. Measured with the benchmark's trivial graph: 19 hops per run for the store alone.
Here a whole transaction is one synchronous function run in a worker thread: one hop.

Invariants:
1. Calls run one at a time, in call order, on one dedicated thread (``ThreadLane``): the
   connection is never used by two threads at once.
2. ``write(fn)`` runs ``fn`` atomically in one hop: inside the lane batch's transaction
   (``BEGIN IMMEDIATE``), in a savepoint of its own that is rolled back if ``fn`` raises. The
   batch commits once at its end (group commit), before any of its callers is woken, so a
   write that has returned is committed, whatever happens to the caller afterwards.
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


class GroupCommit:
    """Group commit on one connection: the calls of one ``ThreadLane`` batch share one write
    transaction, committed once at the end of the batch (``end()``), before their callers are
    woken. Every method runs on the lane's thread.

    If a statement fails and SQLite rolls back the whole transaction (disk full, I/O error),
    the batch is lost: its later calls raise without running and ``end()`` raises, so no
    caller of the batch is told its write landed.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._lost = False
        self._closed = False
        self._ends = 0  # calls of end(): a call that ends the batch itself is not a loss

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` as part of the batch (raises sqlite3.OperationalError if it is lost)."""
        if self._lost:
            raise sqlite3.OperationalError("SQLite rolled back this batch after an error")
        was_open, ends = self.conn.in_transaction, self._ends
        try:
            return fn()
        except sqlite3.Error:
            if was_open and not self.conn.in_transaction and self._ends == ends:
                self._lost = True  # SQLite rolled back the batch's transaction, not us
            raise

    def end(self) -> None:
        """Commit the batch's transaction, if one is open.

        Raises:
            sqlite3.Error: the batch was lost or the commit failed; what was left of the
                transaction is rolled back, so none of it lands with a later batch.
        """
        self._ends += 1
        lost, self._lost = self._lost, False
        if self._closed or (not self.conn.in_transaction and not lost):
            return
        try:
            if lost:
                raise sqlite3.OperationalError("SQLite rolled back this batch after an error")
            sqlite3.Connection.commit(self.conn)  # the real commit, whatever the subclass
        except BaseException:
            if self.conn.in_transaction:
                sqlite3.Connection.rollback(self.conn)
            raise

    def close(self) -> None:
        """Commit what the batch wrote so far (``end()``), then close the connection."""
        try:
            self.end()
        finally:
            self._closed = True
            self.conn.close()


class ThreadLane:
    """One dedicated worker thread running submitted functions one at a time, in order.

    ``await lane.run(fn)`` returns ``fn()``'s result (or raises its exception). Functions
    submitted while the thread is busy run back to back as one batch (at most ``MAX_BATCH``),
    and the batch's callers are woken together, with one ``call_soon_threadsafe`` per event
    loop. With ``group`` set, each function runs through ``group.call`` and the batch ends
    with ``group.end()`` before anyone is woken; if that raises, every call of the batch
    raises it. Close with ``lane.close()`` after the last call.
    """

    MAX_BATCH = 64

    def __init__(self, name: str) -> None:
        self.group: GroupCommit | None = None
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
            group = self.group
            settled = [_call(fn if group is None else partial(group.call, fn))
                       for fn, _, _ in batch]
            if group is not None and batch:
                try:
                    group.end()
                except BaseException as failed:  # the batch's writes did not land
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
            group = lane.group = GroupCommit(conn)
            try:
                yield cls(conn, lane)
            finally:
                await lane.run(group.close)
        finally:
            lane.close()

    async def read(self, op: Op[T]) -> T:
        """``op(conn)`` in one hop: a consistent snapshot per statement, which includes the
        writes of the same lane batch (committed before the caller is woken)."""
        return await self._lane.run(partial(op, self._conn))

    async def write(self, op: Op[T]) -> T:
        """``op(conn)`` atomically in one hop, committed before this returns; rolled back (and
        the exception re-raised) if ``op`` raises.

        Raises:
            sqlite3.Error: from ``op``, or the batch's commit failed (nothing of it landed).
        """
        return await self._lane.run(partial(_savepoint, self._conn, op))


def _settle_all(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, exc in items:
        if future.done():  # the caller was cancelled
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)


def _savepoint(conn: sqlite3.Connection, op: Op[T]) -> T:
    """``op(conn)`` in the batch's write transaction (begun here if need be), in a savepoint:
    if ``op`` raises, only its own writes are undone."""
    if not conn.in_transaction:
        conn.execute("BEGIN IMMEDIATE")
    conn.execute("SAVEPOINT op")
    try:
        result = op(conn)
    except BaseException:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        raise
    conn.execute("RELEASE op")
    return result
