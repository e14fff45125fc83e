"""Request models (pydantic) and their conversion to runtime types. Nothing else lives here.

Models accept unknown fields (``extra="ignore"``) so newer SDKs keep working, and reject by
name, with 422, the options the gateway does not implement (design.md section 7).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.requests import Request

from gateway.errors import InvalidField, InvalidJson
from runtime.errors import UnsupportedOption
from runtime.spec import RunSpec
from runtime.types import MultitaskStrategy

StreamMode = Literal[
    "values", "updates", "messages", "messages-tuple", "custom", "events", "debug", "tasks",
    "checkpoints",
]
M = TypeVar("M", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _field_error(exc: ValidationError) -> InvalidField:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return InvalidField("; ".join(parts))


async def parse_body(request: Request, model: type[M], *, optional: bool = False) -> M:
    """Parse and validate the JSON body as ``model``.

    Args:
        optional: an empty body means ``{}`` (endpoints whose every field is optional).

    Raises:
        InvalidJson: malformed or (unless ``optional``) empty body -> 422.
        InvalidField: a field is wrong -> 422 naming the field.
    """
    raw = await request.body()
    if not raw.strip():
        if not optional:
            raise InvalidJson()
        raw = b"{}"
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidJson() from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _field_error(exc) from None


def validate(model: type[M], data: Any) -> M:
    """Validate already-parsed data (query parameters). Raises InvalidField."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _field_error(exc) from None


# ---- threads -------------------------------------------------------------------------------


class ThreadCreate(_Model):
    """``POST /threads``."""

    thread_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    if_exists: Literal["raise", "do_nothing"] = "raise"
    ttl: Any = None
    supersteps: Any = None

    @field_validator("metadata", mode="before")
    @classmethod
    def _none_metadata(cls, v: Any) -> Any:
        return {} if v is None else v


class ThreadPatch(_Model):
    """``PATCH /threads/{id}``."""

    metadata: dict[str, Any] = Field(default_factory=dict)


class ThreadSearch(_Model):
    """``POST /threads/search``."""

    ids: list[str] | None = None
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=2**31)
    sort_by: (
        Literal["thread_id", "status", "created_at", "updated_at", "state_updated_at"] | None
    ) = None
    sort_order: Literal["asc", "desc"] | None = None


class ThreadCount(_Model):
    """``POST /threads/count``."""

    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None


class CheckpointRef(_Model):
    """A checkpoint reference ``{checkpoint_id, checkpoint_ns?, thread_id?}``."""

    checkpoint_id: str | None = None
    checkpoint_ns: str | None = ""
    thread_id: str | None = None


class StateUpdate(_Model):
    """``POST /threads/{id}/state``."""

    values: Any = None
    as_node: str | None = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None


class StateAtCheckpoint(_Model):
    """``POST /threads/{id}/state/checkpoint``."""

    checkpoint: CheckpointRef
    subgraphs: bool = False


class HistoryRequest(_Model):
    """``POST /threads/{id}/history`` (and the query of the GET form)."""

    limit: int = Field(10, ge=1, le=1000)
    before: dict[str, Any] | str | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: CheckpointRef | None = None


# ---- assistants ----------------------------------------------------------------------------


class AssistantSearch(_Model):
    """``POST /assistants/search`` and ``/assistants/count``."""

    graph_id: str | None = None
    name: str | None = None
    metadata: dict[str, Any] | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=2**31)


# ---- runs ----------------------------------------------------------------------------------


class CommandBody(_Model):
    """``command``: ``{"resume"}``, ``{"update"}``, ``{"goto"}``."""

    model_config = ConfigDict(extra="forbid")
    resume: Any = None
    update: Any = None
    goto: Any = None


class RunCreate(_Model):
    """RunCreateStateful / RunCreateStateless body of the run endpoints."""

    assistant_id: str
    input: Any = None
    command: CommandBody | None = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None
    stream_mode: StreamMode | list[StreamMode] = "values"
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    multitask_strategy: MultitaskStrategy | None = None
    if_not_exists: Literal["reject", "create"] = "reject"
    after_seconds: float = Field(0, ge=0, le=366 * 86400)
    on_disconnect: Literal["cancel", "continue"] = "continue"
    on_completion: Literal["delete", "keep"] | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    checkpoint_during: bool | None = None
    webhook: str | None = None
    feedback_keys: list[str] | None = None

    def to_spec(self, thread_id: str | None) -> RunSpec:
        """The runtime RunSpec. Raises UnsupportedOption for options not implemented."""
        if self.webhook:
            raise UnsupportedOption("webhook")
        if self.feedback_keys:
            raise UnsupportedOption("feedback_keys")
        modes = [self.stream_mode] if isinstance(self.stream_mode, str) else self.stream_mode
        checkpoint = self.checkpoint.model_dump() if self.checkpoint else None
        if self.checkpoint_id:
            checkpoint = {**(checkpoint or {}), "checkpoint_id": self.checkpoint_id}
        durability = self.durability
        if durability is None and self.checkpoint_during is not None:
            durability = "async" if self.checkpoint_during else "exit"
        command = self.command.model_dump(exclude_unset=True) if self.command else None
        return RunSpec(
            assistant_id=self.assistant_id,
            thread_id=thread_id,
            input=self.input,
            command=command,
            config=dict(self.config or {}),
            context=dict(self.context or {}),
            metadata=dict(self.metadata or {}),
            stream_mode=tuple(dict.fromkeys(modes)) or ("values",),
            stream_subgraphs=self.stream_subgraphs,
            stream_resumable=self.stream_resumable,
            interrupt_before=self.interrupt_before,
            interrupt_after=self.interrupt_after,
            checkpoint=checkpoint,
            multitask_strategy=self.multitask_strategy or MultitaskStrategy.ENQUEUE,
            if_not_exists=self.if_not_exists,
            after_seconds=self.after_seconds,
            on_completion=self.on_completion,
            durability=durability,
        )


class RunListQuery(_Model):
    """Query of ``GET /threads/{id}/runs``."""

    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=2**31)
    status: (
        Literal["pending", "running", "success", "error", "interrupted", "timeout"] | None
    ) = None


class BulkCancel(_Model):
    """Body of ``POST /runs/cancel``: ``run_ids`` (optionally of ``thread_id``), or all runs
    of ``thread_id`` with ``status``."""

    run_ids: list[str] | None = None
    thread_id: str | None = None
    status: Literal["pending", "running", "all"] = "all"

    @field_validator("run_ids", "thread_id")
    @classmethod
    def _uuids(cls, v: Any) -> Any:
        import uuid

        for item in ([v] if isinstance(v, str) else v or []):
            uuid.UUID(item)  # ValueError -> 422 naming the field
        return v


class CancelQuery(_Model):
    """Query of ``POST /threads/{t}/runs/{r}/cancel``."""

    wait: bool = False
    action: Literal["interrupt", "rollback"] = "interrupt"
