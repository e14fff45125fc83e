// Shared helpers of the JS SDK suite (not a test file: node --test only runs *.test.mjs here).
//
// Every test talks to a real gateway process at GATEWAY_URL (started by
// tests/e2e/test_js_sdk.py, or by hand: `GATEWAY_URL=http://127.0.0.1:8123 node --test tests/js/`),
// which serves the test graphs of tests/graphs/ (echo, fail, hitl, ...) and the example agents.
// tests/e2e/test_js_sdk.py runs the whole suite once per SDK major version (LANGGRAPH_SDK=1|2).
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";

// Which major version of the SDK: LANGGRAPH_SDK=1 (npm's `latest`, installed as the alias `sdk1`)
// or 2 (the default, installed under its own name). Where they behave differently, a test
// branches on SDK_MAJOR and says what differs.
export const SDK_MAJOR = Number(process.env.LANGGRAPH_SDK ?? "2");
const SDK_PACKAGES = { 1: "sdk1", 2: "@langchain/langgraph-sdk" };
export const SDK_PACKAGE = SDK_PACKAGES[SDK_MAJOR];
if (SDK_PACKAGE === undefined) throw new Error(`LANGGRAPH_SDK must be 1 or 2, not ${process.env.LANGGRAPH_SDK}`);

/** A module of the selected SDK: `importSdk()` is the root, `importSdk("/react")` the hook. */
export const importSdk = (subpath = "") => import(SDK_PACKAGE + subpath);

const { Client } = await importSdk();

export const GATEWAY_URL = (process.env.GATEWAY_URL ?? "http://127.0.0.1:8123").replace(/\/$/, "");

/** A Client on `apiUrl` (no API key lookup from the environment). */
export function makeClient(apiUrl = GATEWAY_URL, options = {}) {
  return new Client({ apiUrl, apiKey: null, ...options });
}

export const human = (text) => ({ messages: [{ role: "user", content: text }] });

/** Run config that makes the echo graph's first node sleep `seconds`. */
export const delay = (seconds) => ({ configurable: { delay: seconds } });

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export const contents = (values) => (values?.messages ?? []).map((m) => m.content);

/** Every part of an SDK stream, as plain `{id, event, data}` objects. */
export async function collect(stream) {
  const parts = [];
  for await (const part of stream) parts.push({ id: part.id, event: part.event, data: part.data });
  return parts;
}

/** Poll `fetch()` until `ok(value)`; fail after `timeoutMs`. */
export async function poll(fetch, ok, timeoutMs = 10_000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  let value;
  while (Date.now() < deadline) {
    value = await fetch();
    if (ok(value)) return value;
    await sleep(25);
  }
  assert.fail(`timed out waiting for ${what}; last value: ${JSON.stringify(value)}`);
}

export async function runStatus(client, threadId, runId) {
  return (await client.runs.get(threadId, runId)).status;
}

export async function waitForStatus(client, threadId, runId, statuses, timeoutMs = 10_000) {
  const wanted = [statuses].flat();
  return poll(() => runStatus(client, threadId, runId), (s) => wanted.includes(s), timeoutMs,
    `run ${runId} to be ${wanted.join("|")}`);
}

/** Event ids are "<ms>-<seq>": parse for an integer comparison. */
export function parseId(id) {
  const [ms, seq] = id.split("-").map(Number);
  return [ms, seq];
}

/** Ids are present, unique and strictly increasing. */
export function assertIdsIncreasing(parts) {
  for (const part of parts) assert.match(part.id ?? "", /^\d+-\d+$/, `event without a valid id: ${JSON.stringify(part)}`);
  for (let i = 1; i < parts.length; i++) {
    const [a, b] = [parseId(parts[i - 1].id), parseId(parts[i].id)];
    assert.ok(a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]),
      `ids not increasing: ${parts[i - 1].id} then ${parts[i].id}`);
  }
}

/** Asserts a promise rejects with an SDK HTTPError of `status`. */
export async function assertHttpStatus(promise, status) {
  await assert.rejects(promise, (err) => {
    assert.equal(err?.status, status, `expected HTTP ${status}, got ${err}`);
    return true;
  });
}

