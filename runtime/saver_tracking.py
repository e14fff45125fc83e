"""TrackingSaver: a checkpointer wrapper that knows when a thread's writes have settled.

A cancelled LangGraph run can return before its background checkpoint writes have landed (the
writes are tasks LangGraph does not always await on cancellation). Rollback must delete the
run's checkpoints only after the last write, and a cancelled run's final state must be read
after it, so ``settled(thread_id)`` waits until no ``aput``/``aput_writes`` of the thread is in
flight and none started during a quiet period. With ThreadedSqliteSaver every write that
has started is queued in the saver's one FIFO lane (saver_sqlite.py), so a statement issued after
``settled`` on that connection runs after them (FIFO).

It is also where checkpoint writes are fenced in cluster mode (runtime/runs/cluster.py): with
``set_fence``, a write of a thread whose run this process no longer holds the lease of raises
``LeaseLost`` before it reaches the saver (a process frozen past its lease writes no
checkpoint when it wakes; a write already sent when it froze still lands).

Every other call is passed to the wrapped saver unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)


class LeaseLost(Exception):
    """A checkpoint write of a run whose lease this process no longer holds (refused)."""


class TrackingSaver(BaseCheckpointSaver[Any]):
    """Delegates to ``inner`` and counts in-flight writes per thread."""

    def __init__(self, inner: BaseCheckpointSaver[Any]) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self._in_flight: dict[str, int] = {}
        self._started: dict[str, int] = {}  # writes started, for threads being settled
        self._idle: dict[str, asyncio.Event] = {}
        self._may_write: Callable[[str], bool] | None = None

    def set_fence(self, may_write: Callable[[str], bool]) -> None:
        """Refuse (``LeaseLost``) every ``aput``/``aput_writes`` of a thread for which
        ``may_write(thread_id)`` is False."""
        self._may_write = may_write

    @property
    def config_specs(self) -> list[Any]:
        return list(self.inner.config_specs)

    def _enter(self, config: RunnableConfig) -> str:
        thread_id = str(config["configurable"]["thread_id"])
        if self._may_write is not None and not self._may_write(thread_id):
            raise LeaseLost(f"thread {thread_id}: this process no longer holds the run's lease")
        self._in_flight[thread_id] = self._in_flight.get(thread_id, 0) + 1
        if thread_id in self._started:
            self._started[thread_id] += 1
        self._idle.setdefault(thread_id, asyncio.Event()).clear()
        return thread_id

    def _leave(self, thread_id: str) -> None:
        left = self._in_flight[thread_id] - 1
        if left:
            self._in_flight[thread_id] = left
            return
        del self._in_flight[thread_id]
        event = self._idle.pop(thread_id, None)
        if event is not None:
            event.set()

    async def settled(self, thread_id: str, quiet_s: float = 0.02) -> None:
        """Return once no write of ``thread_id`` is in flight and none started during
        ``quiet_s`` seconds (LangGraph chains a save behind the previous one, so the next
        save starts only after the previous has finished)."""
        self._started.setdefault(thread_id, 0)
        try:
            while True:
                event = self._idle.get(thread_id)
                if event is not None and self._in_flight.get(thread_id):
                    await event.wait()
                started = self._started[thread_id]
                await asyncio.sleep(quiet_s)
                if not self._in_flight.get(thread_id) and self._started[thread_id] == started:
                    return
        finally:
            self._started.pop(thread_id, None)

    async def aput(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        thread_id = self._enter(config)
        try:
            return await self.inner.aput(config, checkpoint, metadata, new_versions)
        finally:
            self._leave(thread_id)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
        task_path: str = "",
    ) -> None:
        thread_id = self._enter(config)
        try:
            await self.inner.aput_writes(config, writes, task_id, task_path)
        finally:
            self._leave(thread_id)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self.inner.aget_tuple(config)

    async def alist(
        self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None, limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        async for item in self.inner.alist(config, filter=filter, before=before, limit=limit):
            yield item

    async def adelete_thread(self, thread_id: str) -> None:
        await self.inner.adelete_thread(thread_id)

    def get_next_version(self, current: Any, channel: Any) -> Any:
        return self.inner.get_next_version(current, channel)

    async def aget_delta_channel_history(self, *args: Any, **kwargs: Any) -> Any:
        return await self.inner.aget_delta_channel_history(*args, **kwargs)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self.inner.acopy_thread(source_thread_id, target_thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self.inner.adelete_for_runs(run_ids)
