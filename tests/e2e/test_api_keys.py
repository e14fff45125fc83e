"""API keys, the simple auth mode (``auth: {api_keys: [...]}``, gateway/auth.py): the official
SDKs' ``api_key`` (``X-Api-Key``) and ``Authorization: Bearer`` pass, anything else is a 401
that changes nothing; the public paths stay public."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from tests.server import GatewayProcess

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def keyed(make_gateway: Any, monkeypatch: pytest.MonkeyPatch) -> GatewayProcess:
    monkeypatch.setenv("MY_GATEWAY_KEY", "key-from-env")
    monkeypatch.setenv("GATEWAY_API_KEYS", "second-key, third-key")
    return make_gateway(  # type: ignore[no-any-return]
        auth={"api_keys": ["${{ env.MY_GATEWAY_KEY }}"]}).start()


async def test_requests_need_a_key(keyed: GatewayProcess) -> None:
    client = get_client(url=keyed.url, api_key="key-from-env")
    thread_id = str((await client.threads.create())["thread_id"])
    out = await client.runs.wait(thread_id, "echo",
                                 input={"messages": [{"role": "user", "content": "hi"}]})
    assert out["messages"][-1]["content"] == "echo: hi"
    assert (await get_client(url=keyed.url, api_key="third-key").threads.get(thread_id))
    async with httpx.AsyncClient(base_url=keyed.url) as http:
        r = await http.get(f"/threads/{thread_id}",
                           headers={"Authorization": "Bearer second-key"})
        assert r.status_code == 200
        for headers in ({}, {"X-Api-Key": "wrong"}, {"Authorization": "Bearer wrong"},
                        {"Authorization": "Basic key-from-env"}, {"X-Api-Key": ""}):
            r = await http.post("/threads", json={}, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", headers
            assert set(r.json()) == {"detail"}
        for path in ("/ok", "/info", "/metrics", "/openapi.json", "/docs", "/ui/"):
            assert (await http.get(path)).status_code == 200, path
        r = await http.options("/threads", headers={
            "Origin": "http://x.example", "Access-Control-Request-Method": "POST"})
        assert r.status_code == 200  # CORS preflight needs no key
        r = await http.post("/threads/search", json={"limit": 100},
                            headers={"X-Api-Key": "key-from-env"})
    assert [t["thread_id"] for t in r.json()] == [thread_id]  # the 401s created nothing