/**
 * A small HTTP proxy in front of `targetUrl` that forwards every request and, once, cuts the
 * connection of the first SSE response whose request matches `match` (default: a POST) after
 * `cutAfterBytes` bytes of its body (the socket is destroyed mid-body, so the client sees a
 * network error, not a clean end). `requests` logs method, url, Last-Event-ID, status, the
 * response's Location and whether that response was cut.
 */
export async function startCuttingProxy(targetUrl, { cutAfterBytes, match = (req) => req.method === "POST" }) {
  const target = new URL(targetUrl);
  const requests = [];
  let cutDone = false;
  const server = http.createServer((req, res) => {
    const entry = { method: req.method, url: req.url, lastEventId: req.headers["last-event-id"], cut: false };
    requests.push(entry);
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        entry.status = up.statusCode;
        entry.location = up.headers.location;
        const headers = { ...up.headers };
        for (const h of ["transfer-encoding", "connection", "keep-alive"]) delete headers[h];
        res.writeHead(up.statusCode, headers);
        const isSse = String(up.headers["content-type"] ?? "").startsWith("text/event-stream");
        if (cutDone || !match(req) || !isSse) {
          up.pipe(res);
          return;
        }
        cutDone = true;
        entry.cut = true;
        let sent = 0;
        const onData = (chunk) => {
          if (sent + chunk.length < cutAfterBytes) {
            sent += chunk.length;
            res.write(chunk);
            return;
          }
          up.off("data", onData);
          const rest = chunk.subarray(0, cutAfterBytes - sent);
          sent = cutAfterBytes;
          // Flush the partial bytes, then kill both sides: the client sees "terminated".
          res.write(rest, () => {
            res.socket?.destroy();
            upstream.destroy();
          });
        };
        up.on("data", onData);
      },
    );
    upstream.on("error", () => res.socket?.destroy());
    req.pipe(upstream);
  });
  server.keepAliveTimeout = 1000;
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** The length of the longest suffix of `buffer` that is a proper prefix of `marker`. */
function partialMarkerAtEnd(buffer, marker) {
  for (let n = Math.min(buffer.length, marker.length - 1); n > 0; n--) {
    if (buffer.subarray(buffer.length - n).equals(marker.subarray(0, n))) return n;
  }
  return 0;
}

/**
 * A TCP proxy (node:net, below HTTP) in front of `targetUrl` that forwards bytes both ways but,
 * the first time the server->client bytes hold an SSE `event: error` frame, forwards every byte
 * before that frame, waits until they are flushed to the client socket, then destroys the client
 * socket and its upstream: the client has every frame before the error, complete, and sees the
 * body break (a network error, not a clean end) just before the error. Bytes that could be the
 * start of the marker are held back until the next chunk decides. `requests` logs each HTTP
 * request seen client->server: method, url, Last-Event-ID, connection number; `cuts` the
 * connection numbers cut.
 */
export async function startErrorCuttingProxy(targetUrl) {
  const target = new URL(targetUrl);
  const marker = Buffer.from("\nevent: error");
  const requests = [];
  const cuts = [];
  const sockets = new Set();
  let connections = 0;
  const server = net.createServer((client) => {
    const connection = ++connections;
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {});
    }
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.end());
    client.on("data", (chunk) => {
      const text = chunk.toString("latin1");
      for (const m of text.matchAll(/^(GET|POST|PUT|PATCH|DELETE) (\S+) HTTP\/1\.1\r\n((?:[^\r\n]+\r\n)*)\r\n/gm)) {
        const lastEventId = /^last-event-id: *(.*)$/im.exec(m[3])?.[1];
        requests.push({ method: m[1], url: m[2], lastEventId, connection });
      }
      upstream.write(chunk);
    });
    let held = Buffer.alloc(0);
    upstream.on("data", (chunk) => {
      held = Buffer.concat([held, chunk]);
      if (cuts.length > 0) {
        client.write(held);
        held = Buffer.alloc(0);
        return;
      }
      const at = held.indexOf(marker);
      if (at === -1) {
        const keep = partialMarkerAtEnd(held, marker);
        client.write(held.subarray(0, held.length - keep));
        held = held.subarray(held.length - keep);
        return;
      }
      cuts.push(connection);
      upstream.pause();
      // Up to and including the "\n" that ends the previous frame; then cut.
      client.write(held.subarray(0, at + 1), () => {
        client.destroy();
        upstream.destroy();
      });
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    cuts,
    close: () => new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
}
