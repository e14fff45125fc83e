"""Server processes under test: our gateway, the reference ``langgraph dev`` and the bare app.

Each runs as a subprocess on a free 127.0.0.1 port with its log in the run's temp folder;
``Server.rss_kb()`` reads ``VmRSS`` of the process and all its descendants from ``/proc``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids += [int(p) for p in task.read_text().split()]
        except OSError:
            continue
    return kids


def rss_kb(pid: int) -> int:
    """VmRSS (kB) of ``pid`` plus every descendant process; 0 if it is gone."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
        todo += _children(p)
    return total


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and every descendant process."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        todo += _children(p)
    return total


class Server:
    """A started server process: ``url``, ``rss_kb()``, ``stop()``."""

    def __init__(self, name: str, cmd: list[str], cwd: Path, log: Path,
                 env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [c.replace("{port}", str(self.port)) for c in cmd]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1",
                                              **(env or {})})

    def wait_ready(self, path: str = "/ok", timeout_s: float = 120.0) -> Server:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; see {self.log}")
            try:
                if httpx.get(self.url + path, timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not start in {timeout_s}s; see {self.log}")

    def rss_kb(self) -> int:
        return rss_kb(self.proc.pid)

    def cpu_s(self) -> float:
        return cpu_s(self.proc.pid)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (SIGINT first for ``langgraph dev``), then SIGKILL if it lingers."""
        if self.proc.poll() is not None:
            return
        kids = _children(self.proc.pid)
        self.proc.send_signal(signal.SIGINT if self.name == "reference" else signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for pid in kids:  # our own descendants only, by pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start_gateway(tmp: Path, bridge: str = "memory",
                  engines: dict[str, str] | None = None) -> Server:
    """``gateway serve --config bench/config.yaml`` with its data in ``tmp/gateway-<bridge>``
    and the stream bridge ``bridge`` (``memory``, ``sqlite`` or ``redis``); ``engines`` adds
    environment settings (``GATEWAY_DATABASE_URL``, ``GATEWAY_REDIS_URL`` ...)."""
    cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(BENCH / "config.yaml"),
           "--port", "{port}", "--log-level", "warning"]
    env = {"GATEWAY_DATA_DIR": str(tmp / f"gateway-{bridge}"), "GATEWAY_BRIDGE": bridge,
           **(engines or {})}
    name = "ours" if bridge == "memory" else f"ours-{bridge}"
    return Server(name, cmd, ROOT, tmp / f"{name}.log", env).wait_ready()


def start_gateway_with_auth(tmp: Path) -> Server:
    """Our gateway on ``bench/config.yaml`` plus custom auth (``examples/auth.py``: a token
    lookup, an owner stamp and filter on every thread call); clients send
    ``AUTH_HEADERS``."""
    config = yaml.safe_load((BENCH / "config.yaml").read_text())
    config["graphs"] = {k: str((BENCH / v.split(":")[0]).resolve()) + ":" + v.split(":")[1]
                        for k, v in config["graphs"].items()}
    config["auth"] = {"path": str(ROOT / "examples" / "auth.py") + ":auth"}
    path = tmp / "config-auth.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(path),
           "--port", "{port}", "--log-level", "warning"]
    env = {"GATEWAY_DATA_DIR": str(tmp / "gateway-auth"), "GATEWAY_BRIDGE": "memory"}
    return Server("ours-auth", cmd, ROOT, tmp / "ours-auth.log", env).wait_ready()


AUTH_HEADERS = {"Authorization": "Bearer alice-token"}


def start_reference(tmp: Path, langgraph_bin: Path) -> Server:
    """``langgraph dev`` in a folder holding ``langgraph.json`` and a copy of the graphs
    (the reference resolves graph paths against its working directory)."""
    cwd = tmp / "reference"
    shutil.copytree(BENCH / "graphs", cwd / "graphs",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(BENCH / "reference" / "langgraph.json", cwd / "langgraph.json")
    cmd = [str(langgraph_bin), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1",
           "--port", "{port}", "--n-jobs-per-worker", "10", "--config", "langgraph.json"]
    env = {"LANGSMITH_TRACING": "false", "LANGGRAPH_CLI_NO_ANALYTICS": "1"}
    return Server("reference", cmd, cwd, tmp / "reference.log", env).wait_ready()


def start_bare(tmp: Path) -> Server:
    """The bare Starlette + sse-starlette app (``bench.bare_app``) under uvicorn."""
    cmd = [sys.executable, "-m", "bench.bare_app", "--port", "{port}"]
    return Server("bare", cmd, ROOT, tmp / "bare.log").wait_ready("/json")


class Cluster:
    """N gateway processes on one PostgreSQL database and one Redis (cluster mode): ``url`` is
    the first's, ``ports`` all of them (the bench client balances over them), ``cpu_s`` and
    ``rss_kb`` are the sums."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        self.name = f"ours-pg{len(servers)}"
        self.url = servers[0].url
        self.ports = [s.port for s in servers]

    def cpu_s(self) -> float:
        return sum(s.cpu_s() for s in self.servers)

    def rss_kb(self) -> int:
        return sum(s.rss_kb() for s in self.servers)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def start_cluster(tmp: Path, n: int, engines: dict[str, str]) -> Cluster:
    """``n`` gateways (``start_gateway`` with the Redis bridge) sharing ``engines``."""
    cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(BENCH / "config.yaml"),
           "--port", "{port}", "--log-level", "warning"]
    env = {"GATEWAY_DATA_DIR": str(tmp / "gateway-cluster"), "GATEWAY_BRIDGE": "redis",
           **engines}
    servers = [Server(f"ours-pg{n}-{i}", cmd, ROOT, tmp / f"ours-pg{n}-{i}.log", env)
               for i in range(n)]
    try:
        return Cluster([s.wait_ready() for s in servers])
    except BaseException:
        for server in servers:
            server.stop()
        raise
