"""Exclusive ownership of the data: one gateway process per SQLite data dir, and one per
PostgreSQL database unless Redis is configured too (then the processes share the database
through claims and leases: runtime/runs/cluster.py).

Two gateways on one data dir would both recover the same runs at start-up and execute them
twice (the second re-queues what the first is still running). So a process takes an exclusive
``flock`` on ``<data_dir>/gateway.lock`` before it opens any store and keeps it for its whole
life; the kernel releases it when the process dies, however it dies (SIGKILL included), so a
stale lock file never blocks a restart. The file holds the owner's pid, for the message.

The lock is re-entrant within a process (a reference count per data dir): ``gateway serve``
takes it before uvicorn starts, so a second gateway exits with status 2 and one line, and the
runtime's ``open_runtime`` takes it again for callers that embed the runtime directly.

On PostgreSQL (``database_url``) the same rule is a session-level advisory lock, held on a
connection of its own for the process's life (PostgreSQL drops it with the connection, so a
killed process never blocks a restart). The connection's ``application_name`` carries the pid,
for the message. Without Redis, cancels and streams have no way between processes, so the
lock refuses a second one; with ``redis_url`` the lock is not taken.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

LOCK_FILE = "gateway.lock"
PG_LOCK_KEY = 0x6777617465776179  # pg_try_advisory_lock key of "one gateway per database"

_held: dict[Path, tuple[int, int]] = {}  # data dir -> (fd, references)
_held_db: dict[str, tuple[psycopg.Connection[tuple[object, ...]], int]] = {}


class DataDirLocked(Exception):
    """Another process holds the data dir's lock.

    Attributes:
        data_dir: the data dir (absolute).
        pid: the holder's pid as written in the lock file, or None if unreadable.
    """

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        self.data_dir = data_dir
        self.pid = pid
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"data dir {data_dir} is in use by another gateway ({holder} holds "
            f"{data_dir / LOCK_FILE}); stop it or give this one another data_dir")


@contextmanager
def exclusive_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold the exclusive lock on ``data_dir`` (created if missing) for the ``with`` block.

    Raises:
        DataDirLocked: another process holds it (never waits).
        OSError: the data dir or its lock file cannot be created.
    """
    key = data_dir.resolve()
    if key in _held:
        fd, refs = _held[key]
        _held[key] = (fd, refs + 1)
    else:
        key.mkdir(parents=True, exist_ok=True)
        fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DataDirLocked(key, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[key] = (fd, 1)
    try:
        yield
    finally:
        fd, refs = _held[key]
        if refs > 1:
            _held[key] = (fd, refs - 1)
        else:
            del _held[key]
            os.close(fd)  # releases the flock; the file stays (removing it would race)


class DatabaseLocked(Exception):
    """Another gateway process holds the database's lock.

    Attributes:
        holder: the holder's ``application_name`` (``gateway pid <n>``), or None.
    """

    def __init__(self, url: str, holder: str | None) -> None:
        self.holder = holder
        where = url.rsplit("@", 1)[-1]  # never print a password
        super().__init__(
            f"database {where} is in use by another gateway ({holder or 'another process'}); "
            "several processes on one database need redis_url as well (README, Scaling "
            "out): set it on every process, or stop the other one")


@contextmanager
def exclusive_database(url: str) -> Iterator[None]:
    """Hold the advisory lock of the database at ``url`` for the ``with`` block.

    Raises:
        DatabaseLocked: another process holds it (never waits).
        psycopg.OperationalError: the database is unreachable.
    """
    if url in _held_db:
        conn, refs = _held_db[url]
        _held_db[url] = (conn, refs + 1)
    else:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10,
                               application_name=f"gateway pid {os.getpid()}")
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (PG_LOCK_KEY,)).fetchone()
            if not (row and row[0]):
                holder = conn.execute(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                    "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                    "AND ((l.classid::bigint << 32) | l.objid::bigint) = %s "
                    "AND l.database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())", (PG_LOCK_KEY,)).fetchone()
                raise DatabaseLocked(url, str(holder[0]) if holder else None)
        except BaseException:
            conn.close()
            raise
        _held_db[url] = (conn, 1)
    try:
        yield
    finally:
        conn, refs = _held_db[url]
        if refs > 1:
            _held_db[url] = (conn, refs - 1)
        else:
            del _held_db[url]
            conn.close()  # releases the advisory lock


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text.isdigit() else None
    except (OSError, UnicodeDecodeError):
        return None
