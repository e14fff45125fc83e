"""``gateway serve --config``: config.yaml and an existing langgraph.json, graph specs (compiled
graph, StateGraph builder, factory function), env files, environment overrides, and clear
errors for bad configuration (gateway/settings.py, runtime/graphs.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_client

from gateway.settings import SettingsError, load_settings
from tests.server import ROOT, GatewayProcess

pytestmark = pytest.mark.timeout(60)

AGENT = '''
import os
from typing import TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict):
    text: str


def shout(state: State) -> dict:
    return {"text": state["text"].upper() + os.environ.get("AGENT_SUFFIX", "")}


builder = StateGraph(State)
builder.add_node("shout", shout)
builder.add_edge(START, "shout")
builder.add_edge("shout", END)

graph = builder.compile()


def make_graph():
    return builder.compile()


def make_graph_with_config(config):
    return builder.compile()
'''


def write_project(folder: Path) -> Path:
    """A langgraph.json project: agent file in a subfolder, an env file, four graph specs."""
    (folder / "agents").mkdir(parents=True)
    (folder / "agents" / "shout.py").write_text(AGENT)
    (folder / ".env").write_text("AGENT_SUFFIX='!'\n")
    config = {
        "dependencies": ["."],
        "graphs": {
            "compiled": "./agents/shout.py:graph",
            "builder": "./agents/shout.py:builder",
            "factory": "./agents/shout.py:make_graph",
            "factory_config": "./agents/shout.py:make_graph_with_config",
        },
        "env": ".env",
    }
    path = folder / "langgraph.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.anyio
async def test_serves_a_langgraph_json_project(tmp_path: Path) -> None:
    """Graph paths resolve against the langgraph.json folder, not the working directory; the
    env file is loaded; every kind of graph spec serves runs."""
    config = write_project(tmp_path / "project")
    server = GatewayProcess(config).start()
    try:
        client = get_client(url=server.url)
        assistants = await client.assistants.search(limit=10)
        assert sorted(a["graph_id"] for a in assistants) == [
            "builder", "compiled", "factory", "factory_config"]
        for graph_id in ("compiled", "builder", "factory", "factory_config"):
            out = await client.runs.wait(None, graph_id, input={"text": "hi"})
            assert out == {"text": "HI!"}, graph_id  # "!" comes from the env file
    finally:
        server.stop()
    assert (tmp_path / "project" / "data" / "gateway.sqlite").is_file()


def test_langgraph_json_keys_we_do_not_use_are_ignored(tmp_path: Path) -> None:
    settings = load_settings(write_project(tmp_path))
    assert set(settings.graphs) == {"compiled", "builder", "factory", "factory_config"}
    assert settings.base_dir == tmp_path.resolve()


def test_environment_overrides_win_over_the_file(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("graphs: {a: ./a.py:graph}\nbridge: memory\nport: 9000\n")
    monkeypatch.setenv("GATEWAY_BRIDGE", "sqlite")
    monkeypatch.setenv("GATEWAY_PORT", "9100")
    settings = load_settings(path, port=9200)  # the command line wins over both
    assert settings.bridge == "sqlite"
    assert settings.port == 9200


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("graphs: {a: ./a.py:graph}\nmax_concurrent_runs: 0\n", "max_concurrent_runs"),
        ("graphs: {a: ./a.py:graph}\nbridge: redis\n", "bridge"),
        ("graphs: {a: ./a.py:graph}\nmax_concurent_runs: 4\n", "max_concurent_runs"),
        ("data_dir: ./data\n", "graphs"),
        ("graphs: [1, 2\n", "config.yaml"),
    ],
)
def test_a_bad_config_names_what_is_wrong(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=named):
        load_settings(path)


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "serve", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_serve_with_a_missing_config_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    done = serve("--config", str(tmp_path / "nope.yaml"))
    assert done.returncode == 2
    assert "nope.yaml does not exist" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("spec", "message"), [
    ("./missing.py:graph", "missing.py does not exist"),
    ("no_such_package.agent:graph", "module 'no_such_package.agent' cannot be found"),
    ("./agent.py", "must look like './file.py:attr'"),
])
def test_serve_with_a_wrong_graph_spec_exits_2_with_a_clear_message(
    tmp_path: Path, spec: str, message: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"graphs: {{agent: '{spec}'}}\ndata_dir: memory\n")
    done = serve("--config", str(path), "--port", "0")
    assert done.returncode == 2
    assert "graphs.agent" in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_exits_nonzero_when_a_graph_module_raises(tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text("raise RuntimeError('broken agent module')\n")
    path = tmp_path / "config.yaml"
    path.write_text("graphs: {agent: ./agent.py:graph}\ndata_dir: memory\n")
    done = serve("--config", str(path), "--port", "0")
    assert done.returncode == 3  # uvicorn's exit status for a failed startup
    assert "broken agent module" in done.stdout + done.stderr


def test_stream_log_bounds_reach_the_bridge(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("graphs: {}\nmax_events_per_run: 50\nmax_log_mb_per_run: 0.5\n")
    limits = load_settings(config).runtime_config().bridge
    assert (limits.max_events_per_run, limits.max_bytes_per_run) == (50, 512 * 1024)
    config.write_text("graphs: {}\nmax_log_mb_per_run: 0\n")
    with pytest.raises(SettingsError, match="max_log_mb_per_run"):
        load_settings(config)


def test_engine_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("graphs: {}\ndatabase_url: postgresql://postgres@127.0.0.1/x\n"
                      "redis_url: redis://127.0.0.1:6379/0\n")
    settings = load_settings(config)
    runtime = settings.runtime_config()
    assert (settings.bridge_kind, runtime.bridge_kind) == ("redis", "redis")
    assert runtime.data_dir is None  # the data lives in PostgreSQL: no data dir, no file lock
    assert runtime.database_url == "postgresql://postgres@127.0.0.1/x"
    config.write_text("graphs: {}\nbridge: redis\n")
    with pytest.raises(SettingsError, match="redis_url"):
        load_settings(config)
    config.write_text("graphs: {}\nbridge: sqlite\ndatabase_url: postgresql://h/x\n")
    with pytest.raises(SettingsError, match="database_url"):
        load_settings(config)
    config.write_text("graphs: {}\ndatabase_url: mysql://h/x\n")
    with pytest.raises(SettingsError, match="database_url"):
        load_settings(config)
    config.write_text("graphs: {}\n")
    monkeypatch.setenv("GATEWAY_DATABASE_URL", "postgresql://env/db")
    monkeypatch.setenv("GATEWAY_REDIS_URL", "redis://env:6379/1")
    runtime = load_settings(config).runtime_config()
    assert (runtime.database_url, runtime.redis_url) == ("postgresql://env/db",
                                                         "redis://env:6379/1")


def test_webhook_settings_from_langgraph_json(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``webhooks`` and ``http`` are read from langgraph.json as the reference reads them:
    header templates filled from the environment (prefix checked), the url block, the switch."""
    monkeypatch.setenv("LG_WEBHOOK_TOKEN", "t0k")
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({
        "graphs": {"a": "./a.py:graph"},
        "webhooks": {"headers": {"Authorization": "Bearer ${{ env.LG_WEBHOOK_TOKEN }}"},
                     "url": {"allowed_domains": ["hooks.example.com"]}},
        "http": {"disable_webhooks": True}}))
    (tmp_path / "a.py").write_text(AGENT)
    hooks = load_settings(config).webhook_config()
    assert hooks.headers == {"Authorization": "Bearer t0k"} and hooks.disabled
    assert hooks.policy.require_https and hooks.policy.allowed_domains == ("hooks.example.com",)
    for template, named in (("${{ env.LG_WEBHOOK_MISSING }}", "LG_WEBHOOK_MISSING is not set"),
                            ("${{ env.HOME }}", "does not start with the env_prefix")):
        config.write_text(json.dumps({"graphs": {"a": "./a.py:graph"},
                                      "webhooks": {"headers": {"X": template}}}))
        with pytest.raises(SettingsError, match=named):
            load_settings(config)


