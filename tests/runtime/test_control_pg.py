"""Unit tests of the PostgreSQL LISTEN/NOTIFY control channel (runtime/control/pg_notify.py):
two ``PgNotifyControlChannel`` instances on one fresh database are two gateway processes.
What every channel does is in tests/contract/test_control.py; here: the channels and payloads,
``NOTIFY_WAKE_SQL`` in the admission transaction (fires at COMMIT only), a terminated listener
(reconnect, deliver again, wake on return), PostgreSQL unreachable, malformed notifications.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import psycopg
import pytest

from runtime.control.pg_notify import (
    CANCEL_CHANNEL,
    NOTIFY_WAKE_SQL,
    WAKE_CHANNEL,
    PgNotifyControlChannel,
)
from runtime.types import CancelAction
from tests.contract.test_control import Recorder

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@asynccontextmanager
async def processes(
    pg_url: str, n: int = 2, **options: Any,
) -> AsyncIterator[list[PgNotifyControlChannel]]:
    """``n`` channels on one database, each running and listening."""
    channels: list[PgNotifyControlChannel] = []
    async with AsyncExitStack() as stack:
        tg = await stack.enter_async_context(anyio.create_task_group())
        for _ in range(n):
            channel = await stack.enter_async_context(
                PgNotifyControlChannel.connect(pg_url, **options))
            channels.append(channel)
            tg.start_soon(channel.run)
            assert await channel.wait_connected(5)
        stack.callback(tg.cancel_scope.cancel)
        yield channels


async def test_channels_and_payloads(pg_url: str) -> None:
    async with processes(pg_url, n=1) as [a], \
            await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        assert (a.wake_channel, a.cancel_channel) == (WAKE_CHANNEL, CANCEL_CHANNEL)
        await conn.execute(f"LISTEN {WAKE_CHANNEL}")
        await conn.execute(f"LISTEN {CANCEL_CHANNEL}")
        await a.publish_cancel("run-1", CancelAction.ROLLBACK)
        await a.publish_wake()
        got = []
        async for notify in conn.notifies(timeout=2, stop_after=2):
            got.append((notify.channel, notify.payload))
        assert got[0][0] == CANCEL_CHANNEL
        assert json.loads(got[0][1]) == {
            "run_id": "run-1", "action": "rollback", "from": a.instance_id}
        assert got[1] == (WAKE_CHANNEL, a.instance_id)


async def test_notify_in_the_admission_transaction_fires_at_commit_only(pg_url: str) -> None:
    async with processes(pg_url, n=2) as [a, b], \
            await psycopg.AsyncConnection.connect(pg_url) as conn:
        async with conn.transaction(force_rollback=True):
            await conn.execute(NOTIFY_WAKE_SQL)
        assert await b.wait_wake(0.3) is False  # rolled back: nothing
        async with conn.transaction():
            await conn.execute(NOTIFY_WAKE_SQL)
            assert await b.wait_wake(0.3) is False  # not before COMMIT
        started = time.monotonic()
        assert await b.wait_wake(2)
        assert time.monotonic() - started < 0.1
        assert await a.wait_wake(0.5)  # every process, the admitting one's included


async def test_a_terminated_listener_reconnects_and_delivers_again(
    pg_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="runtime.control")
    async with processes(pg_url) as [a, b], \
            await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
        rec = Recorder()
        b.on_cancel(rec)
        assert await b.wait_wake(0) is False
        for round_ in range(2):
            pid = b.listener_pid
            assert pid is not None
            await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            assert await b.wait_connected(5, connected=False)
            assert await b.wait_connected(5)
            assert b.listener_pid != pid
            assert await b.wait_wake(0)  # back: woken (wake-ups may have been lost)
            await a.publish_cancel(f"run-{round_}", CancelAction.INTERRUPT)
            await rec.wait_for(round_ + 1)
            await a.publish_wake()
            assert await b.wait_wake(2)
    lost = [r for r in caplog.records if "PostgreSQL unreachable" in r.getMessage()]
    back = [r for r in caplog.records if "PostgreSQL is back" in r.getMessage()]
    assert len(lost) == 2 and len(back) == 2, caplog.text


async def test_a_terminated_sender_connection_is_replaced(pg_url: str) -> None:
    async with processes(pg_url) as [a, b], \
            await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
        rec = Recorder()
        b.on_cancel(rec)
        await a.publish_cancel("run-1", CancelAction.INTERRUPT)
        await rec.wait_for(1)
        # every backend of this database but the listeners and ours: a's sender
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> ALL(%s)",
            ([a.listener_pid, b.listener_pid, admin.info.backend_pid],))
        for i in range(2, 6):  # the first may be dropped on the dead connection
            await a.publish_cancel(f"run-{i}", CancelAction.INTERRUPT)
            await anyio.sleep(0.05)
        await rec.wait_for(4)
        assert ("run-5", CancelAction.INTERRUPT) in rec.got


async def test_unreachable_postgres_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="runtime.control")
    async with PgNotifyControlChannel.connect("postgresql://postgres@127.0.0.1:1/postgres",
                                              retry_max_s=0.1) as channel:
        rec = Recorder()
        channel.on_cancel(rec)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(channel.run)
                started = time.monotonic()
                for i in range(100):
                    await channel.publish_cancel(f"run-{i}", CancelAction.INTERRUPT)
                    await channel.publish_wake()
                assert time.monotonic() - started < 0.1  # never waits on PostgreSQL
                assert len(rec.got) == 100
                assert await channel.wait_wake(0)
                started = time.monotonic()
                assert await channel.wait_wake(0.5) is False  # times out: the caller polls
                assert time.monotonic() - started >= 0.49
                assert not channel.connected
                tg.cancel_scope.cancel()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(warnings) <= 2, [r.getMessage() for r in warnings]


async def test_malformed_notifications_are_ignored(
    pg_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    async with processes(pg_url, n=1) as [a], \
            await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        rec = Recorder()
        a.on_cancel(rec)
        for payload in ("not json", "{}", '{"run_id": "r", "action": "explode"}',
                        '{"run_id": 7, "action": "interrupt"}', "[1]"):
            await conn.execute("SELECT pg_notify(%s, %s)", (CANCEL_CHANNEL, payload))
        await conn.execute("SELECT pg_notify(%s, %s)", (CANCEL_CHANNEL, json.dumps(
            {"run_id": "run-ok", "action": "interrupt", "from": "elsewhere"})))
        await rec.wait_for(1)
        assert rec.got == [("run-ok", CancelAction.INTERRUPT)]
        assert a.connected
        assert caplog.text.count("malformed cancel signal") == 5


async def test_pings_keep_a_quiet_connection(pg_url: str) -> None:
    """No traffic for many ping intervals: the ``SELECT 1`` rounds keep the connection."""
    async with processes(pg_url, n=2, ping_interval_s=0.05) as [a, b]:
        pid = b.listener_pid
        assert await b.wait_connected(0.6, connected=False) is False
        assert b.listener_pid == pid
        await a.publish_wake()
        assert await b.wait_wake(2)


async def test_split_wake_ups_cross_processes_without_redis(pg_url: str) -> None:
    """The scale-out composition with Redis away: claims are still woken across processes
    (PostgreSQL), cancels reach the publisher's own runs and fall back to the slow path."""
    from runtime.control.redis import RedisControlChannel
    from runtime.control.split import SplitControlChannel

    async with AsyncExitStack() as stack:
        tg = await stack.enter_async_context(anyio.create_task_group())
        split = []
        for _ in range(2):
            cancels = await stack.enter_async_context(RedisControlChannel.connect(
                "redis://127.0.0.1:1/0", key_prefix="gwtest:none:", retry_max_s=0.1))
            wakes = await stack.enter_async_context(PgNotifyControlChannel.connect(pg_url))
            split.append(SplitControlChannel(cancels, wakes))
            tg.start_soon(split[-1].run)
            assert await wakes.wait_connected(5)
        stack.callback(tg.cancel_scope.cancel)
        a, b = split
        mine, theirs = Recorder(), Recorder()
        a.on_cancel(mine)
        b.on_cancel(theirs)
        await a.publish_cancel("run-1", CancelAction.INTERRUPT)  # does not raise
        assert mine.got == [("run-1", CancelAction.INTERRUPT)]
        started = time.monotonic()
        await a.publish_wake()
        assert await b.wait_wake(2)
        assert time.monotonic() - started < 0.1
        assert theirs.got == []  # lost with Redis: the lease renewal finds it
