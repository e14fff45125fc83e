"""Real nginx (Debian package) in front of a real gateway, configured from the repo's nginx.conf.

The config under test is the repo's ``nginx.conf`` with only the deployment-specific lines
rewritten: ``listen`` (a free 127.0.0.1 port), the upstream ``server`` (the test gateway's port),
``pid``, ``error_log`` and the temp paths (a temp folder). Every proxy directive is kept as is,
so these checks prove that file:

* SSE arrives incrementally (the first event while a slow run is still going), uncompressed,
  with Location / Content-Location intact;
* a join-stream with ``Last-Event-ID`` resumes without loss or duplicate, also after a dropped
  connection, via the ``Location`` path the SDKs reconnect to;
* ``/runs/wait`` on a run longer than the 5 s keep-alive interval works (leading newlines);
* a 5 MB request body is accepted (and one above ``client_max_body_size`` is refused by nginx);
* the whole JS SDK suite (tests/js) passes through nginx, including its cutting-proxy reconnect.

Skipped, with the reason, when nginx is not installed (``apt-get install nginx-light``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_js_sdk import node_binary, run_js_suite
from tests.server import ROOT, GatewayProcess, free_port, write_config

NGINX_CONF = ROOT / "nginx.conf"


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


pytestmark = [
    pytest.mark.skipif(nginx_binary() is None,
                       reason="nginx is not installed (apt-get install nginx-light)"),
    pytest.mark.timeout(60),
]


def _sub(text: str, pattern: str, replacement: str) -> str:
    """Replace the one line matching ``pattern``; fail if nginx.conf no longer has it."""
    new, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert count == 1, f"nginx.conf: expected exactly one match of {pattern!r}, found {count}"
    return new


def nginx_config(source: str, *, listen_port: int, upstream_port: int | list[int],
                 prefix: Path) -> str:
    """The repo's nginx.conf with only ports, pid, error log and temp paths rewritten; a list
    of upstream ports gives the upstream one ``server`` line per port (N gateway processes,
    README "Scaling out")."""
    text = _sub(source, r"^(\s*)listen\s+[^;]+;", rf"\1listen 127.0.0.1:{listen_port};")
    ports = upstream_port if isinstance(upstream_port, list) else [upstream_port]
    text = _sub(text, r"^(\s*)server\s+127\.0\.0\.1:\d+([^;]*);",
                "\n".join(rf"\1server 127.0.0.1:{port}\2;" for port in ports))
    text = _sub(text, r"^pid\s+[^;]+;", f"pid {prefix}/nginx.pid;")
    text = _sub(text, r"^error_log\s+[^;]+;", f"error_log {prefix}/error.log info;")
    text = _sub(text, r"^(\s*)client_body_temp_path\s+[^;]+;",
                rf"\1client_body_temp_path {prefix}/body;")
    text = _sub(text, r"^(\s*)proxy_temp_path\s+[^;]+;", rf"\1proxy_temp_path {prefix}/proxy;")
    # Temp paths the repo config leaves at their defaults (/var/lib/nginx/...): keep them in
    # the temp folder too, so the test needs no system directories.
    extra = "".join(f"    {name}_temp_path {prefix}/{name};\n"
                    for name in ("fastcgi", "uwsgi", "scgi"))
    return _sub(text, r"^http\s*\{\n", "http {\n" + extra)


class Nginx:
    def __init__(self, upstream_port: int | list[int]) -> None:
        # Not under pytest's tmp_path: that is 0700 and nginx workers (user nobody when the
        # master runs as root) must reach the temp folders.
        self.prefix = Path(tempfile.mkdtemp(prefix="gateway-nginx-"))
        self.prefix.chmod(0o755)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(nginx_config(NGINX_CONF.read_text(), listen_port=self.port,
                                          upstream_port=upstream_port, prefix=self.prefix))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        binary = nginx_binary()
        assert binary is not None
        check = subprocess.run([binary, "-t", "-c", str(self.conf), "-p", str(self.prefix)],
                               capture_output=True, text=True)
        assert check.returncode == 0, f"nginx -t failed:\n{check.stderr}\n{self.conf.read_text()}"
        with open(self.prefix / "stderr.log", "wb") as stderr:
            self.proc = subprocess.Popen(
                [binary, "-c", str(self.conf), "-p", str(self.prefix), "-g", "daemon off;"],
                stdout=subprocess.DEVNULL, stderr=stderr,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/ok", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"nginx did not answer in 10s:\n{self.log()}")

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in
                       (self.prefix / "stderr.log", self.prefix / "error.log") if p.exists())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.prefix, ignore_errors=True)


@pytest.fixture(scope="module")
def gateway_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    server = GatewayProcess(write_config(tmp_path_factory.mktemp("nginx-gateway"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nginx(gateway_behind: GatewayProcess) -> Iterator[Nginx]:
    proxy = Nginx(gateway_behind.port).start()
    yield proxy
    proxy.stop()


# ---- helpers -------------------------------------------------------------------------------


def human(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def new_thread(http: httpx.Client) -> str:
    response = http.post("/threads", json={})
    assert response.status_code == 200, response.text
    return str(response.json()["thread_id"])


class SSEReader:
    """Incremental SSE frames of a streamed httpx response, each with its arrival time."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.iter_raw()
        self.buffer = ""
        self.frames: list[dict[str, Any]] = []

    def next(self) -> dict[str, Any] | None:
        while True:
            normalized = self.buffer.replace("\r\n", "\n")
            if "\n\n" in normalized:
                block, _, rest = normalized.partition("\n\n")
                self.buffer = rest
                fields: dict[str, Any] = {}
                for line in block.split("\n"):
                    if line.startswith(":") or ":" not in line:
                        continue
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
                if "event" not in fields:
                    continue
                fields["at"] = time.monotonic()
                self.frames.append(fields)
                return fields
            try:
                self.buffer += next(self.chunks).decode()
            except StopIteration:
                return None

    def rest(self) -> list[dict[str, Any]]:
        while self.next() is not None:
            pass
        return self.frames