AUTH_PY = '''
from langgraph_sdk import Auth

auth = Auth()


@auth.authenticate
async def authenticate(authorization: str | None) -> str:
    if authorization != "Bearer let-me-in":
        raise Auth.exceptions.HTTPException(401, "who are you?")
    return "project-user"
'''


@pytest.mark.anyio
async def test_langgraph_json_auth_path_is_served(tmp_path: Path) -> None:
    """``"auth": {"path": "./auth.py:auth"}`` resolves against the langgraph.json folder; the
    keys we do not use are accepted; no Studio header bypasses the handler."""
    config = write_project(tmp_path / "project")
    (tmp_path / "project" / "auth.py").write_text(AUTH_PY)
    raw = json.loads(config.read_text())
    raw["auth"] = {"path": "./auth.py:auth", "disable_studio_auth": False,
                   "openapi": {"securitySchemes": {}}, "cache": {}}
    config.write_text(json.dumps(raw))
    server = GatewayProcess(config).start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            for headers in ({}, {"x-auth-scheme": "langsmith"},
                            {"x-auth-scheme": "langsmith", "x-user-id": "studio"}):
                r = await http.post("/threads/search", json={}, headers=headers)
                assert (r.status_code, r.json()) == (401, {"detail": "who are you?"}), headers
            r = await http.post("/threads", json={},
                                headers={"Authorization": "Bearer let-me-in"})
            assert r.status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize(("source", "spec", "message"), [
    (None, "./nope.py:auth", "nope.py does not exist"),
    ("auth = 5\n", "./auth.py:auth", "must name a langgraph_sdk.Auth instance"),
    ("from langgraph_sdk import Auth\nauth = Auth()\n", "./auth.py:auth",
     "no @auth.authenticate handler"),
    ("raise RuntimeError('broken auth module')\n", "./auth.py:auth", "broken auth module"),
    ("from langgraph_sdk import Auth\nauth = Auth()\n@auth.authenticate\n"
     "async def a(token: str) -> str:\n    return token\n", "./auth.py:auth",
     "asks for ['token']"),
])
def test_serve_with_a_bad_auth_path_exits_2(tmp_path: Path, source: str | None, spec: str,
                                            message: str) -> None:
    if source is not None:
        (tmp_path / "auth.py").write_text(source)
    path = tmp_path / "config.yaml"
    path.write_text(f"graphs: {{}}\ndata_dir: memory\nauth: {{path: '{spec}'}}\n")
    done = serve("--config", str(path), "--port", "0")
    assert done.returncode == 2, done.stderr
    assert "auth:" in done.stderr and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
