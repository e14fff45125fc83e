// runs.wait (success, node error, interrupt, a long run with keep-alive newlines) and
// runs.cancel with action interrupt and rollback.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  assertHttpStatus, contents, delay, human, makeClient, poll, runStatus, waitForStatus,
} from "./lib.mjs";

const client = makeClient();

test("runs.wait: success returns the final values", { timeout: 10_000 }, async () => {
  const thread = await client.threads.create();
  let created;
  const values = await client.runs.wait(thread.thread_id, "echo", {
    input: human("wait for me"), onRunCreated: (m) => { created = m; },
  });
  assert.deepEqual(contents(values), ["wait for me", "echo: wait for me"]);
  assert.equal(created?.thread_id, thread.thread_id);
  assert.equal(await runStatus(client, thread.thread_id, created.run_id), "success");
});

test("runs.wait: a node error throws an Error with the exception class and message", { timeout: 10_000 }, async () => {
  const thread = await client.threads.create();
  await assert.rejects(client.runs.wait(thread.thread_id, "fail", { input: human("boom") }), (err) => {
    assert.match(err.message, /ValueError/);
    assert.match(err.message, /deliberate failure: boom/);
    return true;
  });
  const raw = await client.runs.wait(thread.thread_id, "fail", { input: human("raw"), raiseError: false });
  assert.deepEqual(raw.__error__, { error: "ValueError", message: "deliberate failure: raw" });
  const [run] = await client.runs.list(thread.thread_id, { limit: 1 });
  assert.equal(run.status, "error");
});

test("runs.wait: an interrupt returns the values with __interrupt__", { timeout: 10_000 }, async () => {
  const thread = await client.threads.create();
  const values = await client.runs.wait(thread.thread_id, "hitl", { input: human("draft it") });
  assert.ok(Array.isArray(values.__interrupt__) && values.__interrupt__.length === 1, JSON.stringify(values));
  assert.deepEqual(values.__interrupt__[0].value, { question: "approve?", draft: "draft it" });
  assert.equal(typeof values.__interrupt__[0].id, "string");
  assert.equal(values.draft, "draft it");
  assert.equal((await client.threads.get(thread.thread_id)).status, "interrupted");
});

test("runs.wait: a run longer than the 5 s keep-alive (leading newlines) still parses", { timeout: 20_000 }, async () => {
  const values = await client.runs.wait(null, "echo", { input: human("slow"), config: delay(5.5) });
  assert.deepEqual(contents(values), ["slow", "echo: slow"]);
});

test("runs.cancel(wait, interrupt): run interrupted, progress kept", { timeout: 15_000 }, async () => {
  const thread = await client.threads.create();
  const run = await client.runs.create(thread.thread_id, "echo", { input: human("cancel me"), config: delay(5) });
  await waitForStatus(client, thread.thread_id, run.run_id, "running");
  await poll(() => client.threads.getState(thread.thread_id), (s) => contents(s.values).includes("cancel me"),
    5_000, "the input checkpoint");
  const body = await client.runs.cancel(thread.thread_id, run.run_id, true, "interrupt");
  assert.equal(typeof body, "object", "cancel with wait returns JSON");
  assert.equal(await runStatus(client, thread.thread_id, run.run_id), "interrupted");
  const state = await client.threads.getState(thread.thread_id);
  assert.deepEqual(contents(state.values), ["cancel me"], "the input checkpoint is kept");
  assert.deepEqual(state.next, ["prepare"]);
  assert.notEqual((await client.threads.get(thread.thread_id)).status, "busy");
  // Cancelling a finished run: 404.
  await assertHttpStatus(client.runs.cancel(thread.thread_id, run.run_id), 404);
});

test("runs.cancel(no wait) answers 202 (undefined) and the run ends interrupted", { timeout: 15_000 }, async () => {
  const thread = await client.threads.create();
  const run = await client.runs.create(thread.thread_id, "echo", { input: human("cancel later"), config: delay(5) });
  await waitForStatus(client, thread.thread_id, run.run_id, "running");
  assert.equal(await client.runs.cancel(thread.thread_id, run.run_id), undefined);
  await waitForStatus(client, thread.thread_id, run.run_id, "interrupted", 4_000);
});

test("runs.cancel(wait, rollback): run deleted (404) and its checkpoints gone", { timeout: 15_000 }, async () => {
  const thread = await client.threads.create();
  await client.runs.wait(thread.thread_id, "echo", { input: human("kept") });
  const run = await client.runs.create(thread.thread_id, "echo", { input: human("rolled back"), config: delay(5) });
  await waitForStatus(client, thread.thread_id, run.run_id, "running");
  await client.runs.cancel(thread.thread_id, run.run_id, true, "rollback");
  await assertHttpStatus(client.runs.get(thread.thread_id, run.run_id), 404);
  const runs = await client.runs.list(thread.thread_id);
  assert.equal(runs.length, 1);
  assert.ok(!runs.some((r) => r.run_id === run.run_id));
  const state = await client.threads.getState(thread.thread_id);
  assert.deepEqual(contents(state.values), ["kept", "echo: kept"], "back to the state before the run");
  assert.equal((await client.threads.get(thread.thread_id)).status, "idle");
});
