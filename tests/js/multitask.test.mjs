// The four multitask strategies for a second run B while run A (echo "first", 1.5 s) runs on the
// same thread (protocol.md section 7). The scenarios run concurrently, each on its own thread.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  assertHttpStatus, contents, delay, human, makeClient, poll, runStatus, waitForStatus,
} from "./lib.mjs";

const client = makeClient();

/** Run A on a new thread, returned once it runs and its input checkpoint is written (so an
 * interrupt keeps "first"; before that checkpoint there would be nothing to keep). */
async function startA() {
  const thread = await client.threads.create();
  const a = await client.runs.create(thread.thread_id, "echo", { input: human("first"), config: delay(1.5) });
  await waitForStatus(client, thread.thread_id, a.run_id, "running");
  await poll(() => client.threads.getState(thread.thread_id), (s) => contents(s.values).includes("first"),
    5_000, "A's input checkpoint");
  return { threadId: thread.thread_id, a };
}

test("multitask strategies", { timeout: 30_000, concurrency: true }, async (t) => {
  await t.test("reject: 409, nothing created, A finishes", { timeout: 15_000 }, async () => {
    const { threadId, a } = await startA();
    await assertHttpStatus(client.runs.create(threadId, "echo", {
      input: human("second"), multitaskStrategy: "reject",
    }), 409);
    // The streaming form is refused the same way.
    await assertHttpStatus((async () => {
      for await (const _ of client.runs.stream(threadId, "echo", { input: human("second"), multitaskStrategy: "reject" }));
    })(), 409);
    const values = await client.runs.join(threadId, a.run_id);
    assert.deepEqual(contents(values), ["first", "echo: first"]);
    assert.equal(await runStatus(client, threadId, a.run_id), "success");
    assert.equal((await client.runs.list(threadId)).length, 1);
  });

  await t.test("interrupt: A interrupted (progress kept), B runs after it", { timeout: 15_000 }, async () => {
    const { threadId, a } = await startA();
    const b = await client.runs.create(threadId, "echo", { input: human("second"), multitaskStrategy: "interrupt" });
    const values = await client.runs.join(threadId, b.run_id);
    assert.deepEqual(contents(values), ["first", "second", "echo: second"]);
    assert.equal(await runStatus(client, threadId, a.run_id), "interrupted");
    assert.equal(await runStatus(client, threadId, b.run_id), "success");
    assert.equal((await client.threads.get(threadId)).status, "idle");
  });

  await t.test("rollback: A deleted with its checkpoints, B runs on a clean thread", { timeout: 15_000 }, async () => {
    const { threadId, a } = await startA();
    const b = await client.runs.create(threadId, "echo", { input: human("second"), multitaskStrategy: "rollback" });
    const values = await client.runs.join(threadId, b.run_id);
    assert.deepEqual(contents(values), ["second", "echo: second"]);
    await assertHttpStatus(client.runs.get(threadId, a.run_id), 404);
    assert.equal(await runStatus(client, threadId, b.run_id), "success");
    assert.deepEqual((await client.runs.list(threadId)).map((r) => r.run_id), [b.run_id]);
    assert.equal((await client.threads.get(threadId)).status, "idle");
  });

  await t.test("enqueue: B waits pending, then runs after A", { timeout: 15_000 }, async () => {
    const { threadId, a } = await startA();
    const b = await client.runs.create(threadId, "echo", { input: human("second"), multitaskStrategy: "enqueue" });
    assert.equal(b.status, "pending");
    assert.equal(await runStatus(client, threadId, b.run_id), "pending");
    const values = await client.runs.join(threadId, b.run_id);
    assert.deepEqual(contents(values), ["first", "echo: first", "second", "echo: second"]);
    assert.equal(await runStatus(client, threadId, a.run_id), "success");
    assert.equal(await runStatus(client, threadId, b.run_id), "success");
  });

  await t.test("enqueue is the default (the SDK sends no multitask_strategy)", { timeout: 15_000 }, async () => {
    const { threadId } = await startA();
    const values = await client.runs.wait(threadId, "echo", { input: human("second") });
    assert.deepEqual(contents(values), ["first", "echo: first", "second", "echo: second"]);
  });
});
