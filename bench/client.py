"""The load generator's building blocks: pooled raw httpx clients (HTTP/1.1), JSON calls,
SSE frame counting, a closed-loop driver and percentiles.

``Clients`` (with ``ports``: round robin over N gateway processes) shards connections over
several AsyncClients of at most 16 connections each:
httpcore 1.0's pool bookkeeping is quadratic in the number of pooled connections (every
request start and end walks all connections once per idle connection), which at 200
connections cost ~15 ms of client CPU per request and, once a burst had filled the pool,
slowed every later scenario. Sharding keeps the load generator cheap and its cost constant.

SSE frames are counted on raw bytes (``event: <name>`` markers, a match split across two
chunks is still counted once), so the client stays cheap next to the servers it measures.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

JSON = {"content-type": "application/json"}


class RoundRobin(httpx.AsyncBaseTransport):
    """A client-side load balancer: each request goes to the next of ``ports`` (same host),
    as nginx's round robin would send it to N gateway processes."""

    def __init__(self, ports: list[int], limits: httpx.Limits) -> None:
        self.ports = ports
        self._next = 0
        self._inner = httpx.AsyncHTTPTransport(limits=limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._next = (self._next + 1) % len(self.ports)
        request.url = request.url.copy_with(port=self.ports[self._next])
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def make_client(base_url: str, max_connections: int = 64,
                ports: list[int] | None = None,
                headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """One AsyncClient (HTTP/1.1) with a pool of ``max_connections``; with ``ports``, its
    requests go round robin to those ports of ``base_url``'s host (``RoundRobin``).

    Idle connections are dropped after 2 s, before uvicorn's 5 s keep-alive timeout closes
    them server-side: reusing a connection the server is closing fails the request."""
    limits = httpx.Limits(max_connections=max_connections,
                          max_keepalive_connections=max_connections, keepalive_expiry=2.0)
    timeout = httpx.Timeout(120.0, connect=30.0, pool=120.0)
    if ports and len(ports) > 1:
        return httpx.AsyncClient(base_url=base_url, timeout=timeout, headers=headers,
                                 transport=RoundRobin(ports, limits))
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout, http2=False,
                             headers=headers)


class Clients:
    """Pooled AsyncClients for one server: ``clients(i)`` is the shard of worker ``i``
    (workers ``0-15`` share shard 0, ``16-31`` shard 1, ...). Use as an async context.
    ``headers`` go with every request (credentials for a gateway with auth)."""

    def __init__(self, base_url: str, shard: int = 16, ports: list[int] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url
        self.shard = shard
        self.ports = ports
        self.headers = headers
        self._clients: list[httpx.AsyncClient] = []

    def __call__(self, i: int = 0) -> httpx.AsyncClient:
        k = i // self.shard
        while len(self._clients) <= k:
            self._clients.append(make_client(self.base_url, max_connections=4 * self.shard,
                                             ports=self.ports, headers=self.headers))
        return self._clients[k]

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self._clients:
            await client.aclose()
        self._clients.clear()


class HttpError(Exception):
    """A response with an unexpected status."""


async def call(client: httpx.AsyncClient, method: str, path: str, body: Any = None,
               **kwargs: Any) -> Any:
    """One JSON request; returns the decoded body. Raises HttpError unless 2xx."""
    content = orjson.dumps(body) if body is not None else None
    resp = await client.request(method, path, content=content, headers=JSON, **kwargs)
    if resp.status_code >= 300:
        raise HttpError(f"{method} {path}: {resp.status_code} {resp.text[:200]}")
    return orjson.loads(resp.content) if resp.content.strip() else None


async def create_threads(clients: Clients, n: int, concurrency: int = 32,
                         metadata: Callable[[int], dict[str, Any]] | None = None) -> list[str]:
    """Create ``n`` threads with ``concurrency`` requests in flight; returns their ids."""
    ids: list[str] = [""] * n

    async def worker(w: int) -> None:
        for i in range(w, n, concurrency):
            body = {"metadata": metadata(i)} if metadata else {}
            ids[i] = (await call(clients(w), "POST", "/threads", body))["thread_id"]

    await asyncio.gather(*(worker(w) for w in range(min(n, concurrency))))
    return ids


@dataclass
class SseCount:
    """What one SSE response delivered, with client-side timestamps (perf_counter).

    ``counts["*"]`` counts every frame; ``counts[name]`` the frames of each watched name.
    Counts are updated as chunks arrive, so a cancelled reader still shows what it got.
    """

    counts: dict[str, int] = field(default_factory=dict)
    t_sent: float = 0.0
    t_headers: float | None = None
    t_first: float | None = None  # first frame of any name
    t_first_named: float | None = None  # first frame of a watched name
    t_last: float | None = None  # last frame of a watched name
    t_end: float = 0.0  # body closed

    def rate(self, name: str = "custom") -> float:
        """Frames of ``name`` per second, from its first frame to its last one (or from the
        request to the close if they all came in one chunk)."""
        n = self.counts.get(name, 0)
        if not n or self.t_first_named is None or self.t_last is None:
            return 0.0
        span = self.t_last - self.t_first_named
        if span <= 0 and self.t_end:
            span = self.t_end - self.t_sent
        return n / span if span > 0 else 0.0


async def read_sse(resp: httpx.Response, info: SseCount, names: tuple[str, ...]) -> SseCount:
    """Count ``event:`` frames (total and per name in ``names``) until the body closes."""
    patterns = {name: b"event: " + name.encode() + b"\r\n" for name in names}
    keep = max([len(p) for p in patterns.values()] + [7]) - 1
    counts = info.counts
    counts.update(dict.fromkeys(["*", *names], 0))
    tail = b""
    async for chunk in resp.aiter_raw():
        buf = tail + chunk
        now = time.perf_counter()
        found = buf.count(b"event: ")
        if found:
            counts["*"] += found
            if info.t_first is None:
                info.t_first = now
            for name, pat in patterns.items():
                hits = buf.count(pat)
                if hits:
                    counts[name] += hits
                    info.t_last = now
                    if info.t_first_named is None:
                        info.t_first_named = now
        tail = buf[-keep:]
    info.t_end = time.perf_counter()
    return info


async def sse(client: httpx.AsyncClient, method: str, path: str, body: Any = None,
              headers: dict[str, str] | None = None, names: tuple[str, ...] = ("custom",),
              opened: Callable[[], None] | None = None, info: SseCount | None = None,
              ) -> SseCount:
    """Open an SSE stream and count its frames to the end. ``opened()`` runs on headers;
    pass ``info`` to watch the counts while it runs."""
    info = info or SseCount()
    info.t_sent = time.perf_counter()
    content = orjson.dumps(body) if body is not None else None
    async with client.stream(method, path, content=content,
                             headers={**JSON, **(headers or {})}) as resp:
        if resp.status_code != 200:
            raise HttpError(f"{method} {path}: {resp.status_code}")
        info.t_headers = time.perf_counter()
        if opened is not None:
            opened()
        return await read_sse(resp, info, names)


@dataclass
class LoopResult:
    latencies: list[float]
    errors: int
    elapsed: float

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def summary(self) -> dict[str, Any]:
        return {"n": len(self.latencies), "errors": self.errors, "per_s": self.throughput,
                "p50_ms": pct_ms(self.latencies, 50), "p99_ms": pct_ms(self.latencies, 99)}


async def closed_loop(op: Callable[[int], Awaitable[object]], concurrency: int, budget_s: float,
                      max_ops: int) -> LoopResult:
    """``concurrency`` workers call ``op(worker)`` back to back until ``max_ops`` operations
    have started or ``budget_s`` has passed; in-flight operations are awaited."""
    latencies: list[float] = []
    errors = 0
    started = 0
    t0 = time.perf_counter()
    deadline = t0 + budget_s

    async def worker(w: int) -> None:
        nonlocal started, errors
        while started < max_ops and time.perf_counter() < deadline:
            started += 1
            t = time.perf_counter()
            try:
                await op(w)
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return LoopResult(latencies, errors, time.perf_counter() - t0)


async def burst(ops: list[Callable[[], Awaitable[object]]]) -> LoopResult:
    """Start every operation at once; each is timed from the common start."""
    errors = 0
    latencies: list[float] = []
    t0 = time.perf_counter()

    async def one(op: Callable[[], Awaitable[object]]) -> None:
        nonlocal errors
        try:
            await op()
        except Exception:
            errors += 1
            return
        latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(one(op) for op in ops))
    return LoopResult(latencies, errors, time.perf_counter() - t0)


def pct_ms(values_s: list[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``values_s`` in milliseconds."""
    if not values_s:
        return None
    ordered = sorted(values_s)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1] * 1000.0


def median(values: list[float]) -> float | None:
    """The median, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
