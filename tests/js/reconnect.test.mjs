// Dropped connections: the SDK's own automatic reconnect (a proxy cuts the SSE body mid-event;
// the SDK must GET the `Location` path with Last-Event-ID and the consumer must see every event
// exactly once), and on_disconnect "cancel" (the run is interrupted when the client goes away).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  GATEWAY_URL, SDK_MAJOR, assertIdsIncreasing, collect, contents, delay, human, makeClient, poll, runStatus,
  startCuttingProxy, waitForStatus,
} from "./lib.mjs";

const client = makeClient();
const MODES = ["values", "updates", "custom"];
// The metadata frame is ~110 bytes: 150 cuts in the middle of the next frame, once the SDK has
// seen (and recorded the id of) at least one event.
const CUT_AFTER = 150;

test("runs.stream: dropped connection -> SDK reconnects to Location with Last-Event-ID, exactly once delivery", { timeout: 30_000 }, async (t) => {
  const proxy = await startCuttingProxy(GATEWAY_URL, { cutAfterBytes: CUT_AFTER });
  t.after(() => proxy.close());
  const viaProxy = makeClient(proxy.url);
  const thread = await client.threads.create();
  let created;
  const seen = await collect(viaProxy.runs.stream(thread.thread_id, "echo", {
    input: human("cut me"), config: delay(2), streamMode: MODES, streamResumable: true,
    onDisconnect: "continue", onRunCreated: (m) => { created = m; },
  }));

  const [post, reconnect, ...others] = proxy.requests;
  assert.equal(post.method, "POST");
  assert.ok(post.cut, "the proxy cut the first stream");
  assert.equal(post.location, `/threads/${thread.thread_id}/runs/${created.run_id}/stream`);
  // 1.x, not 2.x: a stream that ends cleanly without an `error` (or `end`) event is not believed
  // at once; the SDK first asks GET <Location minus /stream> whether the run is still
  // pending/running (and would reconnect if so). 2.x takes the clean close as the end.
  const runPath = `/threads/${thread.thread_id}/runs/${created.run_id}`;
  assert.deepEqual(others.map((r) => [r.method, r.url, r.status]), SDK_MAJOR === 1 ? [["GET", runPath, 200]] : [],
    "one reconnect was enough");
  assert.equal(reconnect.method, "GET");
  assert.equal(reconnect.url, post.location, "reconnected to the Location path");
  assert.equal(reconnect.status, 200);
  assert.ok(reconnect.lastEventId, "the reconnect carries Last-Event-ID");
  const resumedAt = seen.findIndex((p) => p.id === reconnect.lastEventId);
  assert.ok(resumedAt >= 0 && resumedAt < seen.length - 1,
    `Last-Event-ID ${reconnect.lastEventId} is an event seen before the cut, with more after it`);

  const full = await collect(client.runs.joinStream(thread.thread_id, created.run_id, { lastEventId: "-1" }));
  assert.deepEqual(seen, full, "the consumer saw every event exactly once, in order");
  assertIdsIncreasing(seen);
  assert.deepEqual(contents(seen.filter((p) => p.event === "values").at(-1).data), ["cut me", "echo: cut me"]);
  assert.equal(await runStatus(client, thread.thread_id, created.run_id), "success");
  assert.equal((await client.runs.list(thread.thread_id)).length, 1, "the reconnect created no run");
});

test("runs.joinStream: dropped connection -> SDK reconnects with Last-Event-ID", {
  timeout: 30_000,
}, async (t) => {
  const proxy = await startCuttingProxy(GATEWAY_URL, { cutAfterBytes: CUT_AFTER, match: (req) => req.method === "GET" && req.url.includes("/stream") });
  t.after(() => proxy.close());
  const viaProxy = makeClient(proxy.url);
  const thread = await client.threads.create();
  const run = await client.runs.create(thread.thread_id, "echo", {
    input: human("cut the join"), config: delay(2), streamMode: MODES,
  });
  const seen = await collect(viaProxy.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: "-1" }));
  const [join, reconnect] = proxy.requests;
  assert.ok(join.cut);
  assert.equal(reconnect?.method, "GET");
  assert.ok(reconnect.lastEventId && reconnect.lastEventId !== "-1");
  const full = await collect(client.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: "-1" }));
  assert.deepEqual(seen, full);
});

test("on_disconnect cancel: aborting the stream interrupts the run", { timeout: 20_000 }, async () => {
  const thread = await client.threads.create();
  const controller = new AbortController();
  let created;
  try {
    for await (const part of client.runs.stream(thread.thread_id, "echo", {
      input: human("stop me"), config: delay(5), streamMode: "values", onDisconnect: "cancel",
      signal: controller.signal, onRunCreated: (m) => { created = m; },
    })) {
      if (part.event === "metadata") controller.abort();
    }
  } catch (err) {
    if (err.name !== "AbortError") throw err;
  }
  await waitForStatus(client, thread.thread_id, created.run_id, "interrupted", 4_000);
  const threadAfter = await poll(() => client.threads.get(thread.thread_id), (th) => th.status !== "busy",
    4_000, "thread not busy");
  assert.notEqual(threadAfter.status, "busy");
});

test("on_disconnect cancel on runs.wait: aborting the wait interrupts the run", {
  timeout: 20_000,
}, async () => {
  const thread = await client.threads.create();
  const controller = new AbortController();
  const waiting = client.runs.wait(thread.thread_id, "echo", {
    input: human("stop the wait"), config: delay(5), onDisconnect: "cancel", signal: controller.signal,
  });
  // (runs.wait reports Content-Location only after the body: find the run by listing.)
  const [run] = await poll(() => client.runs.list(thread.thread_id),
    (runs) => runs.length === 1 && runs[0].status === "running", 5_000, "run running");
  controller.abort();
  await assert.rejects(waiting, (err) => err.name === "AbortError" || /abort/i.test(String(err)));
  await waitForStatus(client, thread.thread_id, run.run_id, "interrupted", 4_000);
});

test("on_disconnect continue: aborting the stream leaves the run running to success", { timeout: 20_000 }, async () => {
  const thread = await client.threads.create();
  const controller = new AbortController();
  let created;
  try {
    for await (const part of client.runs.stream(thread.thread_id, "echo", {
      input: human("keep going"), config: delay(0.5), streamMode: "values", onDisconnect: "continue",
      signal: controller.signal, onRunCreated: (m) => { created = m; },
    })) {
      if (part.event === "metadata") controller.abort();
    }
  } catch (err) {
    if (err.name !== "AbortError") throw err;
  }
  const result = await client.runs.join(thread.thread_id, created.run_id);
  assert.deepEqual(contents(result), ["keep going", "echo: keep going"]);
  assert.equal(await runStatus(client, thread.thread_id, created.run_id), "success");
});
