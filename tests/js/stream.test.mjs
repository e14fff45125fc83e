// runs.stream with each stream mode the UI uses, the run-created callback (Content-Location),
// stateless streams and CORS (raw fetch: what a browser would send).
import assert from "node:assert/strict";
import { test } from "node:test";

import { GATEWAY_URL, assertIdsIncreasing, collect, contents, delay, human, makeClient } from "./lib.mjs";

const client = makeClient();
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

test("stream values + updates + custom: names, payloads, ids, run metadata", { timeout: 20_000 }, async () => {
  const thread = await client.threads.create();
  let created;
  // 1.5 s in the first node: the gateway (ping_interval_s 1) sends heartbeats meanwhile, which
  // must not surface as phantom events.
  const parts = await collect(client.runs.stream(thread.thread_id, "echo", {
    input: human("hi"), config: delay(1.5), streamMode: ["values", "updates", "custom"],
    onRunCreated: (meta) => { created = meta; },
  }));
  assert.deepEqual(created?.thread_id, thread.thread_id);
  assert.match(created?.run_id ?? "", UUID, "Content-Location gave a clean run id");

  assert.equal(parts[0].event, "metadata");
  assert.deepEqual(parts[0].data, { run_id: created.run_id, attempt: 1 });
  const names = new Set(parts.map((p) => p.event));
  assert.deepEqual([...names].sort(), ["custom", "metadata", "updates", "values"],
    `unexpected event names (a "" name is a heartbeat phantom): ${[...names]}`);
  assertIdsIncreasing(parts);

  const values = parts.filter((p) => p.event === "values");
  assert.ok(values.length >= 2, "values after the input and at the end");
  assert.deepEqual(contents(values[0].data), ["hi"]);
  assert.deepEqual(contents(values.at(-1).data), ["hi", "echo: hi"]);

  const updates = parts.filter((p) => p.event === "updates").map((p) => Object.keys(p.data));
  assert.deepEqual(updates, [["prepare"], ["respond"]]);
  const respond = parts.filter((p) => p.event === "updates").at(-1).data.respond;
  assert.equal(respond.messages[0].content, "echo: hi");

  assert.deepEqual(parts.filter((p) => p.event === "custom").map((p) => p.data),
    [{ progress: "prepare", step: 1 }, { progress: "respond", step: 2 }]);

  const run = await client.runs.get(thread.thread_id, created.run_id);
  assert.equal(run.status, "success");
});

test("stream a single mode given as a string", { timeout: 10_000 }, async () => {
  const thread = await client.threads.create();
  const parts = await collect(client.runs.stream(thread.thread_id, "echo", {
    input: human("one"), streamMode: "custom",
  }));
  assert.deepEqual(parts.map((p) => p.event), ["metadata", "custom", "custom"]);
});

test("stream messages-tuple: event 'messages', [chunk, metadata] with type and id", { timeout: 20_000 }, async () => {
  const thread = await client.threads.create();
  const parts = await collect(client.runs.stream(thread.thread_id, "chat_agent", {
    input: human("what is 12*(3+4)?"), streamMode: ["messages-tuple", "values"],
  }));
  const names = new Set(parts.map((p) => p.event));
  assert.deepEqual([...names].sort(), ["messages", "metadata", "values"]);
  const messages = parts.filter((p) => p.event === "messages");
  assert.ok(messages.length > 3, "the answer streams in several chunks");
  for (const { data } of messages) {
    assert.ok(Array.isArray(data) && data.length === 2, `not a [message, metadata] pair: ${JSON.stringify(data)}`);
    const [chunk, meta] = data;
    assert.equal(typeof chunk.type, "string", "useStream needs message.type");
    assert.equal(typeof chunk.id, "string", "useStream drops messages without id");
    assert.equal(typeof meta.langgraph_node, "string");
  }
  // Chunks of one id concatenate into the final answer, as useStream does.
  const byId = new Map();
  for (const { data: [chunk] } of messages) {
    if (chunk.type !== "AIMessageChunk") continue;
    byId.set(chunk.id, (byId.get(chunk.id) ?? "") + (typeof chunk.content === "string" ? chunk.content : ""));
  }
  assert.ok([...byId.values()].includes("The result is 84."), `streamed texts: ${JSON.stringify([...byId.values()])}`);
  assert.ok(messages.some(({ data: [chunk] }) => chunk.type === "tool" && chunk.content === "84"),
    "the tool message is streamed too");
  const final = parts.filter((p) => p.event === "values").at(-1).data;
  assert.equal(final.messages.at(-1).content, "The result is 84.");
});

test("stateless stream: Content-Location /runs/{id}, no thread id", { timeout: 10_000 }, async () => {
  let created;
  const parts = await collect(client.runs.stream(null, "echo", {
    input: human("nothread"), streamMode: "values", onRunCreated: (meta) => { created = meta; },
  }));
  assert.match(created?.run_id ?? "", UUID);
  assert.equal(created.thread_id, undefined);
  assert.deepEqual(contents(parts.at(-1).data), ["nothread", "echo: nothread"]);
});

test("CORS: preflight allows the SDK's headers; responses expose content-location and location", { timeout: 10_000 }, async () => {
  const origin = "http://page.example:5173";
  const thread = await client.threads.create();
  const path = `/threads/${thread.thread_id}/runs/stream`;
  const preflight = await fetch(GATEWAY_URL + path, {
    method: "OPTIONS",
    headers: {
      Origin: origin,
      "Access-Control-Request-Method": "POST",
      "Access-Control-Request-Headers": "content-type,last-event-id,x-api-key",
    },
  });
  assert.equal(preflight.status, 200, await preflight.text());
  const allowOrigin = preflight.headers.get("access-control-allow-origin");
  assert.ok(allowOrigin === "*" || allowOrigin === origin, `allow-origin: ${allowOrigin}`);
  const allowHeaders = (preflight.headers.get("access-control-allow-headers") ?? "").toLowerCase();
  for (const h of ["content-type", "last-event-id", "x-api-key"]) {
    assert.ok(allowHeaders.split(/\s*,\s*/).includes(h), `preflight does not allow ${h}: ${allowHeaders}`);
  }
  const allowMethods = (preflight.headers.get("access-control-allow-methods") ?? "").toUpperCase();
  for (const m of ["GET", "POST", "PATCH", "DELETE"]) assert.ok(allowMethods.includes(m), `methods: ${allowMethods}`);

  // A real cross-origin request: a streamed run.
  const response = await fetch(GATEWAY_URL + path, {
    method: "POST",
    headers: { Origin: origin, "content-type": "application/json" },
    body: JSON.stringify({ assistant_id: "echo", input: human("cors"), stream_mode: ["values"] }),
  });
  assert.equal(response.status, 200);
  const body = await response.text();
  assert.match(body, /event: values/);
  const exposed = (response.headers.get("access-control-expose-headers") ?? "").toLowerCase().split(/\s*,\s*/);
  for (const h of ["content-location", "location"]) {
    assert.ok(exposed.includes(h), `${h} not exposed: ${exposed}`);
  }
  assert.ok(["*", origin].includes(response.headers.get("access-control-allow-origin")));
  assert.match(response.headers.get("content-location") ?? "", /^\/threads\/[0-9a-f-]+\/runs\/[0-9a-f-]+$/);
  assert.match(response.headers.get("location") ?? "", /^\/threads\/[0-9a-f-]+\/runs\/[0-9a-f-]+\/stream$/);
});
