"""bridge: sqlite — Last-Event-ID resume and full replay of a finished run across a restart."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from langgraph_sdk import get_client

from tests.server import GatewayProcess

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def _events(
    url: str, thread_id: str, run_id: str, last_event_id: str
) -> list[tuple[str, str]]:
    client = get_client(url=url)
    return [(p.event, p.id or "") async for p in client.runs.join_stream(
        thread_id, run_id, last_event_id=last_event_id)]


@pytest.mark.parametrize("kill", [True, False], ids=["sigkill", "sigterm"])
async def test_replay_and_resume_survive_a_restart(
    make_gateway: Callable[..., GatewayProcess], kill: bool
) -> None:
    first = make_gateway(bridge="sqlite").start()
    client = get_client(url=first.url)
    thread_id = (await client.threads.create())["thread_id"]
    run = await client.runs.create(thread_id, "custom_events", input={"messages": []},
                                   stream_mode=["custom", "values"],
                                   config={"configurable": {"n": 50}})
    await client.runs.join(thread_id, run["run_id"])
    before = await _events(first.url, thread_id, run["run_id"], "-1")
    assert before[0][0] == "metadata" and sum(e == "custom" for e, _ in before) == 50
    if kill:
        # flushed within flush_interval_s after the run ended; the join above took longer
        first.kill()
    else:
        first.stop()
    second = make_gateway(bridge="sqlite").start()
    after = await _events(second.url, thread_id, run["run_id"], "-1")
    assert after == before
    middle = before[20][1]
    resumed = await _events(second.url, thread_id, run["run_id"], middle)
    assert resumed == before[21:]
