"""PostgreSQL + Redis for the benchmark: a database of its own (created, then dropped) and a
Redis key prefix of its own (its keys deleted after), on the services of this machine unless
``GATEWAY_BENCH_PG_URL`` (an admin URL) / ``GATEWAY_BENCH_REDIS_URL`` say otherwise."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

PG_ADMIN_URL = os.environ.get("GATEWAY_BENCH_PG_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("GATEWAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


class EnginesUnavailable(Exception):
    """PostgreSQL or Redis is not reachable."""


@contextmanager
def engines() -> Iterator[dict[str, str]]:
    """The gateway's environment settings for a fresh database and key prefix."""
    name = f"gw_bench_{uuid.uuid4().hex[:12]}"
    prefix = f"gwbench:{uuid.uuid4().hex[:8]}:"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
        client.ping()
    except (psycopg.OperationalError, redis.RedisError) as exc:
        raise EnginesUnavailable(f"{type(exc).__name__}: {exc}") from exc
    parts = urlsplit(PG_ADMIN_URL)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield {"GATEWAY_DATABASE_URL": url, "GATEWAY_REDIS_URL": REDIS_URL,
                   "GATEWAY_REDIS_KEY_PREFIX": prefix}
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
