// Joining: background run + runs.joinStream (full replay from "-1"), abort mid-stream then
// re-join with lastEventId (no loss, no duplicate), a join with no Last-Event-ID (the whole run
// from metadata on, and the terminal error of a failed run, which a "-1" replay withholds), and
// threads.joinStream (every run's events plus the run_done metadata).
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

test("join a running run without Last-Event-ID: replays from metadata, then live to the end", { timeout: 20_000 }, async () => {
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
  // A fresh joiner has seen nothing: the whole run, not only what comes after the join.
  const late = await collect(client.runs.joinStream(thread.thread_id, run.run_id));
  const full = await collect(client.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: "-1" }));
  assert.equal(late[0].event, "metadata");
  assert.deepEqual(late, full, "a join with no Last-Event-ID gets every event of the run");
  assert.deepEqual(contents(full.filter((p) => p.event === "values").at(-1).data), ["late", "echo: late"]);
  // After the end (the log is retained): the same replay again, and the stream ends.
  assert.deepEqual(await collect(client.runs.joinStream(thread.thread_id, run.run_id)), full);
});

/** A client that records the response headers of every stream it opens. */
function recordingClient() {
  const streams = [];
  const recording = makeClient(GATEWAY_URL, {
    callerOptions: {
      fetch: async (...args) => {
        const response = await fetch(...args);
        if (String(response.headers.get("content-type")).startsWith("text/event-stream")) {
          streams.push({
            url: new URL(String(args[0])).pathname,
            location: response.headers.get("location"),
            contentLocation: response.headers.get("content-location"),
          });
        }
        return response;
      },
    },
  });
  return { recording, streams };
}

test("runs.create then joinStream with no lastEventId: a fast run, every event from metadata on", { timeout: 20_000 }, async () => {
  const { recording, streams } = recordingClient();
  const thread = await client.threads.create();
  const run = await client.runs.create(thread.thread_id, "echo", { input: human("fast"), streamMode: MODES });
  const joined = await collect(recording.runs.joinStream(thread.thread_id, run.run_id));
  assert.deepEqual(joined.map((p) => p.event),
    ["metadata", "values", "custom", "updates", "custom", "updates", "values"]);
  assert.deepEqual(joined[0].data, { run_id: run.run_id, attempt: 1 });
  assertIdsIncreasing(joined);
  assert.deepEqual(contents(joined.at(-1).data), ["fast", "echo: fast"]);
  assert.deepEqual(joined, await collect(client.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: "-1" })));
  // A join stream names its run like the creating stream does.
  const runPath = `/threads/${thread.thread_id}/runs/${run.run_id}`;
  assert.deepEqual(streams, [{ url: `${runPath}/stream`, location: `${runPath}/stream`, contentLocation: runPath }]);
});

test("runs.create then joinStream with no lastEventId: a failing run ends with its error, once", { timeout: 20_000 }, async () => {
  const thread = await client.threads.create();
  const run = await client.runs.create(thread.thread_id, "fail_late", { input: human("join me"), streamMode: MODES });
  const joined = await collect(client.runs.joinStream(thread.thread_id, run.run_id));
  assert.deepEqual(joined.map((p) => p.event),
    ["metadata", "values", "custom", "updates", "values", "custom", "error"]);
  assert.deepEqual(joined[0].data, { run_id: run.run_id, attempt: 1 });
  assert.deepEqual(joined.at(-1).data, { error: "ValueError", message: "deliberate late failure: join me" });
  assertIdsIncreasing(joined);
  assert.equal(await runStatus(client, thread.thread_id, run.run_id), "error");
  // Joining again with no Last-Event-ID: the same, error included (a fresh joiner never saw it).
  assert.deepEqual(await collect(client.runs.joinStream(thread.thread_id, run.run_id)), joined);
  // Resuming from the event before the error: only the error.
  assert.deepEqual(await collect(client.runs.joinStream(thread.thread_id, run.run_id, {
    lastEventId: joined.at(-2).id,
  })), [joined.at(-1)]);
  // A "-1" replay of a run that had already failed withholds the error (useStream re-joins with
  // -1 after an error it has already shown) and ends cleanly.
  assert.deepEqual(await collect(client.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: "-1" })),
    joined.slice(0, -1));
});

test("a -1 join that arrives while the run still runs gets the error live", { timeout: 20_000 }, async () => {
  const thread = await client.threads.create();
  // 2 s before the failure, for the join to arrive while the run runs.
  const run = await client.runs.create(thread.thread_id, "fail_late", {
    input: human("live"), config: delay(2), streamMode: MODES,
  });
  const joined = await collect(client.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: "-1" }));
  assert.deepEqual(joined.map((p) => p.event).slice(-2), ["custom", "error"]);
  assert.equal(joined.filter((p) => p.event === "error").length, 1);
  assert.deepEqual(joined.at(-1).data, { error: "ValueError", message: "deliberate late failure: live" });
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
