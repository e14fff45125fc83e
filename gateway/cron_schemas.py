"""Request models of the cron endpoints (``/runs/crons``), and the conversion of a stored cron
payload back to a RunSpec at fire time.

A cron body is a run body (``RunCreate``: the same fields, validated the same way) plus the
schedule fields; the whole body is kept as the cron's ``payload`` (unknown keys included, as the
reference keeps them) and replayed on every fire.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import Field, StrictBool, StrictStr, ValidationError

from gateway.schemas import CanonicalUuid, RunCreate, _field_error, _Model
from runtime.crons.types import AUTH_PAYLOAD_KEY
from runtime.spec import RunSpec, check_context

CronSortBy = Literal["cron_id", "assistant_id", "thread_id", "next_run_date", "end_time",
                     "created_at", "updated_at"]
CronSelect = Literal["cron_id", "assistant_id", "thread_id", "on_run_completed", "end_time",
                     "schedule", "timezone", "created_at", "updated_at", "user_id", "payload",
                     "next_run_date", "metadata", "enabled"]
DROPPED_METADATA_KEYS = ("thread_id", "assistant_id", "run_id", "cron_id")
"""Keys the reference silently drops from a cron's ``metadata``."""


class CronCreate(RunCreate):
    """``POST /runs/crons`` (CronCreate) and ``POST /threads/{id}/runs/crons``
    (ThreadCronCreate): a run body plus the schedule. ``schedule`` is required (the reference
    answers 500 when it is missing); its grammar is checked by runtime/crons/schedule.py."""

    schedule: StrictStr
    timezone: StrictStr | None = None
    end_time: StrictStr | None = None
    enabled: StrictBool = True
    on_run_completed: Literal["delete", "keep"] | None = None


class CronPatch(_Model):
    """``PATCH /runs/crons/{id}``: every field optional; the run fields are validated as in
    ``RunCreate`` (see ``validate_run_fields``)."""

    schedule: StrictStr | None = None
    timezone: StrictStr | None = None
    end_time: StrictStr | None = None
    enabled: StrictBool | None = None
    on_run_completed: Literal["delete", "keep"] | None = None
    metadata: dict[str, Any] | None = None


class CronSearch(_Model):
    """``POST /runs/crons/search``."""

    assistant_id: CanonicalUuid | None = None
    thread_id: CanonicalUuid | None = None
    enabled: StrictBool | None = None
    metadata: dict[str, Any] | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=2**31)
    sort_by: CronSortBy = "created_at"
    sort_order: Literal["asc", "desc"] = "desc"
    select: list[CronSelect] | None = None


class CronCount(_Model):
    """``POST /runs/crons/count``."""

    assistant_id: CanonicalUuid | None = None
    thread_id: CanonicalUuid | None = None
    metadata: dict[str, Any] | None = None


def validate_run_fields(payload: dict[str, Any], thread_id: str | None) -> RunSpec:
    """The RunSpec ``payload`` asks for, validated as a run body (422 naming the field).

    Raises:
        InvalidField: a run field is wrong. UnsupportedOption: an option not implemented.
    """
    body = {k: v for k, v in payload.items() if k in RunCreate.model_fields}
    body.setdefault("assistant_id", payload.get("assistant_id", ""))
    try:
        run = RunCreate.model_validate(body)
    except ValidationError as exc:
        raise _field_error(exc) from None
    spec = run.to_spec(thread_id)
    check_context(spec)  # 400 when written, not at every fire (the reference's way)
    return spec


def cron_run_spec(payload: dict[str, Any], thread_id: str | None) -> RunSpec:
    """The run one fire of a cron creates (``runtime.crons.scheduler.ToSpec``), as its
    creator: the authenticated user and the stamps of a thread it creates come from the
    payload's ``AUTH_PAYLOAD_KEY``, set by the gateway at creation."""
    spec = validate_run_fields(payload, thread_id)
    saved = payload.get(AUTH_PAYLOAD_KEY)
    if isinstance(saved, dict):
        spec = replace(spec, auth=saved.get("auth") or None,
                       thread_metadata=dict(saved.get("thread_metadata") or {}))
    return spec
