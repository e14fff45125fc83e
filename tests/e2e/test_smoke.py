"""Smoke: the SDK streams a run of the example agent from a real server."""

from __future__ import annotations

import pytest
from langgraph_sdk import get_client


@pytest.mark.anyio
async def test_stream_chat_agent(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread = await client.threads.create()
    events = [p async for p in client.runs.stream(
        thread["thread_id"], "chat_agent",
        input={"messages": [{"role": "user", "content": "what is 6*7?"}]},
        stream_mode=["values", "messages-tuple"])]
    assert events[0].event == "metadata"
    final = events[-1]
    assert final.event == "values"
    assert final.data["messages"][-1]["content"] == "The result is 42."
