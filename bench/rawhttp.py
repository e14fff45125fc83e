"""A lean one-shot HTTP/1.1 client for the burst scenario: one fresh connection per request,
the request written in one go, the response parsed by h11.

Why not httpx here: 200 requests on 200 new connections cost httpx about 2.5 ms of client
CPU each (measured: 510-580 ms for the burst), and the client shares the two cores with the
server it measures. Its event loop was still opening connections and writing requests when
the server had already answered: the first response was read 500-800 ms into the burst even
with ``max_concurrent_runs: 8``. So the burst measured the client. This client costs a small
fraction of that, and it is the same for every server measured.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import h11


class RawHttpError(Exception):
    """The connection failed or the response was not a complete HTTP/1.1 message."""


async def post_once(base_url: str, path: str, body: bytes, timeout_s: float = 120.0
                    ) -> tuple[int, bytes]:
    """POST ``body`` (JSON) to ``base_url + path`` on a new connection; returns
    ``(status, body)``. Raises RawHttpError (or TimeoutError after ``timeout_s``)."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            conn = h11.Connection(h11.CLIENT)
            request = h11.Request(method="POST", target=path, headers=[
                ("host", f"{host}:{port}"), ("content-type", "application/json"),
                ("content-length", str(len(body))), ("connection", "close")])
            writer.write(conn.send(request) + (conn.send(h11.Data(data=body)) or b"")
                         + (conn.send(h11.EndOfMessage()) or b""))
            status, chunks = 0, []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    return status, b"".join(chunks)
                elif isinstance(event, h11.ConnectionClosed):
                    raise RawHttpError("connection closed before the response ended")
        except h11.ProtocolError as exc:
            raise RawHttpError(str(exc)) from exc
        finally:
            writer.close()
