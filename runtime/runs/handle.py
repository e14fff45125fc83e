"""RunHandle: the live, in-memory state of one admitted run (never leaves ``runtime/``)."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

from runtime.completion import Completion
from runtime.types import CancelAction, Run


@dataclass(eq=False)
class RunHandle:
    """Live state of one admitted run (never leaves ``runtime/``)."""

    run: Run
    done: Completion = field(default_factory=Completion)
    task: asyncio.Task[Any] | None = None
    executing: bool = False  # inside execute_run: a cancel is delivered to ``task``
    signalled: bool = False  # a user cancel was delivered
    finalizing: bool = False  # execution over; the terminal status is being written
    cancel_action: CancelAction | None = None
    result_body: bytes | None = None
    not_before_ts: float = 0.0
    started_ts: float = 0.0  # monotonic, when execution began (metrics)
    started_at: str = ""  # ISO, when execution began (the webhook's run_started_at)
    # cluster mode (cluster.py): the attempt's lease, its local deadline (monotonic), and
    # whether it was lost (then this process writes nothing more for the run)
    lease_token: str | None = None
    lease_deadline: float = math.inf
    lost: bool = False
