"""``GET /openapi.json`` and ``GET /docs`` (issue 13): generated from the route table and the
request models, so every endpoint is described and every body schema is the one the endpoint
validates with."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.routing import Route

from gateway.routes import assistants, crons, runs, store, system, threads

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_the_document_describes_every_endpoint(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        r = await http.get("/openapi.json")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        spec = r.json()
        page = await http.get("/docs")
    assert spec["openapi"] == "3.1.0" and spec["info"]["title"]
    expected = {(route.path, method.lower())
                for module in (system, assistants, threads, runs, crons, store)
                for route in module.routes if isinstance(route, Route)
                for method in (route.methods or ()) if method != "HEAD"}
    described = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert expected <= described, expected - described
    schemas = spec["components"]["schemas"]
    for ref in _refs(spec):  # every reference resolves
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas
    run_body = spec["paths"]["/threads/{thread_id}/runs"]["post"]["requestBody"]
    model = schemas[run_body["content"]["application/json"]["schema"]["$ref"].split("/")[-1]]
    assert {"assistant_id", "input", "stream_mode", "webhook"} <= set(model["properties"])
    assert model["required"] == ["assistant_id"]
    cron = schemas["CronCreate"]
    assert set(cron["required"]) == {"assistant_id", "schedule"}
    put = spec["paths"]["/store/items"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ItemPut")
    thread = spec["paths"]["/threads/{thread_id}"]["get"]
    assert thread["parameters"][0] == {"name": "thread_id", "in": "path", "required": True,
                                       "schema": {"type": "string", "format": "uuid"}}
    assert thread["summary"] and "422" in thread["responses"]
    cancel = spec["paths"]["/threads/{thread_id}/runs/{run_id}/cancel"]["post"]
    assert {"wait", "action"} <= {p["name"] for p in cancel["parameters"] if p["in"] == "query"}
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/threads/{thread_id}/runs/crons" in page.text and "assistant_id</code>*" in page.text


async def test_a_guarded_gateway_declares_its_security(make_gateway: Any) -> None:
    """With API keys or custom auth, the document declares the ``X-Api-Key`` and bearer
    schemes and a 401 on every guarded operation; the public paths need none."""
    server = make_gateway(auth={"api_keys": ["k"]}).start()
    async with httpx.AsyncClient(base_url=server.url) as http:
        spec = (await http.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey", "in": "header", "name": "X-Api-Key",
        "description": "What the official SDKs send (api_key=...)."}
    assert spec["security"] == [{"apiKey": []}, {"bearer": []}]
    assert "401" in spec["paths"]["/threads/search"]["post"]["responses"]
    assert spec["paths"]["/ok"]["get"]["security"] == []
    assert "401" not in spec["paths"]["/ok"]["get"]["responses"]


async def test_an_open_gateway_declares_no_security(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        spec = (await http.get("/openapi.json")).json()
    assert "security" not in spec and "securitySchemes" not in spec["components"]
    assert "401" not in spec["paths"]["/threads/search"]["post"]["responses"]
