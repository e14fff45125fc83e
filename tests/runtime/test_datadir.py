"""Unit tests of the data dir lock (runtime/datadir.py): exclusive across processes,
re-entrant within one, released when the holder lets go."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.datadir import LOCK_FILE, DataDirLocked, exclusive_data_dir, exclusive_database
from tests.server import ROOT

PROBE = """
import sys
from pathlib import Path
from runtime.datadir import DataDirLocked, exclusive_data_dir
try:
    with exclusive_data_dir(Path(sys.argv[1])):
        print("acquired")
except DataDirLocked as exc:
    print(f"locked {exc.pid}")
"""


def probe(data_dir: Path) -> str:
    """Try the lock from another process; its one line of output."""
    return subprocess.run([sys.executable, "-c", PROBE, str(data_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, check=True).stdout.strip()


@pytest.mark.timeout(60)
def test_exclusive_across_processes_reentrant_within_one(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with exclusive_data_dir(data_dir):
        assert (data_dir / LOCK_FILE).read_text().strip() == str(os.getpid())
        with exclusive_data_dir(data_dir):  # gateway serve, then open_runtime
            assert probe(data_dir) == f"locked {os.getpid()}"
        assert probe(data_dir) == f"locked {os.getpid()}"  # still held by the outer block
    assert probe(data_dir) == "acquired"
    with exclusive_data_dir(data_dir):  # and this process can take it again
        pass


@pytest.mark.timeout(30)
def test_locked_error_names_the_dir_and_pid(tmp_path: Path) -> None:
    exc = DataDirLocked(tmp_path, 4242)
    assert str(tmp_path) in str(exc) and "process 4242" in str(exc)


PG_PROBE = """
import sys
from runtime.datadir import DatabaseLocked, exclusive_database
try:
    with exclusive_database(sys.argv[1]):
        print("acquired")
except DatabaseLocked as exc:
    print(f"locked {exc.holder}")
"""


@pytest.mark.timeout(60)
def test_one_gateway_per_database_until_claims_exist(pg_url: str) -> None:
    def pg_probe() -> str:
        return subprocess.run([sys.executable, "-c", PG_PROBE, pg_url], cwd=ROOT,
                              capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()

    with exclusive_database(pg_url):
        with exclusive_database(pg_url):  # re-entrant: gateway serve, then open_runtime
            assert pg_probe() == f"locked gateway pid {os.getpid()}"
        assert pg_probe() == f"locked gateway pid {os.getpid()}"
    assert pg_probe() == "acquired"
