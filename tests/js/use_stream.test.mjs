// React `useStream` (from `<sdk>/react`) in Node: React 19 + react-dom on a jsdom document, real
// timers, no act(). `reconnectOnMount: () => storage` with an in-memory Storage stands in for
// window.sessionStorage. A "page reload" is: abort every fetch of the old page (as a browser
// does), unmount it, mount a new hook with the same threadId and the same storage.
//
// What it must show: a failing run calls onError exactly once. The stored run id outlives a
// failure (only onSuccess removes `lg:stream:<threadId>`), so the hook re-joins that run with
// Last-Event-ID: -1 (in both SDK majors: on the same page as soon as the failed stream ends, its
// reconnect-on-mount effect is still armed; or on the next page if the page went away first).
// That -1 replay of an already failed run carries no `error` (so no second onError), ends cleanly,
// and the hook then treats the run as finished: it clears the stored id and shows the error from
// the thread state (`tasks.at(-1).error` of GET /threads/{id}/state).
import assert from "node:assert/strict";
import { test } from "node:test";

import { JSDOM } from "jsdom";

import { GATEWAY_URL, SDK_MAJOR, delay, human, importSdk, makeClient, sleep } from "./lib.mjs";

// Globals first: react-dom decides at import time whether it has a DOM, and useStream reads its
// reconnectOnMount storage only when `window` exists.
const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
// react-dom reads navigator.userAgent; node has a global navigator only from 21 on.
if (globalThis.navigator === undefined) globalThis.navigator = dom.window.navigator;
const React = await import("react");
const { createRoot } = await import("react-dom/client");
const { useStream } = await importSdk("/react");

const client = makeClient();

