"""Fixtures of the contract suite: one ``store`` per implementation of ``runtime.store.protocol``.

``store`` is parametrized over ``sqlite`` (a file in ``tmp_path``) and ``postgres`` (a fresh
database of the test's own, ``pg_url``; skipped with the reason when PostgreSQL is absent, failed
on CI). A test that uses ``store`` runs once per engine: ``test_x[sqlite]``, ``test_x[postgres]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime.store.postgres import PostgresStore
from runtime.store.protocol import Store
from runtime.store.sqlite import SqliteStore


@pytest.fixture(params=["sqlite", "postgres"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """``(engine, where)``: a SQLite file path or a PostgreSQL URL."""
    if request.param == "postgres":
        return "postgres", str(request.getfixturevalue("pg_url"))
    return "sqlite", str(tmp_path / "store.sqlite")


@pytest.fixture
async def store(store_target: tuple[str, str]) -> AsyncIterator[Store]:
    engine, where = store_target
    if engine == "postgres":
        async with PostgresStore.open(where) as pg:
            yield pg
    else:
        async with SqliteStore.open(where) as lite:
            yield lite
