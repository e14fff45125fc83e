"""WebhookSender: sends the outbox's deliveries (runtime/webhooks/outbox.py).

Each delivery is one ``POST`` of the run (the reference's body: the Run object plus ``status``,
``run_started_at``, ``run_ended_at``, ``webhook_sent_at``, ``values`` and, on failure,
``error``; crons-webhooks.md 7.3) with ``Content-Type: application/json``, the configured
``webhooks.headers``, and two headers beyond the reference: ``X-Gateway-Delivery-Id`` (the same
on every attempt of a delivery: receivers can drop repeats) and, with ``signing_secret``,
``X-Gateway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``.

Retries, as the reference: on 5xx, 429, timeouts and connection errors, up to
``max_attempts`` (3) with exponential backoff and jitter (about 1, then 2 s, + up to 1 s);
never on other 4xx. The URL is checked against the policy again before every attempt (a host
that now resolves to a refused address is given up). Deliveries live in the store: one pending
when the process dies is sent after the restart (or by another process).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import orjson
from prometheus_client import Counter

from runtime.webhooks.outbox import Delivery, WebhookOutbox
from runtime.webhooks.policy import UrlPolicy, WebhookRefused, check_url

logger = logging.getLogger(__name__)

DELIVERIES = Counter("gateway_webhook_deliveries",
                     "Webhook deliveries finished by this process, by outcome", ["outcome"])
ATTEMPTS = Counter("gateway_webhook_attempts", "Webhook POSTs sent by this process")


@dataclass(frozen=True)
class WebhookConfig:
    """The ``webhooks`` settings (``langgraph.json`` / ``config.yaml``), resolved.

    Attributes:
        headers: sent with every delivery (``${{ env.X }}`` templates already resolved).
        policy: the URL policy (runtime/webhooks/policy.py).
        signing_secret: HMAC key of ``X-Gateway-Signature``; None: no signature.
        max_attempts: attempts per delivery (3, as the reference).
        disabled: ``http.disable_webhooks``: runs still run, nothing is sent or stored.
    """

    headers: dict[str, str] = field(default_factory=dict)
    policy: UrlPolicy = field(default_factory=UrlPolicy)
    signing_secret: str | None = None
    max_attempts: int = 3
    connect_timeout_s: float = 5.0
    timeout_s: float = 30.0
    disabled: bool = False


def backoff_s(attempt: int) -> float:
    """Seconds before the attempt after ``attempt`` (1-based): ``2^(n-1)`` + U(0, 1), at most
    60 (tenacity's ``wait_exponential_jitter`` defaults, which the reference uses)."""
    return min(60.0, 2.0 ** (attempt - 1) + random.random())


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def with_sent_at(body: str, sent_at: str) -> bytes:
    """The stored body with ``webhook_sent_at`` after ``run_ended_at`` (the reference's order)."""
    data: dict[str, Any] = orjson.loads(body)
    out: dict[str, Any] = {}
    for key, value in data.items():
        out[key] = value
        if key == "run_ended_at":
            out["webhook_sent_at"] = sent_at
    out.setdefault("webhook_sent_at", sent_at)
    return orjson.dumps(out)


class WebhookSender:
    """Sends due deliveries; run ``run`` in the runtime's task group."""

    def __init__(self, outbox: WebhookOutbox, config: WebhookConfig, *, poll_s: float = 0.25,
                 lease_s: float = 90.0, concurrency: int = 16) -> None:
        self.outbox = outbox
        self.config = config
        self.poll_s = poll_s
        self.lease_s = lease_s  # longer than one attempt can take (timeouts + DNS)
        self._slots = anyio.Semaphore(concurrency)

    async def run(self) -> None:
        """Claim and send until cancelled; a failing round is logged and retried."""
        timeout = httpx.Timeout(self.config.timeout_s, connect=self.config.connect_timeout_s)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client, \
                anyio.create_task_group() as tg:
            while True:
                try:
                    for delivery in await self.outbox.claim(datetime.now(UTC), 32,
                                                            self.lease_s):
                        await self._slots.acquire()
                        tg.start_soon(self._send_released, client, delivery)
                except Exception:
                    logger.exception("webhook sender: a round failed; retrying")
                await anyio.sleep(self.poll_s)

    async def _send_released(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self.send(client, delivery)
        except Exception:
            logger.exception("webhook delivery %s of run_id %s failed", delivery.delivery_id,
                             delivery.run_id)
        finally:
            self._slots.release()

    async def send(self, client: httpx.AsyncClient, delivery: Delivery) -> str:
        """One attempt; returns the outcome (``sent``, ``retry``, ``failed``, ``refused``)."""
        ids = f"run_id={delivery.run_id} thread_id={delivery.thread_id}"
        try:
            await anyio.to_thread.run_sync(check_url, delivery.url, self.config.policy)
        except WebhookRefused as exc:
            logger.warning("webhook of %s refused at delivery: %s", ids, exc)
            return await self._finish(delivery, "refused")
        sent_at = datetime.now(UTC).isoformat()
        body = with_sent_at(delivery.body, sent_at)
        headers = {**self.config.headers, "Content-Type": "application/json",
                   "X-Gateway-Delivery-Id": delivery.delivery_id}
        if self.config.signing_secret:
            headers["X-Gateway-Signature"] = signature(self.config.signing_secret,
                                                       int(time.time()), body)
        ATTEMPTS.inc()
        try:
            response = await client.post(delivery.url, content=body, headers=headers)
            status: int | None = response.status_code
            why = f"HTTP {status}"
        except httpx.TransportError as exc:
            status, why = None, f"{type(exc).__name__}: {exc}"
        if status is not None and 200 <= status < 300:
            logger.info("webhook of %s delivered (attempt %d)", ids, delivery.attempts)
            return await self._finish(delivery, "sent")
        retryable = status is None or status == 429 or status >= 500
        if retryable and delivery.attempts < self.config.max_attempts:
            wait = backoff_s(delivery.attempts)
            logger.warning("webhook of %s: attempt %d failed (%s); retrying in %.1f s", ids,
                           delivery.attempts, why, wait)
            await self.outbox.retry_at(delivery.delivery_id,
                                       datetime.now(UTC) + timedelta(seconds=wait))
            return "retry"
        logger.warning("webhook of %s failed after %d attempt(s): %s", ids, delivery.attempts,
                       why)
        return await self._finish(delivery, "failed")

    async def _finish(self, delivery: Delivery, outcome: str) -> str:
        DELIVERIES.labels(outcome).inc()
        await self.outbox.done(delivery.delivery_id)
        return outcome
