// The terminal `error` event across a dropped connection: a TCP proxy cuts the SSE body just
// before the `error` frame (every earlier frame delivered), the SDK reconnects on its own to the
// `Location` path with `Last-Event-ID: <last id seen>`, and the consumer must see the error
// exactly once, after every other event, none repeated (both SDK major versions reconnect so).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  GATEWAY_URL, assertIdsIncreasing, collect, delay, human, makeClient, runStatus, startErrorCuttingProxy,
} from "./lib.mjs";

const client = makeClient();
const MODES = ["values", "updates", "custom"];

/**
 * What the consumer saw (`seen`) against the run's log: a join with no Last-Event-ID (every
 * event, the error included) and a "-1" replay of the failed run (every event but the error).
 */
async function assertErrorOnceAfterEverything(threadId, runId, seen, message) {
  const errors = seen.filter((p) => p.event === "error");
  assert.deepEqual(errors.map((p) => p.data), [{ error: "ValueError", message }], "the error, exactly once");
  assert.equal(seen.at(-1).event, "error", "the error is the last event");
  assert.equal(seen[0].event, "metadata");
  assertIdsIncreasing(seen);
  assert.deepEqual(seen, await collect(client.runs.joinStream(threadId, runId)),
    "the consumer saw the run's events, in order, none lost or repeated");
  assert.deepEqual(seen.slice(0, -1), await collect(client.runs.joinStream(threadId, runId, { lastEventId: "-1" })));
  assert.equal(await runStatus(client, threadId, runId), "error");
}

/** The cut stream was the first request; one GET to it with the last id seen, nothing else. */
function assertOneReconnect(proxy, first, streamPath, seen) {
  assert.deepEqual(proxy.cuts, [proxy.requests[0].connection], "the first stream was cut");
  assert.deepEqual(proxy.requests.map((r) => [r.method, r.url.split("?")[0]]), [first, ["GET", streamPath]],
    "one reconnect, to the Location path (and, with the error delivered, no run-status probe)");
  assert.equal(proxy.requests[1].lastEventId, seen.at(-2).id,
    "the reconnect resumes after the last event before the error");
}

for (const [graph, seconds, when] of [
  ["fail_late", 0.3, "some time after the events before it"],
  ["fail", 0, "right after the events before it, often in one TCP segment"],
]) {
  test(`runs.stream: cut before the error (${graph}, sent ${when}) -> reconnect, error once`, { timeout: 20_000 }, async (t) => {
    const proxy = await startErrorCuttingProxy(GATEWAY_URL);
    t.after(() => proxy.close());
    const viaProxy = makeClient(proxy.url);
    const thread = await client.threads.create();
    let created;
    const seen = await collect(viaProxy.runs.stream(thread.thread_id, graph, {
      input: human("cut"), config: delay(seconds), streamMode: MODES, streamResumable: true,
      onDisconnect: "continue", onRunCreated: (m) => { created = m; },
    }));
    const runPath = `/threads/${thread.thread_id}/runs/${created.run_id}`;
    assertOneReconnect(proxy, ["POST", `/threads/${thread.thread_id}/runs/stream`], `${runPath}/stream`, seen);
    const message = graph === "fail" ? "deliberate failure: cut" : "deliberate late failure: cut";
    await assertErrorOnceAfterEverything(thread.thread_id, created.run_id, seen, message);
    if (graph === "fail_late") {
      assert.deepEqual(seen.map((p) => p.event), ["metadata", "values", "custom", "updates", "values", "custom", "error"]);
    }
  });
}

test("runs.joinStream from -1 of a running run: cut before the error -> reconnect with the last id, error once", { timeout: 20_000 }, async (t) => {
  const proxy = await startErrorCuttingProxy(GATEWAY_URL);
  t.after(() => proxy.close());
  const viaProxy = makeClient(proxy.url);
  const thread = await client.threads.create();
  // 1.5 s before the failure: the -1 join must arrive while the run runs (a -1 replay of a run
  // that had already failed has no error to cut before).
  const run = await client.runs.create(thread.thread_id, "fail_late", {
    input: human("cut the join"), config: delay(1.5), streamMode: MODES,
  });
  // The reconnect is a resume from a specific id, not a "-1" replay: the error is not withheld.
  const seen = await collect(viaProxy.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: "-1" }));
  const streamPath = `/threads/${thread.thread_id}/runs/${run.run_id}/stream`;
  assert.equal(proxy.requests[0].lastEventId, "-1");
  assertOneReconnect(proxy, ["GET", streamPath], streamPath, seen);
  await assertErrorOnceAfterEverything(thread.thread_id, run.run_id, seen, "deliberate late failure: cut the join");
});

// A stateless run is deleted with its temporary thread when it ends: a reconnect that arrives
// after the end must still get the run's own events from its retained log (it used to get
// `event: error` {"error":"HTTPException","message":"404: Run not found"}).
test("stateless runs.stream: cut before the error, run over before the reconnect: the reconnect still gets the run's own error", {
  timeout: 20_000,
}, async (t) => {
  const proxy = await startErrorCuttingProxy(GATEWAY_URL);
  t.after(() => proxy.close());
  let created;
  const seen = await collect(makeClient(proxy.url).runs.stream(null, "fail_late", {
    input: human("stateless"), streamMode: MODES, streamResumable: true, onDisconnect: "continue",
    onRunCreated: (m) => { created = m; },
  }));
  assert.deepEqual(proxy.requests.map((r) => [r.method, r.url]),
    [["POST", "/runs/stream"], ["GET", `/runs/${created.run_id}/stream`]]);
  assert.deepEqual(seen.map((p) => p.event), ["metadata", "values", "custom", "updates", "values", "custom", "error"]);
  assert.deepEqual(seen.at(-1).data, { error: "ValueError", message: "deliberate late failure: stateless" });
});
