"""Unit tests of the Redis control channel (runtime/control/redis.py): two
``RedisControlChannel`` instances on one key prefix are two gateway processes. What every
channel does is in tests/contract/test_control.py; here: the channel names and payloads, a
dropped connection (reconnect, deliver again, wake on return), Redis unreachable (publishing
never raises, waits time out), a cancel nobody holds, malformed messages, the sender's
coalescing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from runtime.control.redis import RedisControlChannel
from runtime.types import CancelAction
from tests.contract.test_control import Recorder

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@asynccontextmanager
async def processes(
    redis_prefix: tuple[str, str], n: int = 2, **options: Any,
) -> AsyncIterator[list[RedisControlChannel]]:
    """``n`` channels on one prefix, each running and subscribed; channel i's connections are
    named ``<prefix>p<i>``."""
    url, prefix = redis_prefix
    channels: list[RedisControlChannel] = []
    async with AsyncExitStack() as stack:
        tg = await stack.enter_async_context(anyio.create_task_group())
        for i in range(n):
            channel = await stack.enter_async_context(RedisControlChannel.connect(
                url, key_prefix=prefix, client_name=f"{prefix}p{i}", **options))
            channels.append(channel)
            tg.start_soon(channel.run)
            assert await channel.wait_connected(5)
        stack.callback(tg.cancel_scope.cancel)  # first thing on exit: stop the loops
        yield channels


@asynccontextmanager
async def raw_redis(redis_prefix: tuple[str, str]) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_prefix[0], decode_responses=False)
    try:
        yield client
    finally:
        await client.aclose()


async def kill_subscriber(client: aioredis.Redis, name: str) -> int:
    """Kill the pub/sub connection(s) named ``name`` (only ours: the Redis is shared)."""
    killed = 0
    for info in await client.client_list():
        if info.get("name") == name and int(info.get("sub", 0) or 0) > 0:
            await client.execute_command("CLIENT", "KILL", "ID", info["id"])
            killed += 1
    return killed


async def test_channels_and_payloads(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    async with raw_redis(redis_prefix) as client, processes(redis_prefix, n=1) as [a]:
        assert a.cancel_channel == f"{prefix}control:cancel"
        assert a.wake_channel == f"{prefix}control:wake"
        pubsub: Any = client.pubsub()
        await pubsub.subscribe(a.cancel_channel, a.wake_channel)
        for _ in range(2):
            assert (await pubsub.get_message(timeout=2))["type"] == "subscribe"
        await a.publish_cancel("run-1", CancelAction.ROLLBACK)
        message = await pubsub.get_message(timeout=2)
        assert message["channel"] == a.cancel_channel.encode()
        assert json.loads(message["data"]) == {
            "run_id": "run-1", "action": "rollback", "from": a.instance_id}
        await a.publish_wake()
        message = await pubsub.get_message(timeout=2)
        assert message["channel"] == a.wake_channel.encode()
        assert message["data"] == a.instance_id.encode()
        await pubsub.aclose()


async def test_a_dropped_connection_reconnects_and_delivers_again(
    redis_prefix: tuple[str, str], caplog: pytest.LogCaptureFixture,
) -> None:
    _url, prefix = redis_prefix
    caplog.set_level(logging.INFO, logger="runtime.control")
    async with raw_redis(redis_prefix) as client, processes(redis_prefix) as [a, b]:
        rec = Recorder()
        b.on_cancel(rec)
        assert await b.wait_wake(0) is False
        for round_ in range(2):  # twice: the second outage is logged again
            assert await kill_subscriber(client, f"{prefix}p1") == 1
            assert await b.wait_connected(5, connected=False)
            assert await b.wait_connected(5)
            # back: the wake flag is set (wake-ups may have been lost meanwhile)
            assert await b.wait_wake(0)
            await a.publish_cancel(f"run-{round_}", CancelAction.INTERRUPT)
            await rec.wait_for(round_ + 1)
            started = time.monotonic()
            await a.publish_wake()
            assert await b.wait_wake(2)
            assert time.monotonic() - started < 0.1
    lost = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    back = [r for r in caplog.records if "Redis is back" in r.getMessage()]
    assert len(lost) == 2 and len(back) == 2, caplog.text


async def test_unreachable_redis_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="runtime.control")
    async with RedisControlChannel.connect("redis://127.0.0.1:1/0", key_prefix="gwtest:x:",
                                           retry_max_s=0.1) as channel:
        rec = Recorder()
        channel.on_cancel(rec)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(channel.run)
                started = time.monotonic()
                for i in range(100):
                    await channel.publish_cancel(f"run-{i}", CancelAction.INTERRUPT)
                    await channel.publish_wake()
                assert time.monotonic() - started < 0.1  # never waits on Redis
                assert len(rec.got) == 100  # local delivery still works
                assert await channel.wait_wake(0)  # and the local wake-up
                started = time.monotonic()
                assert await channel.wait_wake(0.5) is False  # times out: the caller polls
                assert time.monotonic() - started >= 0.49
                assert not channel.connected
                assert await channel.wait_connected(0.1) is False
                tg.cancel_scope.cancel()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    # one warning per outage per loop (listener, sender), not one per attempt
    assert 1 <= len(warnings) <= 2, [r.getMessage() for r in warnings]


async def test_a_cancel_for_a_run_nobody_holds_is_ignored(
    redis_prefix: tuple[str, str],
) -> None:
    """The RunManager's handler: cancel the local run if held, else nothing."""
    async with processes(redis_prefix, n=3) as [a, b, c]:
        held: dict[str, dict[str, list[CancelAction]]] = {
            "b": {"run-b": []}, "c": {"run-c": []}}
        seen = Recorder()

        def handler_of(name: str) -> Any:
            def handler(run_id: str, action: CancelAction) -> None:
                if run_id in held[name]:
                    held[name][run_id].append(action)
            return handler

        b.on_cancel(handler_of("b"))
        c.on_cancel(handler_of("c"))
        c.on_cancel(seen)
        await a.publish_cancel("run-nobody", CancelAction.INTERRUPT)
        await a.publish_cancel("run-c", CancelAction.ROLLBACK)
        await seen.wait_for(2)
        await anyio.sleep(0.05)
        assert held == {"b": {"run-b": []}, "c": {"run-c": [CancelAction.ROLLBACK]}}


