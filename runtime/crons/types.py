"""The Cron object (``/runs/crons`` endpoints) and the record of one fire."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from runtime.crons.schedule import from_stored, iso


@dataclass(frozen=True, slots=True)
class Cron:
    """One cron as stored. Timestamps are stored text (``schedule.stored``: UTC, microseconds
    always); ``to_api`` prints them as the reference does.

    Attributes:
        cron_id: UUIDv7.
        assistant_id: the resolved assistant UUID.
        thread_id: the cron's thread, or None for a stateless cron (a new thread per fire).
        payload: the whole create body (assistant resolved, ``config.configurable.cron_id``
            added, PATCHes merged), replayed on every fire.
        next_run_date: the next tick (UTC), or None for an ``@at`` cron that has fired.
        on_run_completed: ``delete``/``keep`` for stateless crons, None for thread crons.
    """

    cron_id: str
    assistant_id: str
    thread_id: str | None
    user_id: str
    end_time: str | None
    schedule: str
    timezone: str | None
    payload: dict[str, Any]
    next_run_date: str | None
    metadata: dict[str, Any]
    on_run_completed: str | None
    enabled: bool
    created_at: str
    updated_at: str

    def replace(self, **changes: Any) -> Cron:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def to_api(self) -> dict[str, Any]:
        """The Cron object, keys in the reference's wire order."""
        return {
            "cron_id": self.cron_id, "assistant_id": self.assistant_id,
            "thread_id": self.thread_id, "user_id": self.user_id,
            "end_time": iso(from_stored(self.end_time)), "schedule": self.schedule,
            "timezone": self.timezone,
            "payload": {k: v for k, v in self.payload.items() if k != AUTH_PAYLOAD_KEY},
            "next_run_date": iso(from_stored(self.next_run_date)), "metadata": self.metadata,
            "on_run_completed": self.on_run_completed, "enabled": self.enabled,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }


AUTH_PAYLOAD_KEY = "_gateway_auth"
"""Payload key holding the creator's authentication (``{"auth": configurable keys,
"thread_metadata": stamps}``) replayed on every fire; never shown and never taken from a
client."""

CRON_COLS = ("cron_id, assistant_id, thread_id, user_id, end_time, schedule, timezone, payload, "
             "next_run_date, metadata, on_run_completed, enabled, created_at, updated_at")

CRON_SORT_COLUMNS = ("cron_id", "assistant_id", "thread_id", "next_run_date", "end_time",
                     "created_at", "updated_at")


@dataclass(frozen=True, slots=True)
class CronFire:
    """What one fire of a cron did (the ``cron_fires`` table).

    Attributes:
        scheduled_for: the tick that was due (stored text).
        fired_at: when the scheduler acted on it.
        outcome: ``created`` (a run was admitted), ``error`` (its creation failed: ``error``
            says why), ``skipped`` (the cron's ``max_concurrency`` was reached).
        run_id / thread_id: the run created, if any.
    """

    cron_id: str
    scheduled_for: str
    fired_at: str
    outcome: str
    run_id: str | None = None
    thread_id: str | None = None
    error: str | None = None
