"""The browser suite (tests/browser/*.test.mjs): the /ui chat page in Debian's headless Chromium.

Starts a real gateway serving the test graphs plus ``slow_chat`` (tests/browser/graphs), then runs
``node --test tests/browser/*.test.mjs`` with ``GATEWAY_URL`` set. playwright-core comes from
tests/browser/package-lock.json: ``npm ci`` runs here when tests/browser/node_modules is missing
or older than the lockfile. The page is the committed build in ui/dist (rebuild it with
``npm ci && npm run build`` in ui/). Screenshots land in tests/browser/artifacts/;
``UPDATE_DOCS_SCREENSHOT=1`` also rewrites docs/chat-page.png.

Skipped only when ``node`` or Chromium (``/usr/bin/chromium``, or ``CHROMIUM_PATH``) is absent:
``apt-get install -y chromium``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.server import ROOT, TEST_GRAPHS, GatewayProcess, write_config

BROWSER_TESTS = ROOT / "tests/browser"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
NODE = shutil.which("node")
NPM = shutil.which("npm")
SUITE_TIMEOUT_S = 150

pytestmark = pytest.mark.skipif(
    NODE is None or not Path(CHROMIUM).exists(),
    reason=f"the browser suite needs node and {CHROMIUM} "
    f"(node: {'found' if NODE else 'missing'}; chromium: "
    f"{'found' if Path(CHROMIUM).exists() else 'missing, apt-get install -y chromium'})",
)


def ensure_node_modules() -> None:
    """``npm ci`` in tests/browser unless its node_modules matches the lockfile already."""
    installed = BROWSER_TESTS / "node_modules/.package-lock.json"
    lock = BROWSER_TESTS / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    assert NPM is not None, "npm is needed to install tests/browser's playwright-core"
    done = subprocess.run(
        [NPM, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=BROWSER_TESTS,
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, f"npm ci in tests/browser failed:\n{done.stdout}\n{done.stderr}"


@pytest.mark.timeout(SUITE_TIMEOUT_S + 330)
def test_browser_suite(tmp_path: Path) -> None:
    assert NODE is not None
    assert (ROOT / "ui/dist/index.html").is_file(), (
        "ui/dist is not built: run `npm ci && npm run build` in ui/")
    ensure_node_modules()
    graphs = {**TEST_GRAPHS,
              "slow_chat": str(BROWSER_TESTS / "graphs/slow_chat.py") + ":graph"}
    server = GatewayProcess(write_config(tmp_path, graphs=graphs)).start()
    keyed = GatewayProcess(write_config(tmp_path / "keyed", graphs=graphs,
                                        auth={"api_keys": ["browser-key"]})).start()
    authed = GatewayProcess(write_config(
        tmp_path / "authed", graphs=graphs,
        auth={"path": str(ROOT / "examples/auth.py") + ":auth"})).start()
    try:
        page = httpx.get(server.url + "/ui/", timeout=5)
        assert page.status_code == 200 and "<div id=\"root\">" in page.text, (
            f"GET /ui/ -> {page.status_code}: {page.text[:300]} "
            "(are gateway/routes/ui.py's routes in gateway/app.py?)")
        env = {**os.environ, "GATEWAY_URL": server.url, "CHROMIUM_PATH": CHROMIUM,
               "GATEWAY_KEYED_URL": keyed.url, "GATEWAY_API_KEY": "browser-key",
               "GATEWAY_AUTH_URL": authed.url, "GATEWAY_AUTH_KEY": "alice-token"}
        # The files themselves, not the folder: newer Node versions read arguments as globs.
        suite = [str(p.relative_to(ROOT)) for p in sorted(BROWSER_TESTS.glob("*.test.mjs"))]
        assert suite, "no tests/browser/*.test.mjs"
        try:
            done = subprocess.run(
                [NODE, "--test", "--test-reporter=spec", *suite],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=SUITE_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            pytest.fail(f"the browser suite took over {SUITE_TIMEOUT_S}s:\n{out}")
        assert done.returncode == 0, (
            f"browser suite failed (screenshots in tests/browser/artifacts/):\n"
            f"{done.stdout}\n{done.stderr}\n--- gateway log (tail) ---\n{server.log()[-4000:]}")
    finally:
        server.stop()
        keyed.stop()
        authed.stop()