async def test_malformed_messages_are_ignored(
    redis_prefix: tuple[str, str], caplog: pytest.LogCaptureFixture,
) -> None:
    async with raw_redis(redis_prefix) as client, processes(redis_prefix, n=1) as [a]:
        rec = Recorder()
        a.on_cancel(rec)
        for payload in (b"not json", b"{}", b'{"run_id": "r", "action": "explode"}',
                        b'{"run_id": 7, "action": "interrupt"}', b"[1]"):
            await client.publish(a.cancel_channel, payload)
        await client.publish(a.cancel_channel, json.dumps(
            {"run_id": "run-ok", "action": "interrupt", "from": "elsewhere"}))
        await rec.wait_for(1)
        assert rec.got == [("run-ok", CancelAction.INTERRUPT)]
        assert a.connected
        assert caplog.text.count("malformed cancel signal") == 5


async def test_wake_ups_are_coalesced_before_redis(redis_prefix: tuple[str, str]) -> None:
    """A burst of wake-ups is a few PUBLISHes, not one each: nothing queues without bound."""
    async with raw_redis(redis_prefix) as client, processes(redis_prefix, n=2) as [a, b]:
        pubsub: Any = client.pubsub()
        await pubsub.subscribe(a.wake_channel)
        assert (await pubsub.get_message(timeout=2))["type"] == "subscribe"
        for _ in range(1000):
            await a.publish_wake()
        assert await b.wait_wake(2)
        count = 0
        with anyio.move_on_after(0.3):
            while True:
                if await pubsub.get_message(timeout=0.3) is not None:
                    count += 1
        assert 1 <= count <= 3
        await pubsub.aclose()


async def test_a_silent_redis_is_detected_by_the_ping(redis_prefix: tuple[str, str]) -> None:
    """A connection that stops answering (here: PINGs swallowed) is dropped and replaced."""
    async with processes(redis_prefix, n=1, ping_interval_s=0.1) as [a]:
        original = a._redis.pubsub

        def muted_pubsub() -> Any:
            pubsub: Any = original()

            async def ping(*args: Any) -> None:
                return None  # never sent: no pong comes back

            pubsub.ping = ping
            return pubsub

        a._redis.pubsub = muted_pubsub  # type: ignore[method-assign]
        # kill the current connection so the muted pubsub takes over
        async with raw_redis(redis_prefix) as client:
            assert await kill_subscriber(client, f"{redis_prefix[1]}p0") == 1
        assert await a.wait_connected(5)
        assert await a.wait_connected(3, connected=False)  # 3 x 0.1 s without a reply
        a._redis.pubsub = original  # type: ignore[method-assign]
        assert await a.wait_connected(5)


async def test_pings_keep_a_quiet_connection(redis_prefix: tuple[str, str]) -> None:
    """No traffic for many ping intervals: the PONGs keep the connection (no false alarm)."""
    async with processes(redis_prefix, n=2, ping_interval_s=0.05) as [a, b]:
        assert await b.wait_connected(0.6, connected=False) is False
        await a.publish_wake()
        assert await b.wait_wake(2)
