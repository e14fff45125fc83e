"""Thread state: snapshots, history, ``update_state`` and copy, in the Platform's JSON shapes.

Follows ``GET /threads/{id}/state[/{checkpoint_id}]``, ``POST /threads/{id}/state``,
``GET|POST /threads/{id}/history`` and ``POST /threads/{id}/copy``. The graph of a thread is the
one named by its ``metadata.graph_id`` (set by its first run, or by the client at creation).

Reads never fail on what a failed run left behind (design.md 4.9: never a 500). LangGraph
builds the head snapshot by replaying the checkpoint's pending writes through the graph's
reducers; the input of a run the graph refused (``{"messages": 5}``, ``[{"role": "nope"}]``)
is such a write and makes the replay raise every time. ``_snapshot`` then answers, in order:

1. the head as a record of its step (pending task writes not applied: the values before
   the refused input, ``next`` and the failed task with its error), as for an explicit
   checkpoint id;
2. the checkpoint's stored channel values as they are, without any writes.

So a ``useStream`` page reloading such a thread still loads it. Copy reads the source's
state before it creates anything, and removes what it created if a later step fails.
"""

from __future__ import annotations

import ast
import logging
import re
from typing import Any, cast

import anyio
from langchain_core.runnables import RunnableConfig
from langgraph.errors import InvalidUpdateError
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from runtime.bridge.protocol import StreamBridge
from runtime.checkpointer import Saver, copy_thread
from runtime.errors import BadRequest, CheckpointNotFound, InvalidRequest
from runtime.graphs import GraphRegistry
from runtime.ids import uuid7
from runtime.serialization import dumps, to_jsonable
from runtime.store.filters import check_filter
from runtime.store.protocol import Store
from runtime.types import Thread, ThreadStatus
from runtime.worker import error_payload

logger = logging.getLogger(__name__)

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
        self, store: Store, graphs: GraphRegistry, checkpointer: Saver,
        bridge: StreamBridge,
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
        snapshot = await self._snapshot(graph, thread_id, checkpoint, subgraphs)
        if checkpoint and checkpoint.get("checkpoint_id") and snapshot.created_at is None:
            raise CheckpointNotFound(checkpoint["checkpoint_id"])
        return snapshot_to_api(snapshot)

    async def _snapshot(
        self, graph: Pregel[Any, Any, Any, Any], thread_id: str,
        checkpoint: dict[str, Any] | None, subgraphs: bool = False,
    ) -> StateSnapshot:
        """``aget_state`` at ``checkpoint`` (head if None), with the fallbacks 1 and 2 of the
        module docstring when the graph cannot replay the checkpoint's pending writes."""
        config = self._config(thread_id, checkpoint)
        try:
            return await graph.aget_state(config, subgraphs=subgraphs)
        except Exception as exc:  # a reducer refusing a stored write: any error class
            logger.warning("thread %s: state of checkpoint %s not replayable (%s: %s); "
                           "answering the stored values", thread_id,
                           (checkpoint or {}).get("checkpoint_id", "head"),
                           type(exc).__name__, exc)
        saved = await self._checkpointer.aget_tuple(config)
        if saved is None:  # gone meanwhile (thread deleted, rolled back)
            return await graph.aget_state(config)
        if not (checkpoint and checkpoint.get("checkpoint_id")):  # fallback 1
            at = dict(saved.config["configurable"])
            try:
                return await graph.aget_state(self._config(thread_id, at), subgraphs=subgraphs)
            except Exception as exc:
                logger.warning("thread %s: checkpoint %s not readable through the graph "
                               "(%s: %s)", thread_id, at.get("checkpoint_id"),
                               type(exc).__name__, exc)
        channels = saved.checkpoint["channel_values"]  # fallback 2
        keys = graph.stream_channels_asis
        values = (channels.get(keys) if isinstance(keys, str)
                  else {k: channels[k] for k in keys if k in channels})
        return StateSnapshot(values, (), saved.config, saved.metadata, saved.checkpoint["ts"],
                             saved.parent_config, (), ())

    async def history(
        self, thread_id: str, *, limit: int = 10, before: dict[str, Any] | str | None = None,
        metadata: dict[str, Any] | None = None, checkpoint: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Snapshots newest first (``POST /threads/{id}/history``). ``before`` is a config
        (``{"configurable": {"checkpoint_id"}}``) or a checkpoint dict.

        Raises:
            ThreadNotFound; InvalidRequest: ``before`` of the wrong shape, or a ``metadata``
            filter out of bounds (``store_filters.check_filter``) or refused by the
            checkpointer.
        """
        check_filter("metadata", metadata)
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
        config = self._config(thread_id, checkpoint)
        try:
            return [snapshot_to_api(snap) async for snap in graph.aget_state_history(
                config, filter=metadata or None, before=before_cfg, limit=limit)]
        except Exception:  # a filter the checkpointer refuses, or a step not replayable
            pass
        # one checkpoint at a time, each with the fallbacks of ``_snapshot``
        listed = {**config["configurable"], "checkpoint_ns": ""}
        try:
            found = [t async for t in self._checkpointer.alist(
                {"configurable": listed}, filter=metadata or None, before=before_cfg,
                limit=limit)]
        except ValueError as exc:  # e.g. a metadata filter key the checkpointer refuses
            raise InvalidRequest(f"metadata: {exc}") from None
        return [snapshot_to_api(await self._snapshot(graph, thread_id, dict(t.config[
            "configurable"]))) for t in found]

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
        snapshot = await self._snapshot(graph, thread_id, None)
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

    async def copy(self, thread_id: str, metadata: dict[str, Any] | None = None) -> Thread:
        """A new thread with the same metadata (or ``metadata`` when given: the copier's
        owner stamps) and checkpoints (``POST /threads/{id}/copy``).

        All or nothing: the source's state is read before anything is created (the copy's
        state is the same), and a failure (or cancellation) after the new thread exists
        deletes it and its checkpoints before the error propagates.

        Raises:
            ThreadNotFound: no such source thread.
        """
        source = await self._store.get_thread(thread_id)
        graph = self._graph(source)
        snapshot = None if graph is None else await self._snapshot(graph, thread_id, None)
        new_id = uuid7()
        await self._store.create_thread(new_id, source.metadata if metadata is None else metadata)
        try:
            await copy_thread(self._checkpointer, thread_id, new_id)
            if snapshot is not None:
                await self._mirror(new_id, snapshot)
            return await self._store.get_thread(new_id)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._checkpointer.adelete_thread(new_id)
                await self._store.delete_thread(new_id)
            raise
