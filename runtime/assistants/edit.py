"""How an assistant's fields are built and changed (create, PATCH) and how a run merges its
assistant: pure functions, no store.

Rules (auth-store-assistants.md section 3, observed on the reference):
1. ``context`` and ``config.configurable`` mirror each other: a given ``context`` is copied
   into ``config.configurable``; a given ``configurable`` (without ``context``) into
   ``context``. Giving both is a 400.
2. PATCH: ``metadata`` is shallow-merged; ``context`` replaces context and configurable; a
   non-empty ``config`` replaces config (and its ``configurable``, if it has one, the
   context; without one the context is kept and mirrored back); ``name``, ``description``
   and ``graph_id`` replace when given; ``updated_at`` moves, ``created_at`` stays.
3. A run (``merge_run``): ``configurable = {**assistant.configurable, **run.configurable}``,
   other config keys ``{**assistant.config, **run.config}``, ``context = {**assistant.context,
   **run.context}`` (a run without ``context`` contributes its ``configurable``, as the
   reference), ``metadata = {**assistant.metadata, **run.metadata}``; all shallow.
   Deliberate difference 1: runs of a *system* assistant are left exactly as they were
   before stored assistants existed (its config, context are empty; its metadata
   ``created_by: system`` is not copied onto every run).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from runtime.assistants.types import AssistantRecord
from runtime.errors import BadRequest
from runtime.ids import now_iso
from runtime.spec import SYSTEM_CONFIGURABLE, RunSpec

BOTH_GIVEN = ("Cannot specify both configurable and context. Prefer setting context alone. "
              "Context was introduced in LangGraph 0.6.0 and is the long term planned "
              "replacement for configurable.")
"""The reference's 400 detail for ``context`` together with ``config.configurable``."""


@dataclass(frozen=True)
class AssistantChanges:
    """A PATCH body: every field None when not given."""

    graph_id: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = None
    description: str | None = None


def check_both(config: dict[str, Any] | None, context: dict[str, Any] | None) -> None:
    """Rule 1's 400. Raises BadRequest: non-empty ``context`` and ``config.configurable``."""
    if context and (config or {}).get("configurable"):
        raise BadRequest(BOTH_GIVEN)


def mirrored(config: dict[str, Any], context: dict[str, Any] | None
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config, context)`` after rule 1 (call ``check_both`` first)."""
    if context:
        return {**config, "configurable": dict(context)}, dict(context)
    configurable = config.get("configurable")
    if isinstance(configurable, dict) and configurable:
        return dict(config), dict(configurable)
    return dict(config), {}


def new_record(
    assistant_id: str, graph_id: str, config: dict[str, Any] | None,
    context: dict[str, Any] | None, metadata: dict[str, Any] | None, name: str | None,
    description: str | None,
) -> AssistantRecord:
    """A new assistant at version 1 (``POST /assistants``). Raises BadRequest (rule 1)."""
    check_both(config, context)
    cfg, ctx = mirrored(config or {}, context)
    now = now_iso()
    return AssistantRecord(assistant_id, graph_id, cfg, ctx, dict(metadata or {}),
                           name or "Untitled", description, 1, now, now)


def patched(current: AssistantRecord, changes: AssistantChanges) -> AssistantRecord:
    """``current`` after a PATCH (rule 2); the store assigns the version. Raises BadRequest
    (rule 1)."""
    check_both(changes.config, changes.context)
    config, context = current.config, current.context
    if changes.context is not None:
        base = changes.config or config
        config = {**base, "configurable": dict(changes.context)}
        context = dict(changes.context)
        if not context:
            config.pop("configurable")
    elif changes.config:
        if "configurable" in changes.config:
            config, context = mirrored(changes.config, None)
        else:
            config = ({**changes.config, "configurable": dict(context)} if context
                      else dict(changes.config))
    return current.replace(
        graph_id=changes.graph_id or current.graph_id, config=config, context=context,
        metadata={**current.metadata, **(changes.metadata or {})},
        name=current.name if changes.name is None else changes.name,
        description=(current.description if changes.description is None
                     else changes.description),
        updated_at=now_iso())


def merge_run(spec: RunSpec, assistant: AssistantRecord) -> RunSpec:
    """``spec`` with its assistant merged in (rule 3); a system assistant's runs unchanged.
    Call after the run's own ``context``/``configurable`` check (``check_context``)."""
    if assistant.system:
        return spec
    run_configurable = dict(spec.config.get("configurable") or {})
    run_context = spec.context or {k: v for k, v in run_configurable.items()
                                   if k not in SYSTEM_CONFIGURABLE}
    configurable = {**(assistant.config.get("configurable") or {}), **run_configurable}
    config = {**assistant.config, **spec.config, "configurable": configurable}
    return dataclasses.replace(
        spec, config=config, context={**assistant.context, **run_context},
        metadata={**assistant.metadata, **spec.metadata})
