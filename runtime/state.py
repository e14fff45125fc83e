"""Thread state: snapshots, history, ``update_state`` and copy, in the Platform's JSON shapes.

Follows ``GET /threads/{id}/state[/{checkpoint_id}]``, ``POST /threads/{id}/state``,
``GET|POST /threads/{id}/history`` and ``POST /threads/{id}/copy``. The graph of a thread is the
one named by its ``metadata.graph_id`` (set by its first run, or by the client at creation).
"""

from __future__ import annotations

import ast
import re
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.errors import InvalidUpdateError
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from runtime.bridge import MemoryStreamBridge
from runtime.checkpointer import Saver, copy_thread
from runtime.errors import BadRequest, CheckpointNotFound, InvalidRequest
from runtime.graphs import GraphRegistry
from runtime.ids import uuid7
from runtime.serialization import dumps, to_jsonable
from runtime.store import SqliteStore
from runtime.types import Thread, ThreadStatus
from runtime.worker import error_payload

EMPTY_STATE: dict[str, Any] = {
    "values": {},
    "next": [],
    "tasks": [],
    "metadata": None,
    "created_at": None,
    "checkpoint": None,
    "parent_checkpoint": None,
    "interrupts": [],
    "checkpoint_id": None,
    "parent_checkpoint_id": None,
}


def _checkpoint(config: Any) -> dict[str, Any] | None:
    if not config:
        return None
    c = config.get("configurable") or {}
    return {
        "thread_id": c.get("thread_id"),
        "checkpoint_ns": c.get("checkpoint_ns", ""),
        "checkpoint_id": c.get("checkpoint_id"),
        "checkpoint_map": c.get("checkpoint_map"),
    }


_REPR = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)\((?P<args>.*)\)$", re.S)


def task_error(error: BaseException | str | None) -> str | None:
    """A task's error as the JSON text ``{"error", "message"}`` the JS SDK parses.

    Errors read back from a checkpoint are ``repr`` strings (``"ValueError('boom')"``); a
    cancellation is not an error (None).
    """
    if error is None:
        return None
    if isinstance(error, BaseException):
        payload = error_payload(error)
    else:
        match = _REPR.match(error.strip())
        if match is None:
            payload = {"error": "Error", "message": error}
        else:
            args = match["args"]
            try:
                literal = ast.literal_eval(args) if args else ""
            except (ValueError, SyntaxError):
                literal = args
            payload = {"error": match["name"].rsplit(".", 1)[-1],
                       "message": literal if isinstance(literal, str) else str(literal)}
    if payload["error"] == "CancelledError":
        return None
    return dumps(payload).decode()


def snapshot_to_api(snapshot: StateSnapshot) -> dict[str, Any]:
    """A StateSnapshot as the Platform's ThreadState JSON object."""
    if snapshot.created_at is None and not snapshot.values:
        return dict(EMPTY_STATE)
    checkpoint = _checkpoint(snapshot.config)
    parent = _checkpoint(snapshot.parent_config)
    tasks = []
    for task in snapshot.tasks:
        tasks.append({
            "id": task.id,
            "name": task.name,
            "path": list(task.path),
            "error": task_error(task.error),
            "interrupts": [{"value": i.value, "id": i.id} for i in task.interrupts],
            "checkpoint": _checkpoint(task.state) if isinstance(task.state, dict) else None,
            "state": None,
            "result": task.result,
        })
    return cast(dict[str, Any], to_jsonable({
        "values": snapshot.values,
        "next": list(snapshot.next),
        "tasks": tasks,
        "metadata": snapshot.metadata,
        "created_at": snapshot.created_at,
        "checkpoint": checkpoint,
        "parent_checkpoint": parent,
        "interrupts": [{"value": i.value, "id": i.id} for i in snapshot.interrupts],
        "checkpoint_id": checkpoint["checkpoint_id"] if checkpoint else None,
        "parent_checkpoint_id": parent["checkpoint_id"] if parent else None,
    }))


