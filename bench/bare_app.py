"""The bare-HTTP ceiling: a Starlette + sse-starlette app with no gateway logic, served by
uvicorn with the same defaults as the gateway (``python -m bench.bare_app --port P``).

* ``GET /json``: a small JSON body (requests/s);
* ``GET /sse?n=2000``: ``n`` pre-encoded ``custom`` frames in the gateway's framing, then the
  body closes (events/s and time to first event).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import uvicorn
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

FRAMES = [b"event: custom\r\ndata: {\"i\":%d}\r\nid: 1-%d\r\n\r\n" % (i, i + 1)
          for i in range(10_000)]


async def json_endpoint(request: Request) -> Response:
    return Response(b'{"ok":true,"services":{}}', media_type="application/json")


async def sse_endpoint(request: Request) -> EventSourceResponse:
    n = int(request.query_params.get("n", "2000"))

    async def body() -> AsyncIterator[bytes]:
        yield b'event: metadata\r\ndata: {"run_id":"bare","attempt":1}\r\nid: 1-0\r\n\r\n'
        for frame in FRAMES[:n]:
            yield frame

    return EventSourceResponse(body(), sep="\r\n")


app = Starlette(routes=[Route("/json", json_endpoint), Route("/sse", sse_endpoint)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
