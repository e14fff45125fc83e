"""Run webhooks: the URL policy (policy.py), the durable outbox (outbox.py) and the sender
(sender.py). ``delivery_for`` builds the delivery a finished run leaves."""

from __future__ import annotations

from typing import Any

import orjson

from runtime.ids import now_iso, uuid7
from runtime.types import Run
from runtime.webhooks.outbox import Delivery


def delivery_for(run: Run, status: str, values: Any, error: Any, started_at: str,
                 ended_at: str) -> Delivery:
    """The delivery of ``run``'s webhook (``run.kwargs["webhook"]``): the Run object with
    ``status``, ``run_started_at``, ``run_ended_at``, ``values`` (None for a run whose
    temporary thread is deleted, as the reference) and ``error`` on failure; due at once."""
    body: dict[str, Any] = {**run.to_api(), "status": status, "run_started_at": started_at,
                            "run_ended_at": ended_at,
                            "values": None if run.on_completion == "delete" else values}
    if error is not None:
        body["error"] = error
    now = now_iso()
    return Delivery(uuid7(), run.run_id, run.thread_id, str(run.kwargs["webhook"]),
                    orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS).decode(), 0, now, now)
