// Joining: background run + runs.joinStream (full replay from "-1"), abort mid-stream then
// re-join with lastEventId (no loss, no duplicate), and threads.joinStream (every run's events
// plus the run_done metadata).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  GATEWAY_URL, assertIdsIncreasing, collect, contents, delay, human, makeClient, runStatus,
} from "./lib.mjs";

const client = makeClient();
const MODES = ["values", "updates", "custom"];

test("background run + joinStream from -1 replays every event, with ids", { timeout: 20_000 }, async () => {
  const thread = await client.threads.create();
  const run = await client.runs.create(thread.thread_id, "echo", {
    input: human("bg"), config: delay(0.5), streamMode: MODES,
  });
  assert.ok(["pending", "running"].includes(run.status));
  const live = await collect(client.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: "-1" }));
  assert.equal(live[0].event, "metadata");
  assert.deepEqual(live[0].data, { run_id: run.run_id, attempt: 1 });
  assertIdsIncreasing(live);
  assert.deepEqual(live.filter((p) => p.event === "custom").length, 2);
  assert.deepEqual(contents(live.filter((p) => p.event === "values").at(-1).data), ["bg", "echo: bg"]);
  assert.equal(await runStatus(client, thread.thread_id, run.run_id), "success");

  // After the end: the same replay again (the log is retained), and a stream_mode filter.
  const again = await collect(client.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: "-1" }));
  assert.deepEqual(again, live);
  const onlyCustom = await collect(client.runs.joinStream(thread.thread_id, run.run_id, {
    lastEventId: "-1", streamMode: ["custom"],
  }));
  assert.deepEqual(onlyCustom, live.filter((p) => p.event === "custom"));
  // Resuming from the last id of a finished run: nothing more, and the stream ends.
  const tail = await collect(client.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: live.at(-1).id }));
  assert.deepEqual(tail, []);
});

test("abort mid-stream, re-join with lastEventId: no loss, no duplicate", { timeout: 20_000 }, async () => {
  const thread = await client.threads.create();
  const controller = new AbortController();
  let created;
  const first = [];
  try {
    for await (const part of client.runs.stream(thread.thread_id, "echo", {
      input: human("resume me"), config: delay(1.5), streamMode: MODES, streamResumable: true,
      onDisconnect: "continue", signal: controller.signal, onRunCreated: (m) => { created = m; },
    })) {
      first.push({ id: part.id, event: part.event, data: part.data });
      // metadata, values(input), custom(prepare) arrive before the 1.5 s sleep: stop there.
      // (The SDK either returns quietly or throws AbortError, depending on where it was.)
      if (first.length === 2) controller.abort();
    }
  } catch (err) {
    if (err.name !== "AbortError") throw err;
  }
  assert.equal(first.length, 2);
  assert.equal(await runStatus(client, thread.thread_id, created.run_id), "running",
    "the run goes on after the client left (on_disconnect continue)");

  const rest = await collect(client.runs.joinStream(thread.thread_id, created.run_id, {
    lastEventId: first.at(-1).id,
  }));
  assert.ok(rest.length > 0);
  const full = await collect(client.runs.joinStream(thread.thread_id, created.run_id, { lastEventId: "-1" }));
  assert.deepEqual([...first, ...rest], full, "aborted part + re-joined part == the full replay");
  assertIdsIncreasing(full);
  assert.deepEqual(contents(full.filter((p) => p.event === "values").at(-1).data), ["resume me", "echo: resume me"]);
  assert.equal(await runStatus(client, thread.thread_id, created.run_id), "success");
});

test("join a running run without Last-Event-ID: only new events, then the end", { timeout: 20_000 }, async () => {
  const thread = await client.threads.create();
  const run = await client.runs.create(thread.thread_id, "echo", {
    input: human("late"), config: delay(1), streamMode: MODES,
  });
  // Wait until metadata, values(input) and custom(prepare) are out (the node then sleeps 1 s).
  const controller = new AbortController();
  try {
    for await (const part of client.runs.joinStream(thread.thread_id, run.run_id, {
      lastEventId: "-1", signal: controller.signal,
    })) {
      if (part.event === "custom") controller.abort();
    }
  } catch (err) {
    if (err.name !== "AbortError") throw err;
  }
  const late = await collect(client.runs.joinStream(thread.thread_id, run.run_id));
  const full = await collect(client.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: "-1" }));
  assert.ok(late.length > 0 && late.length < full.length, `late join got ${late.length} of ${full.length}`);
  assert.notEqual(late[0].event, "metadata");
  assert.deepEqual(late, full.slice(full.length - late.length), "a suffix of the run's events");
  // A join after the end with no Last-Event-ID yields nothing but still ends.
  assert.deepEqual(await collect(client.runs.joinStream(thread.thread_id, run.run_id)), []);
});

test("threads.joinStream gets every event of a run and the run_done metadata", { timeout: 20_000 }, async () => {
  const thread = await client.threads.create();
  // Know when the subscription is live: the gateway subscribes before it sends the headers.
  let subscribed;
  const headersIn = new Promise((resolve) => { subscribed = resolve; });
  const watcher = makeClient(GATEWAY_URL, {
    callerOptions: {
      fetch: async (...args) => {
        const response = await fetch(...args);
        if (String(args[0]).includes(`/threads/${thread.thread_id}/stream`)) subscribed();
        return response;
      },
    },
  });
  const controller = new AbortController();
  const seen = [];
  const watching = (async () => {
    try {
      for await (const part of watcher.threads.joinStream(thread.thread_id, { signal: controller.signal })) {
        seen.push({ id: part.id, event: part.event, data: part.data });
        if (part.event === "metadata" && part.data?.status === "run_done") controller.abort();
      }
    } catch (err) {
      if (err.name !== "AbortError") throw err;
    }
  })();
  await headersIn;
  const run = await client.runs.create(thread.thread_id, "echo", {
    input: human("thread stream"), config: delay(0.3), streamMode: MODES,
  });
  await watching;

  assertIdsIncreasing(seen);
  assert.equal(seen.at(-1).event, "metadata");
  assert.deepEqual(seen.at(-1).data, { status: "run_done", run_id: run.run_id });
  assert.deepEqual(seen[0], { ...seen[0], event: "metadata", data: { run_id: run.run_id, attempt: 1 } });
  const runEvents = await collect(client.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: "-1" }));
  assert.deepEqual(seen.slice(0, -1).map((p) => [p.event, p.data]), runEvents.map((p) => [p.event, p.data]),
    "the thread stream carries exactly the run's events");
  assert.equal(seen.filter((p) => p.event === "").length, 0);
});
