"""Run webhooks (issue 12) over real sockets: a gateway process, the official Python SDK, and a
real HTTP receiver on 127.0.0.1 that records every POST and answers by path (``/ok`` 200,
``/e500`` 500, ``/e429`` 429, ``/e404`` 404). The receiver is loopback, so these gateways set
``webhooks.url.disable_loopback: false``; the default policy is tested against the same
addresses and refuses them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import pytest
from langgraph_sdk import get_client

from tests.server import GatewayProcess, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

TOKEN = "secret-token-123"
SECRET = "signing-secret-456"
WEBHOOKS = {"url": {"disable_loopback": False, "require_https": False},
            "headers": {"X-Static": "static-value",
                        "Authorization": "Bearer ${{ env.LG_WEBHOOK_TOKEN }}"},
            "signing_secret": "${{ env.LG_WEBHOOK_SECRET }}"}


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


class Receiver:
    """An HTTP server on a free port recording ``(monotonic time, path, headers, body)``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.calls: list[tuple[float, str, dict[str, str], bytes]] = []
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                calls.append((time.monotonic(), self.path, dict(self.headers), body))
                code = {"/e500": 500, "/e429": 429, "/e404": 404}.get(
                    self.path.split("?")[0], 200)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def to(self, path: str) -> list[tuple[float, str, dict[str, str], bytes]]:
        return [c for c in self.calls if c[1].split("?")[0] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def hooked(make_gateway: Any, monkeypatch: pytest.MonkeyPatch) -> GatewayProcess:
    monkeypatch.setenv("LG_WEBHOOK_TOKEN", TOKEN)
    monkeypatch.setenv("LG_WEBHOOK_SECRET", SECRET)
    return make_gateway(webhooks=WEBHOOKS).start()  # type: ignore[no-any-return]


async def wait_calls(receiver: Receiver, path: str, n: int, timeout_s: float = 15) -> None:
    with anyio.fail_after(timeout_s):
        while True:
            if len(receiver.to(path)) >= n:
                return
            await anyio.sleep(0.05)


async def test_a_finished_run_posts_itself(hooked: GatewayProcess, receiver: Receiver) -> None:
    client = get_client(url=hooked.url)
    thread_id = str((await client.threads.create())["thread_id"])
    await client.runs.wait(thread_id, "echo", input=user("hi"),
                           webhook=receiver.url + "/ok?x=1")
    failed = await client.runs.create(thread_id, "fail", input=user("no"),
                                      webhook=receiver.url + "/ok")
    await client.runs.join(thread_id, failed["run_id"])
    await wait_calls(receiver, "/ok", 2)
    # the two deliveries are sent concurrently: tell them apart by their URL, not their order
    calls = receiver.to("/ok")
    (_, path, headers, raw), = [c for c in calls if c[1] == "/ok?x=1"]  # the query is kept
    (_, _, _, raw_failed), = [c for c in calls if c[1] == "/ok"]
    body = json.loads(raw)
    assert list(body)[:9] == ["run_id", "thread_id", "assistant_id", "created_at",
                              "updated_at", "metadata", "status", "kwargs",
                              "multitask_strategy"]
    assert list(body)[9:] == ["run_started_at", "run_ended_at", "webhook_sent_at", "values"]
    assert body["status"] == "success" and body["thread_id"] == thread_id
    assert body["values"]["messages"][-1]["content"] == "echo: hi"
    assert body["run_started_at"] <= body["run_ended_at"] <= body["webhook_sent_at"]
    assert headers["X-Static"] == "static-value"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"] == "application/json"
    t, mac = dict(p.split("=", 1) for p in headers["X-Gateway-Signature"].split(",")).values()
    expected = hmac.new(SECRET.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, expected)  # a receiver can verify it
    assert headers["X-Gateway-Delivery-Id"]
    failed_body = json.loads(raw_failed)
    assert failed_body["status"] == "error"
    assert failed_body["error"] == {"error": "ValueError", "message": "deliberate failure: no"}


async def test_retries_on_5xx_and_429_not_on_other_4xx(hooked: GatewayProcess,
                                                       receiver: Receiver) -> None:
    client = get_client(url=hooked.url)
    for path in ("/e500", "/e429", "/e404"):
        await client.runs.wait(None, "echo", input=user(path), webhook=receiver.url + path)
    await wait_calls(receiver, "/e500", 3)
    await wait_calls(receiver, "/e429", 3)
    await anyio.sleep(4)  # room for a (wrong) fourth attempt or a 404 retry
    assert len(receiver.to("/e500")) == 3 and len(receiver.to("/e429")) == 3
    assert len(receiver.to("/e404")) == 1
    times = [c[0] for c in receiver.to("/e500")]
    assert 0.9 <= times[1] - times[0] <= 2.5 and 1.9 <= times[2] - times[1] <= 3.5  # backoff
    ids = {c[2]["X-Gateway-Delivery-Id"] for c in receiver.to("/e500")}
    assert len(ids) == 1  # the same delivery id on every attempt
    stateless = json.loads(receiver.to("/e404")[0][3])
    assert stateless["values"] is None  # a temporary thread's run, as the reference


async def test_a_pending_delivery_survives_a_restart(make_gateway: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The receiver is down: the first attempt fails; the gateway is killed while the retry
    waits; after the restart (receiver up) the delivery is sent. (A process killed DURING an
    attempt leaves the delivery leased: it is sent again once the lease, 90 s, has passed.)"""
    monkeypatch.setenv("LG_WEBHOOK_TOKEN", TOKEN)
    monkeypatch.setenv("LG_WEBHOOK_SECRET", SECRET)
    first = make_gateway(webhooks=WEBHOOKS).start()
    port = free_port()  # nothing listens yet
    client = get_client(url=first.url)
    thread_id = str((await client.threads.create())["thread_id"])
    await client.runs.wait(thread_id, "echo", input=user("later"),
                           webhook=f"http://127.0.0.1:{port}/ok")
    db = first.config.parent / "data" / "gateway.sqlite"
    with anyio.fail_after(10):  # the first attempt failed and its retry is scheduled
        while True:
            soon = (datetime.now(UTC) + timedelta(seconds=30)).isoformat(
                timespec="microseconds")
            with sqlite3.connect(db) as conn:
                row = conn.execute("SELECT attempts, next_attempt_at FROM webhook_deliveries"
                                   ).fetchone()
            if row and row[0] >= 1 and row[1] < soon:  # not the 90 s lease of an attempt
                break
            await anyio.sleep(0.05)
    first.kill()
    receiver = Receiver(port)
    try:
        make_gateway(webhooks=WEBHOOKS).start()
        await wait_calls(receiver, "/ok", 1, 15)
        body = json.loads(receiver.to("/ok")[0][3])
        assert body["thread_id"] == thread_id and body["status"] == "success"
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone() == (0,)
    finally:
        receiver.close()


async def test_urls_are_checked_when_written(make_gateway: Any, receiver: Receiver) -> None:
    """The default policy (no ``webhooks`` block) refuses loopback, link-local/metadata,
    other schemes, relative URLs and names that do not resolve: 422, nothing created."""
    server = make_gateway().start()
    client = get_client(url=server.url)
    raw = client.http.client
    thread_id = str((await client.threads.create())["thread_id"])
    cases = {
        receiver.url + "/ok": "loopback IP range",
        f"http://localhost:{receiver.port}/ok": "localhost address",
        "http://169.254.169.254/latest/meta-data": "blocked IP range",
        "http://metadata.google.internal/": "metadata",
        "ftp://example.com/x": "scheme 'ftp' not allowed",
        "/relative": "Loopback webhooks",
        "http://user:pw@example.com/": "credentials",
        "http://no-such-host.invalid/": "DNS resolution failed",
        "http://[::ffff:127.0.0.1]/": "loopback IP range",
    }
    for url, reason in cases.items():
        r = await raw.post(f"/threads/{thread_id}/runs", json={"assistant_id": "echo",
                                                               "webhook": url})
        assert r.status_code == 422 and reason in r.json()["detail"], (url, r.text)
        r = await raw.post("/runs/crons", json={"assistant_id": "echo", "schedule": "@daily",
                                                "webhook": url})
        assert r.status_code == 422 and reason in r.json()["detail"], (url, r.text)
    assert await client.runs.list(thread_id) == []  # nothing was created
    assert await client.crons.count() == 0
    assert receiver.calls == []


async def test_metadata_addresses_stay_refused_with_loopback_allowed(
    hooked: GatewayProcess, receiver: Receiver,
) -> None:
    raw = get_client(url=hooked.url).http.client
    for url in ("http://169.254.169.254/", "http://[fe80::1]/", "http://0.0.0.0/",
                "http://metadata.google.internal/"):
        r = await raw.post("/runs", json={"assistant_id": "echo", "webhook": url})
        assert r.status_code == 422, (url, r.text)


async def test_disabled_webhooks_run_and_send_nothing(make_gateway: Any,
                                                      receiver: Receiver) -> None:
    server = make_gateway(webhooks={"url": {"disable_loopback": False}},
                          http={"disable_webhooks": True}).start()
    client = get_client(url=server.url)
    result = await client.runs.wait(None, "echo", input=user("quiet"),
                                    webhook=receiver.url + "/ok")
    assert result["messages"][-1]["content"] == "echo: quiet"
    await anyio.sleep(1)
    assert receiver.calls == []


async def test_a_cron_passes_its_webhook_to_every_fire(hooked: GatewayProcess,
                                                       receiver: Receiver) -> None:
    client = get_client(url=hooked.url)
    thread_id = str((await client.threads.create())["thread_id"])
    cron: dict[str, Any] = await client.crons.create_for_thread(  # type: ignore[assignment]
        thread_id, "echo", schedule="@every 1s", input=user("tick"),
        webhook=receiver.url + "/ok")
    await wait_calls(receiver, "/ok", 2)
    await client.crons.delete(cron["cron_id"])
    body = json.loads(receiver.to("/ok")[0][3])
    assert body["kwargs"]["config"]["configurable"]["cron_id"] == cron["cron_id"]
