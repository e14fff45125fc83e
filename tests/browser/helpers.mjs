// Shared pieces of the browser suite: Debian's Chromium driven by playwright-core, the gateway's
// HTTP API (to check what the page did on the server), and per-page problem collection.
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS = path.join(HERE, "artifacts");
export const DOCS_SCREENSHOT = path.resolve(HERE, "../../docs/chat-page.png");
export const GATEWAY_URL = (process.env.GATEWAY_URL ?? "").replace(/\/+$/, "");
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

// The launch the machine notes prescribe. playwright-core adds --headless and a fresh temporary
// --user-data-dir of its own for every launch (it refuses --user-data-dir in `args`).
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-quic",
  "--no-first-run",
];

export async function launchBrowser() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

// --- the gateway's API --------------------------------------------------------------------

export async function api(method, pathname, body) {
  const res = await fetch(GATEWAY_URL + pathname, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${pathname}: HTTP ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

export const listRuns = (threadId) => api("GET", `/threads/${threadId}/runs?limit=100`);

export async function poll(what, fn, { timeoutMs = 10_000, intervalMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

// --- pages ----------------------------------------------------------------------------------

// A fresh context (own sessionStorage) and page on the gateway's /ui, with:
//   problems: console errors, uncaught page errors and HTTP >= 400 answers from the gateway
//   requests: every non-asset request the page sent ({method, url, path, headers, body, at})
//   snapshots: every distinct rendering of the message list ("type:text" per message), recorded
//              by a MutationObserver in the page and kept across reloads
export async function openPage(browser, query = "", { origin = GATEWAY_URL } = {}) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 720 } });
  const page = await context.newPage();
  const problems = [];
  const requests = [];
  const snapshots = [];
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console.error: ${msg.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`pageerror: ${err.stack ?? err}`));
  page.on("request", (req) => {
    const url = new URL(req.url());
    if (url.pathname.startsWith("/ui/assets/")) return;
    requests.push({
      method: req.method(),
      url: req.url(),
      path: url.pathname,
      search: url.search,
      headers: req.headers(),
      body: req.postData(),
      at: Date.now(),
    });
  });
  page.on("response", (res) => {
    if (res.status() >= 400) problems.push(`HTTP ${res.status()} ${res.request().method()} ${res.url()}`);
  });
  await context.exposeFunction("__recordMessages", (json) => snapshots.push(JSON.parse(json)));
  await context.addInitScript(() => {
    let last = "";
    const record = () => {
      const items = [...document.querySelectorAll('[data-testid="message"]')].map(
        (li) => `${li.dataset.type}:${li.querySelector('[data-testid="message-text"]')?.textContent ?? ""}`,
      );
      const json = JSON.stringify(items);
      if (json !== last) {
        last = json;
        window.__recordMessages(json);
      }
    };
    new MutationObserver(record).observe(document, { subtree: true, childList: true, characterData: true });
  });
  await page.goto(`${origin}/ui${query}`);
  await page.getByTestId("input").waitFor();
  return { context, page, problems, requests, snapshots };
}

// The message list as rendered: [{type, text}] (text "" for a bare tool call).
export async function renderedMessages(page) {
  return page.$$eval('[data-testid="message"]', (items) =>
    items.map((li) => ({
      type: li.dataset.type,
      text: li.querySelector('[data-testid="message-text"]')?.textContent ?? "",
    })),
  );
}

export async function send(page, text) {
  await page.getByTestId("input").fill(text);
  await page.getByTestId("send").click();
}

export async function waitIdle(page, timeout = 15_000) {
  await page.waitForSelector('[data-testid="status"][data-loading="false"]', { timeout });
}

export async function waitForAiText(page, text, timeout = 15_000) {
  await page.waitForFunction(
    (expected) =>
      [...document.querySelectorAll('[data-testid="message"][data-type="ai"] [data-testid="message-text"]')].some(
        (el) => el.textContent === expected,
      ),
    text,
    { timeout },
  );
}

export function threadFromUrl(page) {
  return new URL(page.url()).searchParams.get("thread");
}

export async function screenshot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}