class ThreadState:
    """State operations on threads. Thread lookups raise ThreadNotFound."""

    def __init__(
        self, store: SqliteStore, graphs: GraphRegistry, checkpointer: Saver,
        bridge: MemoryStreamBridge,
    ) -> None:
        self._bridge = bridge
        self._store = store
        self._graphs = graphs
        self._checkpointer = checkpointer

    def _graph(self, thread: Thread) -> Pregel[Any, Any, Any, Any] | None:
        graph_id = thread.metadata.get("graph_id")
        if isinstance(graph_id, str) and self._graphs.has_graph(graph_id):
            return self._graphs.graph(graph_id)
        return None

    @staticmethod
    def _config(thread_id: str, checkpoint: dict[str, Any] | None) -> RunnableConfig:
        configurable: dict[str, Any] = {"thread_id": thread_id}
        if checkpoint and checkpoint.get("checkpoint_id"):
            configurable["checkpoint_id"] = checkpoint["checkpoint_id"]
            configurable["checkpoint_ns"] = checkpoint.get("checkpoint_ns") or ""
        return {"configurable": configurable}

    async def get(
        self, thread_id: str, checkpoint: dict[str, Any] | None = None, subgraphs: bool = False
    ) -> dict[str, Any]:
        """The thread's state at its head or at ``checkpoint`` (``{"checkpoint_id", ...}``).

        Raises:
            ThreadNotFound; CheckpointNotFound for an unknown checkpoint id.
        """
        thread = await self._store.get_thread(thread_id)
        graph = self._graph(thread)
        if graph is None:
            if checkpoint and checkpoint.get("checkpoint_id"):
                raise CheckpointNotFound(checkpoint["checkpoint_id"])
            return dict(EMPTY_STATE)
        snapshot = await graph.aget_state(self._config(thread_id, checkpoint), subgraphs=subgraphs)
        if checkpoint and checkpoint.get("checkpoint_id") and snapshot.created_at is None:
            raise CheckpointNotFound(checkpoint["checkpoint_id"])
        return snapshot_to_api(snapshot)

    async def history(
        self, thread_id: str, *, limit: int = 10, before: dict[str, Any] | str | None = None,
        metadata: dict[str, Any] | None = None, checkpoint: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Snapshots newest first (``POST /threads/{id}/history``). ``before`` is a config
        (``{"configurable": {"checkpoint_id"}}``) or a checkpoint dict."""
        thread = await self._store.get_thread(thread_id)
        graph = self._graph(thread)
        if graph is None:
            return []
        before_cfg = None
        if isinstance(before, str):  # a bare checkpoint id (what the SDKs send)
            before = {"checkpoint_id": before}
        if before:
            inner = before.get("configurable", before)
            if not isinstance(inner, dict):
                raise InvalidRequest("before: expected {\"configurable\": {\"checkpoint_id\"}}")
            if inner.get("checkpoint_id"):
                before_cfg = self._config(thread_id, inner)
        out = []
        try:
            async for snap in graph.aget_state_history(
                self._config(thread_id, checkpoint), filter=metadata or None, before=before_cfg,
                limit=limit,
            ):
                out.append(snapshot_to_api(snap))
        except ValueError as exc:  # e.g. a metadata filter key the checkpointer refuses
            raise InvalidRequest(f"metadata: {exc}") from None
        return out

    async def update(
        self, thread_id: str, values: Any, as_node: str | None = None,
        checkpoint: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Apply ``values`` as if ``as_node`` wrote them (``POST /threads/{id}/state``).

        Returns:
            ``{"checkpoint": {...}, "configurable": {...}, "checkpoint_id": ...}``.

        Raises:
            BadRequest: the thread has no graph yet, or ``as_node`` is not a node.
        """
        thread = await self._store.get_thread(thread_id)
        graph = self._graph(thread)
        if graph is None:
            raise BadRequest(
                f"Thread '{thread_id}' has no assigned graph ID. This usually occurs when no "
                "runs have been made on this thread. Please create a run first."
            )
        if as_node is not None and as_node not in graph.nodes:
            raise BadRequest(f"Node {as_node} does not exist")
        try:
            config = await graph.aupdate_state(self._config(thread_id, checkpoint), values,
                                               as_node)
        except (InvalidUpdateError, ValueError, TypeError, KeyError, NotImplementedError) as exc:
            raise BadRequest(f"Invalid state update: {type(exc).__name__}: {exc}") from None
        snapshot = await graph.aget_state({"configurable": {"thread_id": thread_id}})
        await self._mirror(thread_id, snapshot)
        self._bridge.publish_thread(thread_id, "state_update",
                                    dumps({"state": snapshot_to_api(snapshot)}))
        c = config["configurable"]
        ref = {"thread_id": thread_id, "checkpoint_ns": c.get("checkpoint_ns", ""),
               "checkpoint_id": c["checkpoint_id"]}
        return {"checkpoint": ref, "configurable": ref, "checkpoint_id": c["checkpoint_id"]}

    async def _mirror(self, thread_id: str, snapshot: StateSnapshot) -> None:
        interrupts = {
            t.id: [{"id": i.id, "value": i.value} for i in t.interrupts]
            for t in snapshot.tasks if t.interrupts
        }
        status = ThreadStatus.INTERRUPTED if snapshot.next else ThreadStatus.IDLE
        await self._store.set_thread_state(
            thread_id, to_jsonable(snapshot.values), to_jsonable(interrupts), status
        )

    async def copy(self, thread_id: str) -> Thread:
        """A new thread with the same metadata and checkpoints (``POST /threads/{id}/copy``)."""
        source = await self._store.get_thread(thread_id)
        new_id = uuid7()
        await self._store.create_thread(new_id, source.metadata)
        await copy_thread(self._checkpointer, thread_id, new_id)
        graph = self._graph(source)
        if graph is not None:
            snapshot = await graph.aget_state({"configurable": {"thread_id": new_id}})
            await self._mirror(new_id, snapshot)
        return await self._store.get_thread(new_id)
