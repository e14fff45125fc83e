"""Request models of the assistant endpoints (``/assistants``), as the reference's OpenAPI
document and the SDKs send them. Unknown keys are ignored (``_Model``); values are validated
before anything is stored: ``config`` as a run's (``RunConfig``: the assistant's config is
merged into every run it makes), text fields as strings (``null`` for ``name`` or
``description`` in a PATCH is a 422, as the reference).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictInt, StrictStr, field_validator

from gateway.schemas import RunConfig, _Model

AssistantSortBy = Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"]
AssistantSelect = Literal["assistant_id", "graph_id", "name", "description", "config",
                          "context", "created_at", "updated_at", "metadata", "version"]

MAX_TEXT = 10_000
"""Longest ``name``/``description``/``graph_id`` accepted (characters)."""


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("must be a string, not null")
    return value


class AssistantCreate(_Model):
    """``POST /assistants``. ``assistant_id`` is checked by the endpoint (422 ``Invalid
    assistant ID: must be a UUID``, the reference's text)."""

    graph_id: StrictStr = Field(max_length=MAX_TEXT)
    assistant_id: StrictStr | None = None
    config: RunConfig | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    name: StrictStr | None = Field(None, max_length=MAX_TEXT)
    description: StrictStr | None = Field(None, max_length=MAX_TEXT)


class AssistantPatch(_Model):
    """``PATCH /assistants/{id}``: every field optional; ``{}`` still makes a new version."""

    graph_id: StrictStr | None = Field(None, max_length=MAX_TEXT)
    config: RunConfig | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    name: StrictStr | None = Field(None, max_length=MAX_TEXT)
    description: StrictStr | None = Field(None, max_length=MAX_TEXT)

    @field_validator("name", "description", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        return _not_null(value)


class AssistantVersionsQuery(_Model):
    """``POST /assistants/{id}/versions`` (a body is required, as the reference)."""

    metadata: dict[str, Any] | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=2**31)


class AssistantLatest(_Model):
    """``POST /assistants/{id}/latest``: ``version`` missing is a 404 ``Version None not
    found`` as the reference; a non-integer (``"2"``) is a 422."""

    version: StrictInt | None = Field(None, ge=-(2**31), le=2**31 - 1)


class AssistantQuery(_Model):
    """``POST /assistants/search`` and ``/count`` (count ignores the paging and order)."""

    graph_id: StrictStr | None = Field(None, max_length=MAX_TEXT)
    name: StrictStr | None = Field(None, max_length=MAX_TEXT)
    metadata: dict[str, Any] | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=2**31)
    sort_by: AssistantSortBy | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[AssistantSelect] | None = Field(None, max_length=20)
