// Human in the loop (interrupt, then resume with command.resume) and the thread reads the UI
// uses: threads.getState, threads.getHistory (POST /history), threads.search.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import { collect, contents, human, makeClient } from "./lib.mjs";

const client = makeClient();

test("hitl: interrupt in the stream, state shows it, resume with command.resume", { timeout: 15_000 }, async () => {
  const thread = await client.threads.create();
  const first = await collect(client.runs.stream(thread.thread_id, "hitl", {
    input: human("ship it"), streamMode: ["values", "updates"],
  }));
  const lastValues = first.filter((p) => p.event === "values").at(-1).data;
  assert.deepEqual(lastValues.__interrupt__?.map((i) => i.value), [{ question: "approve?", draft: "ship it" }]);
  const interruptUpdate = first.find((p) => p.event === "updates" && p.data.__interrupt__);
  assert.ok(interruptUpdate, "updates carries {__interrupt__: [...]}");
  const interruptId = lastValues.__interrupt__[0].id;
  assert.equal(interruptUpdate.data.__interrupt__[0].id, interruptId);

  assert.equal((await client.threads.get(thread.thread_id)).status, "interrupted");
  const state = await client.threads.getState(thread.thread_id);
  assert.deepEqual(state.next, ["ask"]);
  assert.equal(state.tasks.length, 1);
  assert.deepEqual(state.tasks[0].interrupts, [{ id: interruptId, value: { question: "approve?", draft: "ship it" } }]);

  const resumed = await collect(client.runs.stream(thread.thread_id, "hitl", {
    command: { resume: "yes" }, streamMode: "values",
  }));
  const final = resumed.filter((p) => p.event === "values").at(-1).data;
  assert.equal(final.answer, "yes");
  assert.deepEqual(contents(final), ["ship it", "approved: yes"]);
  assert.equal(final.__interrupt__, undefined);
  const after = await client.threads.get(thread.thread_id);
  assert.equal(after.status, "idle");
  assert.deepEqual((await client.threads.getState(thread.thread_id)).next, []);
});

test("hitl with the approval_agent example: approve via resume true", { timeout: 15_000 }, async () => {
  const thread = await client.threads.create();
  const interrupted = await client.runs.wait(thread.thread_id, "approval_agent", { input: human("what is 6*7?") });
  assert.equal(interrupted.__interrupt__?.length, 1, JSON.stringify(interrupted));
  const done = await client.runs.wait(thread.thread_id, "approval_agent", { command: { resume: true } });
  assert.match(done.messages.at(-1).content, /42/);
});

test("threads.getState: empty thread, then values, checkpoint and next", { timeout: 10_000 }, async () => {
  const thread = await client.threads.create();
  const empty = await client.threads.getState(thread.thread_id);
  assert.equal(empty.checkpoint, null);
  assert.deepEqual(empty.values, {});
  assert.deepEqual(empty.next, []);
  assert.deepEqual(await client.threads.getHistory(thread.thread_id), []);

  await client.runs.wait(thread.thread_id, "echo", { input: human("state") });
  const state = await client.threads.getState(thread.thread_id);
  assert.deepEqual(contents(state.values), ["state", "echo: state"]);
  assert.deepEqual(state.next, []);
  assert.equal(typeof state.checkpoint.checkpoint_id, "string");
  assert.equal(state.checkpoint.thread_id, thread.thread_id);
  // By checkpoint id, the same state.
  const same = await client.threads.getState(thread.thread_id, state.checkpoint.checkpoint_id);
  assert.deepEqual(same.values, state.values);
});

test("threads.getHistory: newest first, parent chain, limit", { timeout: 10_000 }, async () => {
  const thread = await client.threads.create();
  await client.runs.wait(thread.thread_id, "echo", { input: human("one") });
  await client.runs.wait(thread.thread_id, "echo", { input: human("two") });
  const history = await client.threads.getHistory(thread.thread_id, { limit: 100 });
  assert.ok(history.length >= 6, `history has ${history.length} checkpoints`);
  const head = await client.threads.getState(thread.thread_id);
  assert.equal(history[0].checkpoint.checkpoint_id, head.checkpoint.checkpoint_id, "newest first");
  for (let i = 0; i < history.length - 1; i++) {
    assert.equal(history[i].parent_checkpoint?.checkpoint_id, history[i + 1].checkpoint.checkpoint_id,
      `parent chain broken at ${i}`);
  }
  assert.equal(history.at(-1).parent_checkpoint, null);
  assert.deepEqual(contents(history[0].values), ["one", "echo: one", "two", "echo: two"]);
  assert.equal((await client.threads.getHistory(thread.thread_id, { limit: 2 })).length, 2);
  assert.equal((await client.threads.getHistory(thread.thread_id)).length, Math.min(10, history.length));
  const before = await client.threads.getHistory(thread.thread_id, { limit: 1, before: history[0].checkpoint });
  assert.equal(before[0].checkpoint.checkpoint_id, history[1].checkpoint.checkpoint_id);
});

test("threads.search by metadata, status and ids", { timeout: 10_000 }, async () => {
  const tag = randomUUID();
  const a = await client.threads.create({ metadata: { tag, n: 1 }, graphId: "hitl" });
  const b = await client.threads.create({ metadata: { tag, n: 2 } });
  await client.runs.wait(a.thread_id, "hitl", { input: human("pending approval") });

  const all = await client.threads.search({ metadata: { tag }, limit: 10 });
  assert.deepEqual(new Set(all.map((t) => t.thread_id)), new Set([a.thread_id, b.thread_id]));
  const one = await client.threads.search({ metadata: { tag, n: 2 } });
  assert.deepEqual(one.map((t) => t.thread_id), [b.thread_id]);
  const interrupted = await client.threads.search({ metadata: { tag }, status: "interrupted" });
  assert.deepEqual(interrupted.map((t) => t.thread_id), [a.thread_id]);
  assert.equal(interrupted[0].metadata.graph_id, "hitl");
  const byIds = await client.threads.search({ ids: [b.thread_id] });
  assert.deepEqual(byIds.map((t) => t.thread_id), [b.thread_id]);
  const limited = await client.threads.search({ metadata: { tag }, limit: 1 });
  assert.equal(limited.length, 1);
  assert.equal(await client.threads.count({ metadata: { tag } }), 2);
});
