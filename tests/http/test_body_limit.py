"""Request body size limit (gateway/limits.py) over a real socket: a body over ``max_body_mb``
is a 413 ``{"detail": "Request body larger than N MB"}`` that arrives before the body has been
sent, creates nothing, and does not grow the server's memory by the body's size.

The gateway here is a fresh one with a 1 MB limit, set through ``GATEWAY_MAX_BODY_MB`` (which
wins over the file's ``max_body_mb: 2``); the bodies are 20 MB.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.server import GatewayProcess

BODY_MB = 20
DETAIL = b'{"detail":"Request body larger than 1 MB"}'
BLOCK = 64 * 1024


@pytest.fixture
def small_gateway(
    make_gateway: Callable[..., GatewayProcess], monkeypatch: pytest.MonkeyPatch
) -> Iterator[GatewayProcess]:
    monkeypatch.setenv("GATEWAY_MAX_BODY_MB", "1")  # the env override wins over the file
    server = make_gateway(max_body_mb=2).start()
    yield server


def vm_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB, from /proc (psutil is not a dependency)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def read_response(sock: socket.socket, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length (the server keeps the
    connection open after it, so reading to EOF would hang)."""
    data = b""
    deadline = time.monotonic() + timeout_s
    while b"\r\n\r\n" not in data or len(data) < _response_length(data):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _response_length(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value)
    return len(data) + 1


def send_until_answered(sock: socket.socket, blocks: Iterator[bytes]) -> int:
    """Send ``blocks`` until the server starts answering (or all are sent); bytes sent."""
    sent = 0
    for block in blocks:
        if select.select([sock], [], [], 0)[0]:
            break
        try:
            sock.sendall(block)
        except OSError:  # the server may close once it has answered
            break
        sent += len(block)
    return sent


def post_threads_head(port: int, extra: str) -> bytes:
    return (f"POST /threads HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            f"content-type: application/json\r\n{extra}\r\n").encode()


def json_body(size: int) -> bytes:
    """A valid ``POST /threads`` body of ``size`` bytes (one long metadata string)."""
    prefix, suffix = b'{"metadata":{"x":"', b'"}}'
    return prefix + b"a" * (size - len(prefix) - len(suffix)) + suffix


def thread_count(url: str) -> int:
    return int(httpx.post(url + "/threads/count", json={}).json())


@pytest.mark.timeout(90)
def test_content_length_over_limit_is_413_before_the_body(
    small_gateway: GatewayProcess,
) -> None:
    server = small_gateway
    assert server.proc is not None
    threads = thread_count(server.url)
    rss = vm_rss_mb(server.proc.pid)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        # the headers alone: the answer must not wait for the 20 MB it announces
        sock.sendall(post_threads_head(server.port, f"content-length: {BODY_MB << 20}\r\n"))
        status, body = read_response(sock)
    assert (status, body) == (413, DETAIL)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:  # and with the body
        payload = json_body(BODY_MB << 20)
        sock.sendall(post_threads_head(server.port, f"content-length: {len(payload)}\r\n"))
        sent = send_until_answered(sock, (payload[i:i + BLOCK]
                                          for i in range(0, len(payload), BLOCK)))
        status, body = read_response(sock)
    assert (status, body) == (413, DETAIL)
    assert sent < len(payload), "the 413 came only after the whole body was sent"
    assert thread_count(server.url) == threads
    grown = vm_rss_mb(server.proc.pid) - rss
    assert grown < BODY_MB / 2, f"RSS grew {grown:.1f} MB for a refused {BODY_MB} MB body"
    assert "Traceback" not in server.log()


def chunked_blocks(payload: bytes) -> Iterator[bytes]:
    for i in range(0, len(payload), BLOCK):
        block = payload[i:i + BLOCK]
        yield b"%x\r\n" % len(block) + block + b"\r\n"
    yield b"0\r\n\r\n"


@pytest.mark.timeout(90)
def test_chunked_body_over_limit_is_413_while_it_streams(
    small_gateway: GatewayProcess,
) -> None:
    server = small_gateway
    assert server.proc is not None
    threads = thread_count(server.url)
    rss = vm_rss_mb(server.proc.pid)
    payload = json_body(BODY_MB << 20)
    for _ in range(3):  # repeated: memory must not grow per refused body either
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(post_threads_head(server.port, "transfer-encoding: chunked\r\n"))
            sent = send_until_answered(sock, chunked_blocks(payload))
            status, body = read_response(sock)
        assert (status, body) == (413, DETAIL)
        assert sent < len(payload), "the 413 came only after the whole body was sent"
    assert thread_count(server.url) == threads
    grown = vm_rss_mb(server.proc.pid) - rss
    assert grown < BODY_MB / 2, f"RSS grew {grown:.1f} MB for refused {BODY_MB} MB bodies"
    # under the limit, chunked or not, the body is read as usual
    small = orjson.dumps({"metadata": {"x": "a" * 1000}})
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(post_threads_head(server.port, "transfer-encoding: chunked\r\n"))
        send_until_answered(sock, chunked_blocks(small))
        status, body = read_response(sock)
    assert status == 200, body
    assert orjson.loads(body)["metadata"] == {"x": "a" * 1000}
    assert thread_count(server.url) == threads + 1
    assert "Traceback" not in server.log()


@pytest.mark.timeout(30)
def test_body_at_the_limit_is_accepted(small_gateway: GatewayProcess) -> None:
    payload = json_body(1 << 20)  # exactly 1 MB
    r = httpx.post(small_gateway.url + "/threads", content=payload,
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text[:200]
    r = httpx.post(small_gateway.url + "/threads", content=payload + b" ",
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413 and r.json() == orjson.loads(DETAIL)
    assert r.headers["content-type"].startswith("application/json")
