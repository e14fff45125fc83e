"""The official JS client ``@langchain/langgraph-sdk`` against a real gateway process: runs
``node --test`` on ``tests/js/*.test.mjs`` with ``GATEWAY_URL`` set and fails with node's output
if any node test fails. The suite runs once per major version of the SDK, both pinned in
tests/js/package.json: 1.x (npm's ``latest`` tag, what ``npm install`` gives a new user; the npm
alias ``sdk1``) and 2.x (under its own name); ``LANGGRAPH_SDK=1|2`` tells tests/js/lib.mjs which
one to import. React ``useStream`` runs under Node with react-dom and jsdom (devDependencies).

Node packages come from the committed lockfile: ``npm ci --prefix tests/js`` runs here when
``tests/js/node_modules`` is missing or older than ``package-lock.json`` (the npm registry must
be reachable then). Skipped, with the reason, only when ``node`` is not installed.
``run_js_suite`` is reused by tests/e2e/test_nginx.py to run the same suite through nginx.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.server import ROOT, GatewayProcess, write_config

JS_DIR = ROOT / "tests" / "js"
NODE_TIMEOUT_S = 150
NPM_TIMEOUT_S = 240


def node_binary() -> str | None:
    return shutil.which("node")


def ensure_node_modules() -> None:
    """``npm ci --prefix tests/js`` unless node_modules is already installed from this lockfile."""
    lock = JS_DIR / "package-lock.json"
    marker = JS_DIR / "node_modules" / ".package-lock.json"  # written by npm ci / npm install
    if marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("node is installed but npm is not: cannot install tests/js/node_modules")
    proc = subprocess.run(
        [npm, "ci", "--prefix", str(JS_DIR), "--no-audit", "--no-fund"],
        cwd=ROOT, capture_output=True, text=True, timeout=NPM_TIMEOUT_S,
    )
    if proc.returncode != 0:
        pytest.fail(f"npm ci --prefix tests/js failed ({proc.returncode}):\n"
                    f"{proc.stdout}\n{proc.stderr}")


def _supports_test_concurrency(node: str) -> bool:
    """``--test-concurrency`` exists from node 20.10 / 21 on."""
    out = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    match = re.match(r"v(\d+)\.(\d+)", out.strip())
    return match is not None and (int(match[1]), int(match[2])) >= (20, 10)


SDK_MAJORS = (1, 2)


def run_js_suite(
    gateway_url: str, *, server_log: Callable[[], str] = str, sdk_major: int = 2
) -> None:
    """``node --test`` over tests/js against ``gateway_url`` with JS SDK ``sdk_major``.x;
    pytest.fail with the output."""
    node = node_binary()
    assert node is not None
    ensure_node_modules()
    files = sorted(str(p.relative_to(ROOT)) for p in JS_DIR.glob("*.test.mjs"))
    assert files, "no tests/js/*.test.mjs"
    # Files run 4 at a time (node's default is cores - 1, i.e. serial on a 2-core CI box).
    concurrency = ["--test-concurrency=4"] if _supports_test_concurrency(node) else []
    env = {**os.environ, "GATEWAY_URL": gateway_url, "LANGGRAPH_SDK": str(sdk_major),
           "NO_COLOR": "1"}
    for key in ("LANGGRAPH_API_KEY", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"):
        env.pop(key, None)
    try:
        proc = subprocess.run(
            [node, "--test", "--test-reporter=spec", *concurrency, *files],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=NODE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        output = [o.decode(errors="replace") if isinstance(o, bytes) else (o or "")
                  for o in (exc.stdout, exc.stderr)]
        pytest.fail(f"node --test (JS SDK {sdk_major}.x) did not finish in {NODE_TIMEOUT_S}s:\n"
                    + "\n".join(output))
    if proc.returncode != 0:
        pytest.fail(
            f"node --test (JS SDK {sdk_major}.x) failed ({proc.returncode}) "
            f"against {gateway_url}:\n"
            f"{proc.stdout}\n{proc.stderr}\n--- gateway log (tail) ---\n{server_log()[-4000:]}",
            pytrace=False,
        )


requires_node = pytest.mark.skipif(
    node_binary() is None, reason="node is not installed (needed to run tests/js with the JS SDK)"
)


@pytest.fixture(scope="module")
def js_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway of its own: the JS suite creates many threads and runs concurrently."""
    folder: Path = tmp_path_factory.mktemp("js-gateway")
    server = GatewayProcess(write_config(folder)).start()
    yield server
    server.stop()


@requires_node
@pytest.mark.timeout(NODE_TIMEOUT_S + NPM_TIMEOUT_S + 60)
@pytest.mark.parametrize("sdk_major", SDK_MAJORS, ids=[f"sdk{m}" for m in SDK_MAJORS])
def test_js_sdk_suite(js_gateway: GatewayProcess, sdk_major: int) -> None:
    run_js_suite(js_gateway.url, server_log=js_gateway.log, sdk_major=sdk_major)
