"""A real gateway process for tests: ``python -m gateway serve`` on a free 127.0.0.1 port.

Used by the end-to-end tests (official ``langgraph-sdk`` client over a real socket) and by the
restart tests (SIGKILL / SIGTERM, then a new process on the same data folder).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]

TEST_GRAPHS = {
    "echo": str(ROOT / "tests/graphs/echo.py") + ":graph",
    "fail": str(ROOT / "tests/graphs/fail.py") + ":graph",
    "fail_late": str(ROOT / "tests/graphs/fail_late.py") + ":graph",
    "nul_output": str(ROOT / "tests/graphs/nul_output.py") + ":graph",
    "hitl": str(ROOT / "tests/graphs/hitl.py") + ":graph",
    "subgraph": str(ROOT / "tests/graphs/subgraph.py") + ":graph",
    "subgraph_hitl": str(ROOT / "tests/graphs/subgraph_hitl.py") + ":graph",
    "subgraph_chat": str(ROOT / "tests/graphs/subgraph_chat.py") + ":graph",
    "custom_events": str(ROOT / "tests/graphs/custom_events.py") + ":graph",
    "steps": str(ROOT / "tests/graphs/steps.py") + ":graph",
    "chat_agent": str(ROOT / "examples/chat_agent.py") + ":graph",
    "approval_agent": str(ROOT / "examples/approval_agent.py") + ":graph",
    "report_agent": str(ROOT / "examples/report_agent.py") + ":graph",
    "store_graph": str(ROOT / "tests/graphs/store_graph.py") + ":graph",
    "whoami": str(ROOT / "tests/graphs/whoami.py") + ":graph",
    "context_echo": str(ROOT / "tests/graphs/context_echo.py") + ":graph",
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, **extra: object) -> Path:
    """A config.yaml in ``folder`` serving TEST_GRAPHS with data in ``folder/data``."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"graphs": TEST_GRAPHS, "data_dir": str(folder / "data"), "ping_interval_s": 1,
              **extra}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class GatewayProcess:
    """One gateway server process. ``start()`` returns once ``GET /ok`` answers."""

    def __init__(self, config: Path, port: int | None = None) -> None:
        self.config = config
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = config.parent / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> GatewayProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(self.config),
             "--port", str(self.port), "--log-level", "warning"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/ok", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gateway did not start in {timeout_s}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait for a graceful exit; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise
        return int(self.proc.returncode)
