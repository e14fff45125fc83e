"""The exclusive lock on a SQLite data dir: one gateway process per data dir.

Two gateways on one data dir would both recover the same runs at start-up and execute them
twice (the second re-queues what the first is still running). So a process takes an exclusive
``flock`` on ``<data_dir>/gateway.lock`` before it opens any store and keeps it for its whole
life; the kernel releases it when the process dies, however it dies (SIGKILL included), so a
stale lock file never blocks a restart. The file holds the owner's pid, for the message.

The lock is re-entrant within a process (a reference count per data dir): ``gateway serve``
takes it before uvicorn starts, so a second gateway exits with status 2 and one line, and the
runtime's ``open_runtime`` takes it again for callers that embed the runtime directly.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = "gateway.lock"

_held: dict[Path, tuple[int, int]] = {}  # data dir -> (fd, references)


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


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text.isdigit() else None
    except (OSError, UnicodeDecodeError):
        return None