/** The Storage interface (what sessionStorage is), in memory. */
class MemoryStorage {
  #items = new Map();
  get length() { return this.#items.size; }
  key(index) { return [...this.#items.keys()][index] ?? null; }
  getItem(key) { return this.#items.has(key) ? this.#items.get(key) : null; }
  setItem(key, value) { this.#items.set(key, String(value)); }
  removeItem(key) { this.#items.delete(key); }
  clear() { this.#items.clear(); }
}

/**
 * One page: a component calling useStream(options + callbacks that record), mounted in a jsdom
 * container. Every fetch of the page is logged (path, method, Last-Event-ID) and dies with the
 * page. `hook()` is the latest rendered return value of useStream.
 */
function openPage({ threadId, storage, assistantId, readsStateOnFinish = true, closeOnError = false }) {
  const page = new AbortController();
  const log = { requests: [], errors: [], created: [], metadata: [], finished: [] };
  const options = {
    apiUrl: GATEWAY_URL,
    apiKey: null,
    assistantId,
    threadId,
    reconnectOnMount: () => storage,
    callerOptions: {
      fetch: (url, init = {}) => {
        const lastEventId = new Headers(init.headers).get("last-event-id") ?? undefined;
        log.requests.push({ method: init.method ?? "GET", path: new URL(String(url)).pathname, lastEventId });
        // A closed page fetches nothing more: the SDK's reconnect of a stream the page cut fails
        // at once with an error that neither the SDK's retries (message "AbortError...") nor the
        // hook (name "AbortError") act on, as if the page's JS were gone.
        if (page.signal.aborted) return Promise.reject(Object.assign(new Error("AbortError: page closed"), { name: "AbortError" }));
        const signal = init.signal ? AbortSignal.any([init.signal, page.signal]) : page.signal;
        return fetch(url, { ...init, signal });
      },
    },
    onError: (error) => {
      log.errors.push(error);
      if (closeOnError) close();
    },
    onCreated: (run) => { log.created.push(run); },
    onMetadataEvent: (data) => { log.metadata.push(data); },
    // 1.x reads the thread state after a run only if onFinish declares a parameter (or history or
    // the shown head asks for it); 2.x always does after a join. `length` is what 1.x looks at.
    onFinish: readsStateOnFinish ? (state) => { log.finished.push(state); } : () => { log.finished.push(null); },
  };
  let latest;
  function Page() {
    const stream = useStream(options);
    void stream.values; // a page that shows values: the hook streams "values"
    latest = stream;
    return null;
  }
  const root = createRoot(document.createElement("div"));
  let open = true;
  /** The page goes away: its fetches are aborted, the tree unmounted. */
  function close() {
    if (!open) return;
    open = false;
    page.abort();
    root.unmount();
  }
  root.render(React.createElement(Page));
  return { log, hook: () => latest, close };
}

async function waitFor(what, ok, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * console.error during the test: the hook logs each stream error there (kept, not printed);
 * anything else (a React warning, another error) fails the test at its end.
 */
function captureConsoleError(t) {
  const original = console.error;
  const others = [];
  console.error = (...args) => {
    if (!(args[0] instanceof Error && args[0].name === "ValueError")) others.push(args.map(String).join(" "));
  };
  t.after(() => {
    console.error = original;
    assert.deepEqual(others, [], "unexpected console.error output");
  });
}

const streamPath = (threadId, runId) => `/threads/${threadId}/runs/${runId}/stream`;

/** useStream builds it from tasks.at(-1).error = '{"error":"ValueError","message":...}'. */
function assertShowsError(shown, message) {
  assert.ok(shown instanceof Error, `not an Error: ${shown}`);
  assert.equal(shown.message, message);
  assert.equal(shown.name, "ValueError");
}

for (const readsStateOnFinish of [true, false]) {
  const page = readsStateOnFinish ? "onFinish(state)" : "onFinish()";
  test(`useStream (SDK ${SDK_MAJOR}.x, ${page}): a failed run calls onError once; the page's own -1 re-join adds none; a reload joins nothing`, {
    timeout: 30_000,
  }, async (t) => {
    captureConsoleError(t);
    const storage = new MemoryStorage();
    const threadId = (await client.threads.create()).thread_id;
    const key = `lg:stream:${threadId}`;

    const first = openPage({ threadId, storage, assistantId: "fail", readsStateOnFinish });
    t.after(() => first.close());
    await waitFor("the page to load the thread", () => first.hook()?.isThreadLoading === false);
    first.hook().submit(human("boom"));
    await waitFor("onError", () => first.log.errors.length > 0);
    assert.equal(first.log.created.length, 1);
    const runId = first.log.created[0].run_id;
    // The failed stream ends; the run id is still stored, so the page re-joins it from -1.
    await waitFor("the page's re-join to end and clear the stored run id",
      () => storage.getItem(key) === null && first.hook().isLoading === false);
    await sleep(200); // room for a second, wrong, onError
    assert.equal(first.log.errors.length, 1, "onError exactly once");
    assert.equal(first.log.errors[0].message, "deliberate failure: boom");
    assert.equal(first.log.errors[0].name, "ValueError");
    const streams = first.log.requests.filter((r) => r.path.endsWith("/stream"));
    assert.deepEqual(streams.map((r) => [r.method, r.path, r.lastEventId]), [
      ["POST", `/threads/${threadId}/runs/stream`, undefined],
      ["GET", streamPath(threadId, runId), "-1"],
    ]);
    assert.deepEqual(first.log.metadata, [{ run_id: runId, attempt: 1 }, { run_id: runId, attempt: 1 }],
      "the stream, then the replay from metadata on");
    assert.equal(first.log.finished.length, 1, "the re-join ends as a finished run: onFinish");
    if (readsStateOnFinish || SDK_MAJOR === 2) {
      // The re-join's end re-reads the thread state, whose last task carries the error.
      assertShowsError(first.hook().error, "deliberate failure: boom");
    } else {
      // 1.x, onFinish without a parameter, no history: nothing re-reads the state after the
      // re-join, which has reset the stream's error: the page no longer shows the error.
      assert.equal(first.hook().error, undefined);
    }

    // Reload: nothing is stored any more, so no join; the error shows from the thread state.
    first.close();
    const second = openPage({ threadId, storage, assistantId: "fail", readsStateOnFinish });
    t.after(() => second.close());
    await waitFor("the reloaded page to show the error", () => second.hook()?.isThreadLoading === false
      && second.hook().error != null);
    await sleep(200);
    assertShowsError(second.hook().error, "deliberate failure: boom");
    assert.deepEqual(second.log.requests.filter((r) => r.path.endsWith("/stream")), []);
    assert.equal(second.log.errors.length, 0);
  });
}

test(`useStream (SDK ${SDK_MAJOR}.x): reload as the error arrives, the run id still stored: the new page re-joins from -1, no second onError, the error from the thread state`, {
  timeout: 30_000,
}, async (t) => {
  captureConsoleError(t);
  const storage = new MemoryStorage();
  const threadId = (await client.threads.create()).thread_id;
  const key = `lg:stream:${threadId}`;

  // The page goes away inside onError: before its own re-join can start.
  const first = openPage({ threadId, storage, assistantId: "fail", closeOnError: true });
  t.after(() => first.close());
  await waitFor("the page to load the thread", () => first.hook()?.isThreadLoading === false);
  first.hook().submit(human("boom"));
  await waitFor("onError", () => first.log.errors.length > 0);
  const runId = first.log.created[0].run_id;
  assert.equal(first.log.errors[0].message, "deliberate failure: boom");
  assert.equal(storage.getItem(key), runId, "only onSuccess clears the stored run id: it is still there");

  const second = openPage({ threadId, storage, assistantId: "fail" });
  t.after(() => second.close());
  await waitFor("the re-join to end and clear the stored run id",
    () => storage.getItem(key) === null && second.hook()?.isLoading === false);
  await waitFor("the error from the thread state", () => second.hook().error != null);
  await sleep(200);
  const joins = second.log.requests.filter((r) => r.path === streamPath(threadId, runId));
  assert.deepEqual(joins.map((r) => [r.method, r.lastEventId]), [["GET", "-1"]], "one re-join, from -1");
  assert.deepEqual(second.log.metadata, [{ run_id: runId, attempt: 1 }], "the replay went from metadata on");
  assert.equal(second.log.errors.length, 0, "no second onError after the reload");
  assert.equal(first.log.errors.length, 1);
  assertShowsError(second.hook().error, "deliberate failure: boom");
  assert.ok(second.log.requests.some((r) => r.path === `/threads/${threadId}/state`), "the thread state was read");
});

test(`useStream (SDK ${SDK_MAJOR}.x): reload while the run still runs; it fails later: the new page's -1 re-join gets the error live, onError once`, {
  timeout: 30_000,
}, async (t) => {
  captureConsoleError(t);
  const storage = new MemoryStorage();
  const thread = await client.threads.create();
  const threadId = thread.thread_id;
  const key = `lg:stream:${threadId}`;

  const first = openPage({ threadId, storage, assistantId: "fail_late" });
  t.after(() => first.close());
  await waitFor("the first page to load the thread", () => first.hook()?.isThreadLoading === false);
  // 2.5 s before the failure: the reload below must re-join while the run still runs.
  first.hook().submit(human("reload me"), { config: delay(2.5) });
  await waitFor("the run to be created", () => first.log.created.length === 1);
  const runId = first.log.created[0].run_id;
  assert.equal(storage.getItem(key), runId);
  first.close(); // reload mid-run: the hook made the run resumable with on_disconnect "continue"
  const second = openPage({ threadId, storage, assistantId: "fail_late" });
  t.after(() => second.close());
  await waitFor("onError on the second page", () => second.log.errors.length > 0 && !second.hook().isLoading);
  await sleep(200);
  assert.equal((await client.runs.get(threadId, runId)).status, "error");
  assert.equal(first.log.errors.length, 0, "the closed page saw nothing");
  assert.equal(second.log.errors.length, 1, "onError exactly once");
  assert.equal(second.log.errors[0].message, "deliberate late failure: reload me");
  assert.equal(second.hook().error?.message, "deliberate late failure: reload me");
  const joins = second.log.requests.filter((r) => r.path === streamPath(threadId, runId));
  assert.deepEqual(joins.map((r) => [r.method, r.lastEventId]), [["GET", "-1"]]);
  assert.deepEqual(second.log.metadata, [{ run_id: runId, attempt: 1 }]);
  // Failed: the run id stays stored (only onSuccess clears it), for the next reload's -1 re-join.
  assert.equal(storage.getItem(key), runId);
});
