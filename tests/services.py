"""The PostgreSQL and Redis the scale-out tests use: the ones running on this machine (and on
CI's), 127.0.0.1:5432 (user ``postgres``, trust) and 127.0.0.1:6379, unless
``GATEWAY_TEST_PG_URL`` (an admin connection URL) / ``GATEWAY_TEST_REDIS_URL`` say otherwise.

Every test gets a database of its own (created, then dropped with ``WITH (FORCE)``) and a Redis
key prefix of its own (its keys deleted after), so runs never collide. When a service is absent
the test skips with the reason, unless ``GATEWAY_REQUIRE_SERVICES=1`` (set by ``.ci/run``): then
it fails, since a skipped PostgreSQL test on CI is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis

PG_ADMIN_URL = os.environ.get("GATEWAY_TEST_PG_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _unavailable(what: str, exc: Exception) -> None:
    reason = f"{what} is not reachable ({type(exc).__name__}: {exc})"
    if os.environ.get("GATEWAY_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}; GATEWAY_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(reason)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; its URL. Dropped afterwards."""
    name = f"gw_test_{uuid.uuid4().hex[:16]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        _unavailable(f"PostgreSQL at {PG_ADMIN_URL}", exc)
        raise
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _with_database(PG_ADMIN_URL, name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_redis_prefix() -> Iterator[tuple[str, str]]:
    """``(redis_url, key_prefix)`` for one test; every key under the prefix is deleted after."""
    prefix = f"gwtest:{uuid.uuid4().hex[:12]}:"
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        _unavailable(f"Redis at {REDIS_URL}", exc)
        raise
    try:
        yield REDIS_URL, prefix
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