def replay(http: httpx.Client, thread_id: str, run_id: str, last_event_id: str) -> list[Any]:
    with http.stream("GET", f"/threads/{thread_id}/runs/{run_id}/stream",
                     headers={"Last-Event-ID": last_event_id}) as response:
        assert response.status_code == 200
        return [(f["id"], f["event"], f["data"]) for f in SSEReader(response).rest()]


# ---- checks --------------------------------------------------------------------------------


def test_config_is_the_repos_with_only_ports_and_paths_changed(nginx: Nginx) -> None:
    generated = nginx.conf.read_text()
    for directive in ("proxy_http_version 1.1;", 'proxy_set_header Connection "";',
                      "proxy_buffering off;", "proxy_cache off;", "gzip off;",
                      "proxy_read_timeout 3600s;", "client_max_body_size 25m;"):
        assert directive in NGINX_CONF.read_text() and directive in generated, directive


def test_sse_arrives_incrementally_through_nginx(nginx: Nginx, gateway_behind: GatewayProcess
                                                 ) -> None:
    with httpx.Client(base_url=nginx.url, timeout=30) as http:
        thread_id = new_thread(http)
        started = time.monotonic()
        body = {"assistant_id": "echo", "input": human("slow"), "stream_mode": ["values", "custom"],
                "config": {"configurable": {"delay": 3}}}
        # A client that would accept gzip: nginx must still not compress the stream.
        with http.stream("POST", f"/threads/{thread_id}/runs/stream", json=body,
                         headers={"Accept-Encoding": "gzip"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in response.headers
            run_path = response.headers["content-location"]
            assert re.fullmatch(rf"/threads/{thread_id}/runs/[0-9a-f-]{{36}}", run_path)
            assert response.headers["location"] == run_path + "/stream"
            reader = SSEReader(response)
            first = reader.next()
            assert first is not None and first["event"] == "metadata"
            first_after = first["at"] - started
            run = httpx.get(gateway_behind.url + run_path, timeout=5).json()
            assert run["status"] == "running", "the first event came while the run was going"
            frames = reader.rest()
        ended_after = time.monotonic() - started
    assert first_after < 1.5, f"first event after {first_after:.2f}s: nginx buffered the stream"
    assert ended_after >= 3, "the run sleeps 3 s"
    assert ended_after - first_after > 2
    names = [f["event"] for f in frames]
    assert names[0] == "metadata" and names.count("custom") == 2 and names[-1] == "values"
    # The first custom event (before the 3 s sleep) also came early, not with the rest.
    custom_at = [f["at"] - started for f in frames if f["event"] == "custom"]
    assert custom_at[0] < 1.5 and custom_at[1] >= 3


def test_join_with_last_event_id_through_nginx(nginx: Nginx) -> None:
    with httpx.Client(base_url=nginx.url, timeout=30) as http:
        thread_id = new_thread(http)
        run = http.post(f"/threads/{thread_id}/runs", json={
            "assistant_id": "echo", "input": human("join"), "stream_mode": ["values", "custom"],
            "config": {"configurable": {"delay": 1.5}}}).json()
        path = f"/threads/{thread_id}/runs/{run['run_id']}/stream"
        # Join from the start, read until the first custom event (the node then sleeps), leave.
        with http.stream("GET", path, headers={"Last-Event-ID": "-1"}) as response:
            assert response.status_code == 200
            reader = SSEReader(response)
            while (frame := reader.next()) is not None and frame["event"] != "custom":
                pass
            first = [(f["id"], f["event"], f["data"]) for f in reader.frames]
        assert first and first[-1][1] == "custom"
        # Resume after the last id seen: the rest, live, until the run ends.
        rest = replay(http, thread_id, run["run_id"], first[-1][0])
        full = replay(http, thread_id, run["run_id"], "-1")
    assert rest, "events after the resume point"
    assert first + rest == full, "no loss, no duplicate"
    assert len({f[0] for f in full}) == len(full)
    assert json.loads(full[-1][2])["messages"][-1]["content"] == "echo: join"


def test_reconnect_to_location_after_a_dropped_stream(nginx: Nginx) -> None:
    """What the SDKs do on a read error: GET the Location path with Last-Event-ID."""
    with httpx.Client(base_url=nginx.url, timeout=30) as http:
        thread_id = new_thread(http)
        body = {"assistant_id": "echo", "input": human("drop"), "stream_mode": ["values", "custom"],
                "stream_resumable": True, "on_disconnect": "continue",
                "config": {"configurable": {"delay": 1.5}}}
        dropped = httpx.Client(base_url=nginx.url, timeout=30)
        with dropped.stream("POST", f"/threads/{thread_id}/runs/stream", json=body) as response:
            location = response.headers["location"]
            run_id = response.headers["content-location"].rsplit("/", 1)[1]
            reader = SSEReader(response)
            reader.next()
            reader.next()
            seen = [(f["id"], f["event"], f["data"]) for f in reader.frames]
        dropped.close()  # the connection goes away mid-run
        assert location == f"/threads/{thread_id}/runs/{run_id}/stream"
        with http.stream("GET", location, headers={"Last-Event-ID": seen[-1][0]}) as response:
            assert response.status_code == 200
            rest = [(f["id"], f["event"], f["data"]) for f in SSEReader(response).rest()]
        full = replay(http, thread_id, run_id, "-1")
        status = http.get(f"/threads/{thread_id}/runs/{run_id}").json()["status"]
    assert seen + rest == full
    assert status == "success", "on_disconnect continue: the run finished"


@pytest.mark.timeout(40)
def test_wait_on_a_long_run_through_nginx(nginx: Nginx) -> None:
    with httpx.Client(base_url=nginx.url, timeout=30) as http:
        thread_id = new_thread(http)
        started = time.monotonic()
        response = http.post(f"/threads/{thread_id}/runs/wait", json={
            "assistant_id": "echo", "input": human("long"),
            "config": {"configurable": {"delay": 6}}})
        took = time.monotonic() - started
    assert response.status_code == 200
    assert took >= 6
    assert response.text.startswith("\n"), "keep-alive newline(s) before the JSON"
    assert response.json()["messages"][-1]["content"] == "echo: long"


def test_a_5mb_body_is_accepted_and_the_limit_is_enforced(nginx: Nginx) -> None:
    big = "x" * (5 * 1024 * 1024)
    with httpx.Client(base_url=nginx.url, timeout=30) as http:
        thread_id = new_thread(http)
        response = http.post(f"/threads/{thread_id}/runs/wait",
                             json={"assistant_id": "echo", "input": human(big)})
        assert response.status_code == 200, response.text[:500]
        assert response.json()["messages"][-1]["content"] == "echo: " + big
        too_big = http.post(f"/threads/{thread_id}/runs/wait", content=b"{" + b" " * (26 << 20)
                            + b"}", headers={"content-type": "application/json"})
        assert too_big.status_code == 413, "client_max_body_size 25m"


@pytest.mark.skipif(node_binary() is None, reason="node is not installed (JS SDK suite)")
@pytest.mark.timeout(400)
def test_js_sdk_suite_through_nginx(nginx: Nginx, gateway_behind: GatewayProcess) -> None:
    run_js_suite(nginx.url, server_log=lambda: gateway_behind.log() + "\n--- nginx ---\n"
                 + nginx.log())
