"""Shared fixtures: the anyio backend, one gateway process per session, fresh gateways."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.server import GatewayProcess, write_config


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway shared by the tests of the session (tests use their own threads)."""
    folder = tmp_path_factory.mktemp("gateway")
    server = GatewayProcess(write_config(folder)).start()
    yield server
    server.stop()


@pytest.fixture
def gateway_url(gateway: GatewayProcess) -> str:
    return gateway.url


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Factory of gateway processes on ``tmp_path`` (same data folder for every call)."""
    started: list[GatewayProcess] = []

    def make(**config: object) -> GatewayProcess:
        server = GatewayProcess(write_config(tmp_path, **config))
        started.append(server)
        return server

    yield make
    for server in started:
        server.kill()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database of this test's own (tests/services.py)."""
    from tests.services import fresh_database

    with fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def engine_config(request: pytest.FixtureRequest) -> dict[str, str]:
    """Config keys for a gateway on each storage engine in turn: SQLite (none), then a
    PostgreSQL database of the test's own (``database_url``)."""
    if request.param == "postgres":
        return {"database_url": str(request.getfixturevalue("pg_url"))}
    return {}


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    """``(redis_url, key_prefix)`` of this test's own (tests/services.py)."""
    from tests.services import fresh_redis_prefix

    with fresh_redis_prefix() as pair:
        yield pair
