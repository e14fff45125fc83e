"""The reference server's install: ``langgraph-cli[inmem]`` in its own venv ``bench/.venv-ref``.

Installed on first use (PyPI must be reachable); when that fails the benchmark runs without
the reference column and says why.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.servers import BENCH

VENV = BENCH / ".venv-ref"
LANGGRAPH = VENV / "bin" / "langgraph"


def ensure_reference(install: bool = True) -> tuple[Path | None, str]:
    """The ``langgraph`` executable of the reference venv (installing it if needed and
    ``install``), or None and the reason it is unavailable."""
    if LANGGRAPH.exists():
        return LANGGRAPH, ""
    if not install:
        return None, f"{LANGGRAPH} not found"
    print(f"installing the reference server into {VENV} (langgraph-cli[inmem]) ...", flush=True)
    try:
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True, timeout=120)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "langgraph-cli[inmem]"],
                       check=True, timeout=900, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not install langgraph-cli[inmem]: {exc}"
    if not LANGGRAPH.exists():
        return None, "langgraph-cli[inmem] installed but has no langgraph executable"
    return LANGGRAPH, ""


def reference_version() -> str | None:
    """``langgraph-api`` version of the reference venv, if installed."""
    try:
        out = subprocess.run([str(VENV / "bin" / "python"), "-c",
                              "import importlib.metadata as m; print(m.version('langgraph-api'))"],
                             capture_output=True, text=True, timeout=30)
    except (subprocess.SubprocessError, OSError):
        return None
    return out.stdout.strip() or None
