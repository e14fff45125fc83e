"""RunReads: the read side of the run manager (a mixin of ``RunManager``): get and find a run,
wait for its result, subscribe to and join its events.

Live state (the ``RunHandle`` of a run admitted or executing in this process) wins over the
store; a run live nowhere here is answered from the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import anyio

from runtime.bridge.protocol import FROM_START, Cursor, StreamBridge
from runtime.errors import NotFound, RunNotFound, Unavailable
from runtime.run_result import stored_result_body
from runtime.runs.handle import RunHandle
from runtime.serialization import dumps
from runtime.store.protocol import Store
from runtime.types import Run, RunStatus, StreamEvent, StreamGap


class RunReads:
    """The read/wait/join methods of ``RunManager`` (which sets these attributes)."""

    store: Store
    bridge: StreamBridge
    _handles: dict[str, RunHandle]
    _queue: dict[str, RunHandle]

    async def get(self, thread_id: str, run_id: str) -> Run:
        """The run (live state wins over the store). Raises RunNotFound."""
        handle = self._handles.get(run_id)
        if handle is not None and handle.run.thread_id == thread_id:
            if handle.run.status == RunStatus.PENDING and handle.run.run_id not in self._queue:
                stored = await self.store.get_run(run_id, thread_id)
                if stored is not None:
                    return stored
            return handle.run
        run = await self.store.get_run(run_id, thread_id)
        if run is None:
            raise RunNotFound(run_id, "Not Found")
        return run

    async def find(self, run_id: str) -> Run:
        """The run by its id alone (``GET /runs/{run_id}/stream``). Live state first: a
        stateless run is deleted with its thread when it ends, and stays joinable while its
        log is retained. Raises RunNotFound."""
        handle = self._handles.get(run_id)
        if handle is not None:
            return await self.get(handle.run.thread_id, run_id)
        run = await self.store.get_run(run_id)
        if run is None:
            raise RunNotFound(run_id, "Not Found")
        return run

    async def wait_result(self, thread_id: str, run_id: str, timeout_s: float) -> bytes | None:
        """The ``/join`` body of a run once it has ended, or None if ``timeout_s`` passed first.

        Safe to call again after a timeout. Raises RunNotFound for an unknown run and
        Unavailable for a run put back to ``pending`` by a shutdown.
        """
        handle = self._handles.get(run_id)
        if handle is not None and handle.run.thread_id == thread_id:
            with anyio.move_on_after(timeout_s):
                await handle.done.wait()
            if handle.done.is_set() and handle.result_body is None:
                raise Unavailable("The server shut down; the run resumes after the restart.")
            return handle.result_body if handle.done.is_set() else None
        run = await self.store.get_run(run_id, thread_id)
        if run is None:
            raise RunNotFound(run_id)
        if not run.status.is_terminal:
            await anyio.sleep(timeout_s)  # owned by no live task: recovery will pick it up
            return None
        return stored_result_body(run, await self.store.get_thread(thread_id))

    def result_future(self, thread_id: str, run_id: str) -> asyncio.Future[bytes] | None:
        """The ``/join`` body of a run live in this process, as a new future resolved when the
        run ends; it raises Unavailable if a shutdown put the run back to ``pending``. None if
        the run is not live here (then use ``wait_result``). The caller may cancel it."""
        handle = self._handles.get(run_id)
        if handle is None or handle.run.thread_id != thread_id:
            return None
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def resolve() -> None:
            if future.done():
                return
            if handle.result_body is None:
                future.set_exception(
                    Unavailable("The server shut down; the run resumes after the restart."))
            else:
                future.set_result(handle.result_body)

        handle.done.add_done_callback(resolve)
        future.add_done_callback(lambda _: handle.done.remove_done_callback(resolve))
        return future

    def subscribe(
        self, run_id: str, cursor: Cursor = FROM_START
    ) -> AsyncIterator[StreamEvent | StreamGap]:
        """The run's events after ``cursor`` until the run ends (see ``StreamBridge``)."""
        return self.bridge.subscribe(run_id, cursor)

    def join_events(
        self, run: Run, cursor: Cursor
    ) -> AsyncIterator[StreamEvent | StreamGap]:
        """The events of a join of ``run`` (``GET .../runs/{id}/stream``) after ``cursor``.

        As ``subscribe``, and one more case: a fresh joiner (``FROM_START``) of a run that
        failed and whose log is gone (retention passed, or a restart on ``bridge: memory``)
        gets one ``error`` event built from the stored error, never an empty stream that a
        script would take for success. Subscribes before returning.
        """
        events = self.bridge.subscribe(run.run_id, cursor)
        if cursor != FROM_START or run.status != RunStatus.ERROR or self.bridge.has(run.run_id):
            return events
        return self._or_stored_error(run, events)

    async def _or_stored_error(
        self, run: Run, events: AsyncIterator[StreamEvent | StreamGap]
    ) -> AsyncIterator[StreamEvent | StreamGap]:
        empty = True
        async for item in events:  # bridge: sqlite may still hold the log
            empty = False
            yield item
        if empty:
            try:
                error = (await self.store.get_thread(run.thread_id)).error
            except NotFound:
                error = None
            yield StreamEvent(int(time.time() * 1000), 0, "error", dumps(error or {
                "error": "RunError",
                "message": "The run ended with an error; its event log is no longer kept."}))

    def is_live(self, run_id: str) -> bool:
        """True while this process holds the run's event log."""
        return self.bridge.has(run_id)
