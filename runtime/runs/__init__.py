"""Runs: admission, scheduling, cancel, wait and join.

``RunManager`` (manager.py) is the single-process manager: its scheduler decides in memory
(SQLite, or PostgreSQL held by one process). ``ClusterRunManager`` (cluster.py) is the
scale-out one: any number of processes share one PostgreSQL database, runs are claimed and
leased in the database, and cancels and wake-ups travel on a ControlChannel (design.md 9).
"""

from runtime.runs.cluster import ClusterRunManager
from runtime.runs.manager import RunManager

__all__ = ["ClusterRunManager", "RunManager"]
