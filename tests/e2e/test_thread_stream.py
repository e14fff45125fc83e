"""GET /threads/{id}/stream: every run's events while subscribed, run_done, modes, resume."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from langgraph_sdk import get_client

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


def _frames(text: str) -> list[dict[str, Any]]:
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.split("\n"):
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "event" in fields:
            out.append(fields)
    return out


async def _collect(url: str, thread_id: str, runs_done: int, headers: dict[str, str] | None = None,
                   params: dict[str, str] | None = None,
                   started: anyio.Event | None = None) -> list[dict[str, Any]]:
    """Read the thread stream until ``runs_done`` run_done events arrived."""
    frames: list[dict[str, Any]] = []
    buffer = ""
    async with httpx.AsyncClient(base_url=url, timeout=20) as http, http.stream(
        "GET", f"/threads/{thread_id}/stream", headers=headers or {}, params=params or {}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        if started is not None:
            started.set()
        async for chunk in response.aiter_text():
            buffer += chunk
            frames = _frames(buffer)
            if sum('"run_done"' in f.get("data", "") for f in frames) >= runs_done:
                return frames
    return frames


async def test_thread_stream_sees_every_run_with_ids_and_run_done(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = (await client.threads.create())["thread_id"]
    started = anyio.Event()
    result: list[dict[str, Any]] = []

    async def watch() -> None:
        result.extend(await _collect(gateway_url, thread_id, 2, started=started))

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await started.wait()
        run_ids = []
        for text in ("one", "two"):
            run = await client.runs.create(thread_id, "echo", input={
                "messages": [{"role": "user", "content": text}]}, stream_mode=["values", "custom"])
            run_ids.append(run["run_id"])
            await client.runs.join(thread_id, run["run_id"])
    assert all("id" in f for f in result)
    assert len({f["id"] for f in result}) == len(result)
    done = [f for f in result if '"run_done"' in f["data"]]
    assert [d["data"] for d in done] == [
        f'{{"status":"run_done","run_id":"{r}"}}' for r in run_ids]
    names = [f["event"] for f in result]
    assert names.count("custom") == 4 and "values" in names
    assert result[0]["event"] == "metadata" and run_ids[0] in result[0]["data"]


async def test_thread_stream_lifecycle_mode_and_resume(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = (await client.threads.create())["thread_id"]
    started = anyio.Event()
    result: list[dict[str, Any]] = []

    async def watch() -> None:
        result.extend(await _collect(gateway_url, thread_id, 1,
                                     params={"stream_modes": "lifecycle"}, started=started))

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await started.wait()
        await client.runs.wait(thread_id, "echo", input={
            "messages": [{"role": "user", "content": "x"}]})
    assert {f["event"] for f in result} == {"metadata"}
    assert len(result) == 2  # the run's metadata and its run_done
    # resume from the first event: only the run_done comes again (log kept after leaving)
    again = await _collect(gateway_url, thread_id, 1, headers={"Last-Event-ID": result[0]["id"]},
                           params={"stream_modes": "lifecycle"})
    assert [f["id"] for f in again] == [result[1]["id"]]


async def test_thread_stream_state_update_and_bad_input(gateway_url: str) -> None:
    client = get_client(url=gateway_url)
    thread_id = (await client.threads.create())["thread_id"]
    await client.runs.wait(thread_id, "echo",
                           input={"messages": [{"role": "user", "content": "a"}]})
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as http:
        bad = await http.get(f"/threads/{thread_id}/stream", params={"stream_modes": "bogus"})
        assert bad.status_code == 422
        assert bad.json() == {"detail": "Invalid stream mode: bogus"}
        bad_id = await http.get(f"/threads/{thread_id}/stream",
                                headers={"Last-Event-ID": "not-an-id"})
        assert bad_id.status_code == 422
        missing = await http.get("/threads/00000000-0000-0000-0000-000000000000/stream")
        assert missing.status_code == 404
        buffer = ""
        async with http.stream("GET", f"/threads/{thread_id}/stream",
                               params={"stream_modes": "state_update"}) as response:
            await client.threads.update_state(thread_id, {"messages": [
                {"role": "user", "content": "edited"}]}, as_node="respond")
            async for chunk in response.aiter_text():
                buffer += chunk
                if _frames(buffer):
                    break
    frame = _frames(buffer)[0]
    assert frame["event"] == "state_update"
    assert '"edited"' in frame["data"]
