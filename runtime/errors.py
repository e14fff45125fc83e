"""Domain errors of the run runtime. No HTTP knowledge here: ``gateway/errors.py`` maps them.

Tree::

    GatewayError
    ├── NotFound
    │   ├── ThreadNotFound(thread_id)
    │   ├── RunNotFound(run_id)
    │   ├── AssistantNotFound(assistant_id)
    │   ├── AssistantVersionNotFound(assistant_id, version)
    │   ├── GraphNotFound(graph_id, graph_ids)
    │   └── CheckpointNotFound(checkpoint_id)
    ├── Conflict
    │   ├── ThreadExists(thread_id)
    │   ├── ThreadBusy(thread_id)             multitask_strategy=reject on a busy thread
    │   ├── AssistantExists(assistant_id)
    │   └── SystemAssistantReadOnly(assistant_id)   PATCH/DELETE of a graph's own assistant
    │   └── NothingToCancel                   cancel of a finished/unknown run
    ├── InvalidRequest                        well-formed but not acceptable (422)
    │   ├── InvalidAssistant(name, graph_ids)
    │   └── UnsupportedOption(name)
    ├── BadRequest                            semantically wrong for the thread (400)
    └── Unavailable                           shutting down (503)
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the runtime raises on purpose; ``str(exc)`` is the client detail."""


class NotFound(GatewayError):
    """The addressed resource does not exist."""


class ThreadNotFound(NotFound):
    """No thread with this id."""

    def __init__(self, thread_id: str, detail: str | None = None) -> None:
        super().__init__(detail or f"Thread with ID {thread_id} not found")
        self.thread_id = thread_id


class RunNotFound(NotFound):
    """No run with this id on this thread (detail ``Run not found``, as the reference)."""

    def __init__(self, run_id: str, detail: str = "Run not found") -> None:
        super().__init__(detail)
        self.run_id = run_id


class AssistantNotFound(NotFound):
    """No assistant with this UUID."""

    def __init__(self, assistant_id: str, detail: str | None = None) -> None:
        super().__init__(detail or f"Assistant '{assistant_id}' not found")
        self.assistant_id = assistant_id


class AssistantVersionNotFound(NotFound):
    """``POST /assistants/{id}/latest`` names a version the assistant does not have."""

    def __init__(self, assistant_id: str, version: int | None) -> None:
        super().__init__(f"Version {version} not found for assistant {assistant_id}")
        self.assistant_id = assistant_id
        self.version = version


class GraphNotFound(NotFound):
    """An assistant names a graph that is not configured (404, as the reference)."""

    def __init__(self, graph_id: str, graph_ids: list[str]) -> None:
        super().__init__(f"Graph '{graph_id}' not found. Expected one of: {graph_ids!r}")
        self.graph_id = graph_id


class CronNotFound(NotFound):
    """404 for an unknown cron (``detail``: the reference's text for the endpoint)."""

    def __init__(self, cron_id: str, detail: str = "Not Found") -> None:
        super().__init__(detail)
        self.cron_id = cron_id


class CheckpointNotFound(NotFound):
    """No checkpoint with this id on the thread."""

    def __init__(self, checkpoint_id: str) -> None:
        super().__init__(f"Checkpoint {checkpoint_id} not found")
        self.checkpoint_id = checkpoint_id


class Conflict(GatewayError):
    """The request conflicts with the current state."""


class ThreadExists(Conflict):
    """``POST /threads`` with an existing ``thread_id`` and ``if_exists=raise``."""

    def __init__(self, thread_id: str) -> None:
        super().__init__(f"Thread with ID {thread_id} already exists")
        self.thread_id = thread_id


class AssistantExists(Conflict):
    """``POST /assistants`` with an existing ``assistant_id`` and ``if_exists=raise``."""

    def __init__(self, assistant_id: str) -> None:
        super().__init__(f"Assistant {assistant_id} already exists")
        self.assistant_id = assistant_id


class SystemAssistantReadOnly(Conflict):
    """PATCH or DELETE of a system assistant (one per configured graph): they are read-only
    here, unlike the reference (runtime/assistants/directory.py, difference 1)."""

    def __init__(self, assistant_id: str) -> None:
        super().__init__(f"Assistant {assistant_id} is a system assistant (one per configured "
                         "graph) and cannot be changed or deleted; create an assistant of "
                         "your own with POST /assistants")
        self.assistant_id = assistant_id


class ThreadBusy(Conflict):
    """``multitask_strategy=reject`` while the thread has a pending or running run."""

    def __init__(self, thread_id: str) -> None:
        super().__init__(
            "Thread is already running a task. Wait for it to finish or choose a different "
            "multitask strategy."
        )
        self.thread_id = thread_id


class NothingToCancel(NotFound):
    """Cancel of a run that is finished, deleted or unknown (404 as the reference)."""

    def __init__(self) -> None:
        super().__init__(
            "No matching runs to cancel. Please verify the thread ID and run IDs are correct, "
            "and the runs haven't been deleted or completed."
        )


class InvalidRequest(GatewayError):
    """A well-formed request the gateway cannot accept (422)."""


class InvalidAssistant(InvalidRequest):
    """``assistant_id`` is neither a UUID nor a registered graph id."""

    def __init__(self, name: str, graph_ids: list[str]) -> None:
        super().__init__(
            f"Invalid assistant: '{name}'. Must be either:\n- A valid assistant UUID, or\n"
            f"- One of the registered graphs: {', '.join(graph_ids)}"
        )
        self.name = name


class UnsupportedOption(InvalidRequest):
    """An option the gateway does not implement yet; rejected by name, never ignored."""

    def __init__(self, name: str, why: str = "is not supported by this gateway yet") -> None:
        super().__init__(f"{name}: {why}")
        self.name = name


class BadRequest(GatewayError):
    """A request that is invalid for the thread's current state (400)."""


class Unavailable(GatewayError):
    """The runtime is shutting down and admits no new runs (503)."""
