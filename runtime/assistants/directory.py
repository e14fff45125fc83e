"""AssistantDirectory: every assistant a request can name, the system ones (one per configured
graph, in memory: runtime/graphs.py) and the stored ones (an AssistantStore), behind one set of
operations for the ``/assistants`` endpoints and for run creation.

Authorization: each operation takes the filter an ``assistants.*`` handler returned (or None).
A by-id operation on an assistant the filter does not match fails exactly as for a missing one
(404); search and count apply it in the query (stored) or with ``AuthFilter.matches``
(system).

Deliberate differences from the LangGraph Platform reference:
1. System assistants are read-only: PATCH, DELETE and ``/latest`` of one are a 409
   (``SystemAssistantReadOnly``). The reference lets you change and delete them, after which
   runs naming the graph fail until a restart.
2. ``/latest`` restores the whole version, ``context`` and ``graph_id`` included (the
   reference keeps the newer context and graph).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from runtime.assistants.edit import AssistantChanges, new_record, patched
from runtime.assistants.protocol import AssistantStore
from runtime.assistants.types import AssistantRecord, AssistantVersion, from_system, name_key
from runtime.auth_filter import AuthFilter
from runtime.errors import (
    AssistantExists,
    AssistantNotFound,
    AssistantVersionNotFound,
    GraphNotFound,
    InvalidAssistant,
    NothingToCancel,
    SystemAssistantReadOnly,
    ThreadNotFound,
)
from runtime.graphs import GraphRegistry
from runtime.ids import is_uuid
from runtime.store.filters import contains
from runtime.types import CancelAction

if TYPE_CHECKING:
    from runtime.runs.manager import RunManager

MAX_THREAD_DELETES = 100_000
"""Most threads one ``DELETE /assistants/{id}?delete_threads=true`` deletes."""


async def resolve_for_run(graphs: GraphRegistry, store: AssistantStore, name: str
                          ) -> AssistantRecord:
    """The assistant a run body names (``assistant_id``: a graph id or an assistant UUID) at
    its current version; a graph id never touches the store.

    Raises:
        InvalidAssistant: neither a UUID nor a graph id (422).
        AssistantNotFound: a UUID of no assistant (404).
        GraphNotFound: a stored assistant whose graph is no longer configured (404).
    """
    if graphs.has_graph(name):
        return from_system(graphs.resolve(name))
    if not is_uuid(name):
        raise InvalidAssistant(name, graphs.graph_ids)
    canonical = str(uuid.UUID(name))
    try:
        return from_system(graphs.get(canonical))
    except AssistantNotFound:
        found = await store.get_assistant(canonical)
    if not graphs.has_graph(found.graph_id):  # its graph left the configuration
        raise GraphNotFound(found.graph_id, graphs.graph_ids)
    return found


def _visible(assistant: AssistantRecord, auth: AuthFilter | None) -> bool:
    return auth is None or auth.matches(assistant.metadata)


class AssistantDirectory:
    """System + stored assistants (module docstring). Cheap to build per request.

    Args:
        graphs: the configured graphs (and their system assistants).
        store: the stored assistants.
    """

    def __init__(self, graphs: GraphRegistry, store: AssistantStore) -> None:
        self.graphs = graphs
        self.store = store
        self._system = {a.assistant_id: from_system(a) for a in graphs.assistants()}

    def system(self, assistant_id: str) -> AssistantRecord | None:
        """The system assistant with this UUID, or None."""
        return self._system.get(assistant_id)

    def _check_graph(self, graph_id: str) -> None:
        if not self.graphs.has_graph(graph_id):
            raise GraphNotFound(graph_id, self.graphs.graph_ids)

    async def resolve(self, name: str, auth: AuthFilter | None = None) -> AssistantRecord:
        """The assistant a run body or a sub-resource path names: a graph id (its system
        assistant) or an assistant UUID, at its current version.

        Raises:
            InvalidAssistant: neither a UUID nor a graph id (422).
            AssistantNotFound: a UUID of no assistant, or one ``auth`` hides (404).
        """
        found = await resolve_for_run(self.graphs, self.store, name)
        if not _visible(found, auth):
            raise AssistantNotFound(found.assistant_id)
        return found

    async def get(self, assistant_id: str, auth: AuthFilter | None = None,
                  detail: str | None = None) -> AssistantRecord:
        """The assistant with this (canonical) UUID. Raises AssistantNotFound (``detail``:
        the endpoint's 404 text), also when ``auth`` hides it."""
        found = self._system.get(assistant_id)
        try:
            if found is None:
                found = await self.store.get_assistant(assistant_id)
        except AssistantNotFound:
            raise AssistantNotFound(assistant_id, detail) from None
        if not _visible(found, auth):
            raise AssistantNotFound(assistant_id, detail)
        return found

    async def create(
        self, assistant_id: str | None, graph_id: str, *, config: dict[str, Any] | None,
        context: dict[str, Any] | None, metadata: dict[str, Any] | None, name: str | None,
        description: str | None, if_exists: str = "raise", auth: AuthFilter | None = None,
    ) -> AssistantRecord:
        """``POST /assistants``: a new assistant at version 1 (random id when None).

        ``if_exists="do_nothing"`` returns the existing assistant instead, if ``auth``
        lets the caller see it (else 409: never another user's assistant).

        Raises:
            GraphNotFound: ``graph_id`` is not configured (404).
            BadRequest: both ``context`` and ``config.configurable`` (400).
            AssistantExists: the id is taken, by a stored or a system assistant (409).
        """
        self._check_graph(graph_id)
        record = new_record(assistant_id or str(uuid.uuid4()), graph_id, config, context,
                            metadata, name, description)
        try:
            if record.assistant_id in self._system:
                raise AssistantExists(record.assistant_id)
            return await self.store.create_assistant(record)
        except AssistantExists:
            if if_exists != "do_nothing":
                raise
            existing = await self.get(record.assistant_id)
            if not _visible(existing, auth):
                raise
            return existing

    def _writable(self, assistant_id: str) -> None:
        if assistant_id in self._system:
            raise SystemAssistantReadOnly(assistant_id)

    async def update(self, assistant_id: str, changes: AssistantChanges,
                     auth: AuthFilter | None = None) -> AssistantRecord:
        """``PATCH /assistants/{id}``: a new version, made current (edit.py rule 2).

        Raises:
            SystemAssistantReadOnly: a system assistant (409; difference 1).
            AssistantNotFound: missing or hidden by ``auth`` (404).
            GraphNotFound: a new ``graph_id`` that is not configured (404).
            BadRequest: both ``context`` and ``config.configurable`` (400).
        """
        self._writable(assistant_id)
        if changes.graph_id is not None:
            self._check_graph(changes.graph_id)
        detail = f"Assistant {assistant_id} not found"

        def apply(current: AssistantRecord) -> AssistantRecord:
            if not _visible(current, auth):
                raise AssistantNotFound(assistant_id, detail)
            return patched(current, changes)

        try:
            return await self.store.update_assistant(assistant_id, apply)
        except AssistantNotFound:
            raise AssistantNotFound(assistant_id, detail) from None

    async def set_latest(self, assistant_id: str, version: int | None,
                         auth: AuthFilter | None = None) -> AssistantRecord:
        """``POST /assistants/{id}/latest``: make ``version`` current, every field of it
        (difference 2).

        Raises:
            SystemAssistantReadOnly: a system assistant (409).
            AssistantNotFound: missing or hidden (404).
            AssistantVersionNotFound: no such version, or None (404 ``Version None not
                found``, as the reference answers a body without one).
        """
        self._writable(assistant_id)
        detail = f"Assistant {assistant_id} not found"
        if version is None:
            await self.get(assistant_id, auth, detail)
            raise AssistantVersionNotFound(assistant_id, None)

        def check(current: AssistantRecord) -> None:
            if not _visible(current, auth):
                raise AssistantNotFound(assistant_id, detail)

        try:
            return await self.store.set_version(assistant_id, version, check)
        except AssistantNotFound:
            raise AssistantNotFound(assistant_id, detail) from None

    async def versions(self, assistant_id: str, *, metadata: dict[str, Any] | None,
                       limit: int, offset: int, auth: AuthFilter | None = None
                       ) -> list[AssistantVersion]:
        """``POST /assistants/{id}/versions``, newest first (a system assistant: its one
        version). Raises AssistantNotFound (missing or hidden)."""
        current = await self.get(assistant_id, auth, f"Assistant {assistant_id} not found")
        if current.system:
            one = [current.as_version()]
            return [v for v in one if contains(v.metadata, metadata or {})][offset:][:limit]
        try:
            return await self.store.list_versions(assistant_id, metadata=metadata,
                                                  limit=limit, offset=offset)
        except AssistantNotFound:
            raise AssistantNotFound(assistant_id, f"Assistant {assistant_id} not found"
                                    ) from None

    async def delete(self, assistant_id: str, manager: RunManager, *,
                     delete_threads: bool = False, auth: AuthFilter | None = None) -> None:
        """``DELETE /assistants/{id}``: the assistant, its versions and crons; then its
        pending and running runs are cancelled (interrupt) and, with ``delete_threads``, the
        threads whose ``metadata.assistant_id`` is it are deleted (runs, checkpoints).

        Raises:
            SystemAssistantReadOnly: a system assistant (409; difference 1).
            AssistantNotFound: missing or hidden (404 ``Assistant with ID <id> not found``).
        """
        self._writable(assistant_id)
        detail = f"Assistant with ID {assistant_id} not found"
        await self.get(assistant_id, auth, detail)
        if not await self.store.delete_assistant(assistant_id):
            raise AssistantNotFound(assistant_id, detail)
        runs = [r.run_id for r in await manager.store.active_runs()
                if r.assistant_id == assistant_id]
        if runs:
            try:
                await manager.cancel_many(CancelAction.INTERRUPT, run_ids=runs)
            except NothingToCancel:
                pass  # they finished meanwhile
        if delete_threads:
            await _delete_threads(manager, assistant_id)

    def _system_matches(self, graph_id: str | None, name: str | None,
                        metadata: dict[str, Any] | None, auth: AuthFilter | None
                        ) -> list[AssistantRecord]:
        return [a for a in self._system.values()
                if (graph_id is None or a.graph_id == graph_id)
                and (not name or name_key(name) in name_key(a.name))
                and contains(a.metadata, metadata or {}) and _visible(a, auth)]

    async def search(
        self, *, graph_id: str | None = None, name: str | None = None,
        metadata: dict[str, Any] | None = None, limit: int = 10, offset: int = 0,
        sort_by: str = "created_at", sort_order: str = "desc",
        auth: AuthFilter | None = None,
    ) -> tuple[list[AssistantRecord], int]:
        """``POST /assistants/search``: one page of system + stored assistants, and how many
        match in all. Raises GraphNotFound (an unknown ``graph_id``, as the reference),
        InvalidRequest (a filter out of bounds)."""
        if graph_id is not None:
            self._check_graph(graph_id)
        extra = self._system_matches(graph_id, name, metadata, auth)
        page = await self.store.search_assistants(
            graph_id=graph_id, name=name, metadata=metadata, auth=auth, limit=limit,
            offset=offset, sort_by=sort_by, sort_order=sort_order, extra=extra)
        total = len(extra) + await self.store.count_assistants(
            graph_id=graph_id, name=name, metadata=metadata, auth=auth)
        return page, total

    async def count(self, *, graph_id: str | None = None, name: str | None = None,
                    metadata: dict[str, Any] | None = None, auth: AuthFilter | None = None
                    ) -> int:
        """``POST /assistants/count``. Raises as ``search``."""
        if graph_id is not None:
            self._check_graph(graph_id)
        return len(self._system_matches(graph_id, name, metadata, auth)) + (
            await self.store.count_assistants(graph_id=graph_id, name=name,
                                              metadata=metadata, auth=auth))


async def _delete_threads(manager: RunManager, assistant_id: str) -> None:
    """Delete every thread whose ``metadata.assistant_id`` is ``assistant_id``."""
    deleted = 0
    while deleted < MAX_THREAD_DELETES:
        threads, _ = await manager.store.search_threads(
            metadata={"assistant_id": assistant_id}, limit=100)
        if not threads:
            return
        for thread in threads:
            try:
                await manager.delete_thread(thread.thread_id)
            except ThreadNotFound:
                pass  # deleted meanwhile
            deleted += 1
