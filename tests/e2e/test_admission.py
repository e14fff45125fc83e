"""Admission is all-or-nothing (runtime/runs/manager.py invariant 8), under every multitask
strategy and any concurrency: a create that answers 200 has its run; one that errs left none.

Before the fix, a create with ``interrupt`` or ``rollback`` whose predecessor finished while it
was being admitted answered 404 "No matching runs to cancel", yet its run was stored and ran.
"""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import httpx
import pytest

pytestmark = pytest.mark.anyio

STRATEGIES = ["reject", "interrupt", "rollback", "enqueue"]
N = 200


def body(i: int, strategy: str) -> dict[str, Any]:
    return {"assistant_id": "echo", "multitask_strategy": strategy, "metadata": {"req": i},
            "input": {"messages": [{"role": "user", "content": f"m{i}"}]},
            "config": {"configurable": {"delay": 0.01}}}


@pytest.mark.timeout(120)
async def test_concurrent_creates_with_mixed_strategies(gateway_url: str) -> None:
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=60, limits=limits) as http:
        thread_id = (await http.post("/threads", json={})).json()["thread_id"]
        answers: dict[int, httpx.Response] = {}
        strategies = dict(zip(range(N), itertools.cycle(STRATEGIES), strict=False))

        async def create(i: int) -> None:
            answers[i] = await http.post(f"/threads/{thread_id}/runs",
                                         json=body(i, strategies[i]))

        async with anyio.create_task_group() as tg:
            for i in range(N):
                tg.start_soon(create, i)

        unexpected = {i: (r.status_code, r.text) for i, r in answers.items()
                      if r.status_code != 200
                      and not (r.status_code == 409 and strategies[i] == "reject")}
        assert not unexpected, unexpected
        accepted = {i: r.json() for i, r in answers.items() if r.status_code == 200}
        refused = [i for i, r in answers.items() if r.status_code == 409]
        assert accepted and all(r.json()["detail"] for i, r in answers.items() if i in refused)

        # every run ends, and the thread with them
        with anyio.fail_after(90):
            while True:
                if (await http.get(f"/threads/{thread_id}")).json()["status"] != "busy":
                    break
                await anyio.sleep(0.1)
        listed = (await http.get(f"/threads/{thread_id}/runs", params={"limit": 1000})).json()
        by_req = {run["metadata"]["req"]: run for run in listed}
        assert not any(run["status"] in ("pending", "running") for run in listed)

        # an error left no run behind
        assert not set(refused) & set(by_req)
        # a 200 has its run, unless a later rollback-strategy run deleted it (as it must)
        rollbacks = [run["created_at"] for i, run in accepted.items()
                     if strategies[i] == "rollback"]
        for i, run in accepted.items():
            if i in by_req:
                assert by_req[i]["run_id"] == run["run_id"]
            else:
                assert any(later > run["created_at"] for later in rollbacks), (i, run)
                r = await http.get(f"/threads/{thread_id}/runs/{run['run_id']}")
                assert r.status_code == 404
        assert set(by_req) <= set(accepted)
        state = await http.get(f"/threads/{thread_id}/state")
        assert state.status_code == 200
