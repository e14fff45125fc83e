"""Graph registry: loads ``"./path.py:attr"`` / ``"module:attr"`` specs; owns the system assistants.

Each configured graph gets one system assistant whose id is
``uuid5(UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), graph_id)`` (the reference's rule, which
is not ``NAMESPACE_URL``). A spec may name a compiled graph, a ``StateGraph`` builder (compiled
here) or a factory function returning either (called once, at load, with no arguments or with
a ``RunnableConfig``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel
from langgraph.store.base import BaseStore

from runtime.errors import AssistantNotFound, InvalidAssistant
from runtime.ids import is_uuid

ASSISTANT_NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
SYSTEM_CREATED_AT = "2025-01-01T00:00:00+00:00"


def assistant_id_for(graph_id: str) -> str:
    """The system assistant UUID of ``graph_id``."""
    return str(uuid.uuid5(ASSISTANT_NAMESPACE, graph_id))


@dataclass(frozen=True)
class Assistant:
    """A system assistant (one per graph), as ``GET /assistants/{id}`` returns it."""

    assistant_id: str
    graph_id: str
    created_at: str = SYSTEM_CREATED_AT
    metadata: dict[str, Any] = field(default_factory=lambda: {"created_by": "system"})

    def to_api(self) -> dict[str, Any]:
        """The Assistant object of the Platform API."""
        return {
            "assistant_id": self.assistant_id,
            "graph_id": self.graph_id,
            "config": {},
            "context": {},
            "metadata": self.metadata,
            "name": self.graph_id,
            "description": None,
            "version": 1,
            "created_at": self.created_at,
            "updated_at": self.created_at,
        }


class GraphLoadError(Exception):
    """A graph spec could not be imported or does not name a graph."""


def locate_spec(spec: str, base_dir: Path) -> tuple[Path | str, str]:
    """Where a graph spec points, without importing anything: ``(file path or module name,
    attribute)``. ``"./file.py:attr"`` resolves against ``base_dir``.

    Raises:
        GraphLoadError: the spec is malformed, or its file or module does not exist.
    """
    if ":" not in spec:
        raise GraphLoadError(f"graph spec {spec!r} must look like './file.py:attr'")
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py") or "/" in target:
        path = (base_dir / target).resolve()
        if not path.is_file():
            raise GraphLoadError(f"graph file {path} does not exist (from spec {spec!r})")
        return path, attr
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise GraphLoadError(f"module {target!r} cannot be found (from spec {spec!r})")
    return target, attr


def import_attr(spec: str, base_dir: Path) -> Any:
    """Import ``"./file.py:attr"`` (relative to ``base_dir``) or ``"package.module:attr"``.

    Raises:
        GraphLoadError: see ``locate_spec``, or the attribute is missing.
    """
    target, attr = locate_spec(spec, base_dir)
    if isinstance(target, Path):
        path = target
        mod_name = f"_gateway_graph_{path.stem}_{abs(hash(str(path)))}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        if module_spec is None or module_spec.loader is None:
            raise GraphLoadError(f"cannot import {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise GraphLoadError(f"{target} has no attribute {attr!r}") from exc


def _as_pregel(obj: Any, spec: str) -> Pregel[Any, Any, Any, Any]:
    if isinstance(obj, StateGraph):
        return obj.compile()
    if isinstance(obj, Pregel):
        return obj
    if callable(obj):
        params = inspect.signature(obj).parameters
        made = obj({}) if params else obj()
        if inspect.isawaitable(made):
            raise GraphLoadError(f"{spec}: async graph factories are not supported")
        return _as_pregel(made, spec)
    raise GraphLoadError(f"{spec} is {type(obj).__name__}, not a graph")


class GraphRegistry:
    """The configured graphs, each compiled with the gateway's checkpointer.

    Args:
        specs: ``{graph_id: "./path.py:attr"}``.
        base_dir: folder the relative paths resolve against (the config file's folder).
        checkpointer: attached to every graph.
        store: the Store (runtime/kvstore.py) attached to every graph (``runtime.store``,
            ``get_store()``), or None.

    Raises:
        GraphLoadError: at construction, for a spec that cannot be loaded.
    """

    def __init__(
        self, specs: dict[str, str], base_dir: Path, checkpointer: BaseCheckpointSaver[Any],
        store: BaseStore | None = None,
    ) -> None:
        self._graphs: dict[str, Pregel[Any, Any, Any, Any]] = {}
        self._assistants: dict[str, Assistant] = {}
        for graph_id, spec in specs.items():
            graph = _as_pregel(import_attr(spec, base_dir), spec)
            self._graphs[graph_id] = graph.copy(update={"checkpointer": checkpointer,
                                                        "store": store})
            assistant = Assistant(assistant_id_for(graph_id), graph_id)
            self._assistants[assistant.assistant_id] = assistant

    @property
    def graph_ids(self) -> list[str]:
        """Configured graph ids in configuration order."""
        return list(self._graphs)

    def assistants(self) -> list[Assistant]:
        """All system assistants."""
        return list(self._assistants.values())

    def graph(self, graph_id: str) -> Pregel[Any, Any, Any, Any]:
        """The compiled graph (with checkpointer). Raises KeyError for an unknown id."""
        return self._graphs[graph_id]

    def has_graph(self, graph_id: str) -> bool:
        """True if ``graph_id`` is configured."""
        return graph_id in self._graphs

    def resolve(self, assistant_id: str) -> Assistant:
        """Assistant from a run body's ``assistant_id`` (a graph id or an assistant UUID).

        Raises:
            InvalidAssistant: neither a UUID nor a graph id (422 in the reference).
            AssistantNotFound: a UUID of no assistant (404).
        """
        if assistant_id in self._graphs:
            return self._assistants[assistant_id_for(assistant_id)]
        if is_uuid(assistant_id):
            found = self._assistants.get(str(uuid.UUID(assistant_id)))
            if found is None:
                raise AssistantNotFound(assistant_id)
            return found
        raise InvalidAssistant(assistant_id, self.graph_ids)

    def get(self, assistant_id: str) -> Assistant:
        """Assistant by UUID only (``GET /assistants/{id}``). Raises AssistantNotFound."""
        found = self._assistants.get(assistant_id)
        if found is None:
            raise AssistantNotFound(assistant_id)
        return found
