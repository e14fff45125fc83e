"""Request models (pydantic) and their conversion to runtime types. Nothing else lives here.

Models accept unknown fields (``extra="ignore"``) so newer SDKs keep working, and reject by
name, with 422, the options the gateway does not implement (design.md section 7).

Bounds every request body meets before any model sees it (``parse_body``, the one place
bodies are parsed):

1. Size: at most ``max_body_mb`` bytes, enforced before the body is read (gateway/limits.py).
2. Depth: a top-level field's value nests at most ``MAX_JSON_DEPTH`` (64) arrays/objects,
   else 422 ``<field>: JSON nested deeper than 64 levels``. orjson parses up to 1024 levels
   but encodes at most 255, and stored run kwargs, checkpoints and events wrap a request
   value in several more levels: a value deeper than ~250 levels was accepted and then
   failed later (``Recursion limit reached`` storing the run, Python's recursion limit in
   langchain's message coercion), giving 500s and half-created runs.
3. UUIDs in bodies (``thread_id``, ``ids``, ``run_ids``) are canonicalised (lower case,
   hyphens) like path ids, so one UUID never names two threads; a non-UUID is a 422.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
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

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays/objects in one top-level field of a request body (point 2)."""

MAX_IDS = 1000
"""Most ids in one ``ids``/``run_ids`` list: each is one SQL parameter (SQLite allows 32766)."""


def _canonical_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("must be a UUID") from None


CanonicalUuid = Annotated[str, AfterValidator(_canonical_uuid)]
"""A UUID in any form ``uuid.UUID`` parses (upper case, braces, ``urn:uuid:``, no hyphens),
stored in its canonical form; anything else is a 422 ``<field>: must be a UUID``."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _field_error(exc: ValidationError) -> InvalidField:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        # our validators' ValueError text, without pydantic's "Value error, " prefix
        cause = err.get("ctx", {}).get("error") if err["type"] == "value_error" else None
        parts.append(f"{loc}: {cause if cause is not None else err['msg']}")
    return InvalidField("; ".join(parts))


def _depth_error(data: Any) -> InvalidField | None:
    """The 422 for a body nested deeper than ``MAX_JSON_DEPTH`` levels (naming its first
    too-deep top-level field), or None. Iterative, so a deep value cannot exhaust the stack."""
    fields = data.items() if isinstance(data, dict) else [("body", data)]
    for name, value in fields:
        stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
        while stack:
            item, depth = stack.pop()
            if depth > MAX_JSON_DEPTH:
                return InvalidField(f"{name}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return None


async def parse_body(request: Request, model: type[M], *, optional: bool = False) -> M:
    """Parse and validate the JSON body as ``model``.

    Args:
        optional: an empty body means ``{}`` (endpoints whose every field is optional).

    Raises:
        InvalidJson: malformed or (unless ``optional``) empty body -> 422.
        InvalidField: a field is wrong, or nested deeper than ``MAX_JSON_DEPTH`` -> 422
            naming the field.
        BodyTooLarge: the body is over ``max_body_mb`` (gateway/limits.py) -> 413.
    """
    raw = await request.body()
    if not raw.strip():
        if not optional:
            raise InvalidJson()
        raw = b"{}"
    try:
        data = orjson.loads(raw)  # refuses more than 1024 levels itself
    except orjson.JSONDecodeError:
        raise InvalidJson() from None
    # there cannot be more levels than opening brackets: most bodies skip the walk
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:
        too_deep = _depth_error(data)
        if too_deep is not None:
            raise too_deep
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

    thread_id: CanonicalUuid | None = None
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

    ids: list[CanonicalUuid] | None = Field(None, max_length=MAX_IDS)
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


# ---- assistants: gateway/assistant_schemas.py ---------------------------------------------


# ---- runs ----------------------------------------------------------------------------------


class CommandBody(_Model):
    """``command``: ``{"resume"}``, ``{"update"}``, ``{"goto"}``."""

    model_config = ConfigDict(extra="forbid")
    resume: Any = None
    update: Any = None
    goto: Any = None


class RunConfig(_Model):
    """``config`` of a run body: a RunnableConfig. The keys LangGraph and the worker read are
    typed (a ``configurable`` of 5 used to fail the run outside its error handling, a
    ``metadata`` of 5 took the whole runtime down); other keys pass through unchanged."""

    model_config = ConfigDict(extra="allow")
    configurable: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    run_name: str | None = None
    run_id: str | None = None
    recursion_limit: int | None = Field(None, ge=1, le=2**31 - 1)
    max_concurrency: int | None = Field(None, ge=1, le=2**31 - 1)
    callbacks: None = None  # callbacks are objects: JSON cannot carry one


class RunCreate(_Model):
    """RunCreateStateful / RunCreateStateless body of the run endpoints."""

    assistant_id: str
    input: Any = None
    command: CommandBody | None = None
    metadata: dict[str, Any] | None = None
    config: RunConfig | None = None
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
            config=self.config.model_dump(exclude_unset=True) if self.config else {},
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
            webhook=self.webhook,
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

    run_ids: list[CanonicalUuid] | None = Field(None, max_length=MAX_IDS)
    thread_id: CanonicalUuid | None = None
    status: Literal["pending", "running", "all"] = "all"


class CancelQuery(_Model):
    """Query of ``POST /threads/{t}/runs/{r}/cancel``."""

    wait: bool = False
    action: Literal["interrupt", "rollback"] = "interrupt"
