"""The AssistantStore Protocol: stored assistants and their versions (SQLite:
runtime/assistants/sqlite.py; PostgreSQL: runtime/assistants/postgres.py). One contract suite
(tests/contract/test_assistants.py) runs against both.

Invariants:
1. Versions live in their own table; an assistant always has the version row it points at.
   ``update_assistant`` writes version ``max(version) + 1`` and points the assistant at it in
   ONE transaction (PostgreSQL: under the assistant's row lock), so concurrent PATCHes from
   any number of processes get distinct, gap-free version numbers.
2. ``delete_assistant`` removes the assistant, all its versions and its crons (and their
   fires) in one transaction.
3. Search order is total (ties broken by ``assistant_id``) and the same on both engines:
   text compares by code point (SQLite BINARY, PostgreSQL ``COLLATE "C"``), names through
   ``types.name_key``. In-memory rows (the system assistants) passed as ``extra`` are sorted
   and paged together with the stored ones by the database itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from runtime.assistants.types import AssistantRecord, AssistantVersion
from runtime.auth_filter import AuthFilter


class AssistantStore(Protocol):
    """Stored assistants (``/assistants`` endpoints) and their versions."""

    async def create_assistant(self, assistant: AssistantRecord) -> AssistantRecord:
        """Insert ``assistant`` (its ``version`` 1) and its first version row.
        Raises AssistantExists for a taken id."""

    async def get_assistant(self, assistant_id: str) -> AssistantRecord:
        """The assistant at its current version. Raises AssistantNotFound."""

    async def update_assistant(
        self, assistant_id: str, apply: Callable[[AssistantRecord], AssistantRecord]
    ) -> AssistantRecord:
        """Write ``apply(current)`` as a new version ``max(version) + 1`` and make it current,
        atomically (invariant 1); the new state. ``apply`` may raise: nothing is written.
        Raises AssistantNotFound."""

    async def set_version(
        self, assistant_id: str, version: int,
        check: Callable[[AssistantRecord], None] | None = None,
    ) -> AssistantRecord:
        """Make stored ``version`` current again: every field of it (graph, config, context,
        metadata, name, description), ``updated_at`` now. ``check(current)`` runs first in
        the transaction and may raise. Raises AssistantNotFound, AssistantVersionNotFound."""

    async def delete_assistant(self, assistant_id: str) -> bool:
        """Delete the assistant, its versions and crons (invariant 2); False if none."""

    async def list_versions(
        self, assistant_id: str, *, metadata: dict[str, Any] | None = None,
        limit: int = 10, offset: int = 0,
    ) -> list[AssistantVersion]:
        """The assistant's versions whose metadata contains ``metadata``, newest first.
        Raises AssistantNotFound (no such assistant)."""

    async def search_assistants(
        self, *, graph_id: str | None = None, name: str | None = None,
        metadata: dict[str, Any] | None = None, auth: AuthFilter | None = None,
        limit: int = 10, offset: int = 0, sort_by: str = "created_at",
        sort_order: str = "desc", extra: Sequence[AssistantRecord] = (),
    ) -> list[AssistantRecord]:
        """One page of the stored assistants matching every filter, merged with ``extra``
        (in-memory rows already filtered by the caller) in the order ``sort_by``/
        ``sort_order`` (invariant 3).

        Args:
            name: case-insensitive substring of the name.
            metadata: JSON containment (PostgreSQL ``@>``).
            auth: an authorization handler's filter on ``metadata`` (ORed alternatives;
                none: nothing matches), applied in the query so pages stay full.

        Raises:
            InvalidRequest: a filter out of bounds (runtime/store/filters.py
                ``check_filter``) or, on PostgreSQL, holding U+0000.
        """

    async def count_assistants(
        self, *, graph_id: str | None = None, name: str | None = None,
        metadata: dict[str, Any] | None = None, auth: AuthFilter | None = None,
    ) -> int:
        """How many stored assistants match (filters as ``search_assistants``)."""
