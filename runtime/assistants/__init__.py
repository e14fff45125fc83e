"""Assistants: stored assistants with versions (``AssistantStore``: sqlite.py, postgres.py),
the system assistants of the configured graphs, and how a run merges its assistant."""
