"""The Assistant and AssistantVersion objects (``/assistants`` endpoints), as stored and as sent.

An assistant is a graph plus a saved configuration (``config``, ``context``, ``metadata``,
``name``, ``description``). Every change (``PATCH``) appends a version; the assistant row
holds the version the runs use now (``version``), which ``POST /assistants/{id}/latest`` can
move back to any earlier one. System assistants (one per configured graph,
runtime/graphs.py) are shown in the same shape, ``system=True``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from runtime.graphs import Assistant as SystemAssistant

SORT_COLUMNS = ("assistant_id", "graph_id", "name", "created_at", "updated_at")
"""``sort_by`` values of ``POST /assistants/search`` (``name`` sorts case-insensitively)."""

API_FIELDS = ("assistant_id", "graph_id", "config", "context", "metadata", "name",
              "created_at", "updated_at", "version", "description")
"""The Assistant object's keys, in the reference's wire order (also the ``select`` values)."""


def name_key(name: str) -> str:
    """The case-insensitive form of a name the stores sort and search by (``str.lower``:
    computed here, not in SQL, so SQLite and PostgreSQL order non-ASCII names alike)."""
    return name.lower()


@dataclass(frozen=True, slots=True)
class AssistantRecord:
    """One assistant at its current version.

    Attributes:
        assistant_id: a UUID (canonical form).
        graph_id: a configured graph.
        config: a RunnableConfig (``configurable`` mirrors ``context``).
        context: the graph's run context (``runtime.context``).
        metadata: free JSON object; search filters it by containment.
        name: display name (``Untitled`` by default; a system assistant's is its graph id).
        description: text or None.
        version: the version the runs use now (1 on create).
        created_at / updated_at: ISO-8601 UTC (``+00:00``).
        system: True for a configured graph's own assistant (read-only).
    """

    assistant_id: str
    graph_id: str
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: dict[str, Any]
    name: str
    description: str | None
    version: int
    created_at: str
    updated_at: str
    system: bool = False

    def replace(self, **changes: Any) -> AssistantRecord:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def to_api(self) -> dict[str, Any]:
        """The Assistant object of the Platform API (keys in the reference's order)."""
        return {
            "assistant_id": self.assistant_id, "graph_id": self.graph_id,
            "config": self.config, "context": self.context, "metadata": self.metadata,
            "name": self.name, "created_at": self.created_at, "updated_at": self.updated_at,
            "version": self.version, "description": self.description,
        }

    def as_version(self) -> AssistantVersion:
        """This state as the version row it is stored as (``created_at``: ``updated_at``)."""
        return AssistantVersion(self.assistant_id, self.version, self.graph_id, self.config,
                                self.context, self.metadata, self.updated_at, self.name,
                                self.description)


@dataclass(frozen=True, slots=True)
class AssistantVersion:
    """One stored version of an assistant (``POST /assistants/{id}/versions``): no
    ``updated_at``; ``created_at`` is when this version was written."""

    assistant_id: str
    version: int
    graph_id: str
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: dict[str, Any]
    created_at: str
    name: str
    description: str | None

    def to_api(self) -> dict[str, Any]:
        """The AssistantVersion object, keys in the reference's order."""
        return {
            "assistant_id": self.assistant_id, "version": self.version,
            "graph_id": self.graph_id, "config": self.config, "context": self.context,
            "metadata": self.metadata, "created_at": self.created_at, "name": self.name,
            "description": self.description,
        }


def from_system(assistant: SystemAssistant) -> AssistantRecord:
    """A system assistant (runtime/graphs.py) as a record (``system=True``)."""
    api = assistant.to_api()
    return AssistantRecord(
        assistant.assistant_id, assistant.graph_id, api["config"], api["context"],
        dict(assistant.metadata), api["name"], api["description"], api["version"],
        api["created_at"], api["updated_at"], system=True)
