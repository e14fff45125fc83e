// The chat page (/ui: React + useStream from @langchain/langgraph-sdk/react 2.0.0) in Debian's
// headless Chromium against a real gateway (GATEWAY_URL). The gateway must serve the test graphs
// of tests/server.py plus tests/browser/graphs/slow_chat.py as `slow_chat`
// (tests/e2e/test_browser.py starts one like that).
//
// Every test opens a fresh browser context, saves a screenshot to artifacts/<test>.png and fails
// on console errors, uncaught page errors or HTTP errors seen by the page.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import {
  CHROMIUM,
  DOCS_SCREENSHOT,
  GATEWAY_URL,
  api,
  launchBrowser,
  listRuns,
  openPage,
  poll,
  renderedMessages,
  screenshot,
  send,
  threadFromUrl,
  waitForAiText,
  waitIdle,
} from "./helpers.mjs";

const skip = !GATEWAY_URL
  ? "GATEWAY_URL is not set (tests/e2e/test_browser.py sets it)"
  : !existsSync(CHROMIUM)
    ? `${CHROMIUM} is missing (apt-get install -y chromium)`
    : false;

const SLOW_TEXT = "tell me a story please";
const SLOW_ANSWER = `You said: ${SLOW_TEXT}. Ask me some arithmetic, like 2+2.`; // 12 tokens

describe("chat page", { skip }, () => {
  let browser;
  const threads = {}; // name -> thread id, for the switcher test

  before(async () => {
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
  });

  // Runs `body` on a fresh page; always screenshots; then asserts the page had no problems
  // (apart from those matching `allow`).
  async function onPage(name, query, body, { allow = [], origin } = {}) {
    const tab = await openPage(browser, query, { origin });
    try {
      await body(tab);
    } finally {
      await screenshot(tab.page, name).catch(() => {});
      await tab.context.close();
    }
    const unexpected = tab.problems.filter((p) => !allow.some((re) => re.test(p)));
    assert.deepEqual(unexpected, [], `problems on the page in "${name}"`);
    return tab;
  }

  test("sends a message and shows the streamed answer", async () => {
    await onPage("chat", "", async ({ page, requests }) => {
      await send(page, "what is 12*(3+4)?");
      await waitForAiText(page, "The result is 84.");
      await waitIdle(page);
      const thread = threadFromUrl(page);
      assert.ok(thread, "the thread id is in the URL");
      threads.chat = thread;

      assert.deepEqual(await renderedMessages(page), [
        { type: "human", text: "what is 12*(3+4)?" },
        { type: "ai", text: "" }, // the calculator call
        { type: "tool", text: "calculator → 84" },
        { type: "ai", text: "The result is 84." },
      ]);
      assert.match(await page.getByTestId("tool-call").innerText(), /calculator\(12\*\(3\+4\)\)/);

      // What useStream sent: a resumable streamed run on the new thread.
      const post = requests.find((r) => r.method === "POST" && r.path === `/threads/${thread}/runs/stream`);
      assert.ok(post, "POST /threads/{id}/runs/stream");
      const body = JSON.parse(post.body);
      assert.equal(body.assistant_id, "chat_agent");
      assert.equal(body.stream_resumable, true);
      assert.deepEqual(body.input, { messages: [{ type: "human", content: "what is 12*(3+4)?" }] });
      assert.ok(body.stream_mode.includes("messages-tuple"));

      // A second turn on the same thread: earlier messages stay, each once.
      await send(page, "and 2**10 - 24?");
      await waitForAiText(page, "The result is 1000.");
      await waitIdle(page);
      const texts = (await renderedMessages(page)).map((m) => `${m.type}:${m.text}`);
      assert.deepEqual(texts, [
        "human:what is 12*(3+4)?",
        "ai:",
        "tool:calculator → 84",
        "ai:The result is 84.",
        "human:and 2**10 - 24?",
        "ai:",
        "tool:calculator → 1000",
        "ai:The result is 1000.",
      ]);
      assert.equal(threadFromUrl(page), thread, "same thread");
      const runs = await listRuns(thread);
      assert.deepEqual(runs.map((r) => r.status), ["success", "success"]);
      await page.locator(`[data-testid="thread-item"][data-thread-id="${thread}"]`).waitFor();
    });
  });

  test("re-joins a run after a reload mid-run: every token once, no second run", async () => {
    await onPage("reload-mid-run", "?assistant=slow_chat&delay=0.35", async ({ page, requests, snapshots }) => {
      await send(page, SLOW_TEXT);
      await page.getByTestId("run-id").waitFor(); // Content-Location read: the rejoin key is stored
      const thread = threadFromUrl(page);
      assert.ok(thread);
      const runId = await page.getByTestId("run-id").innerText();
      assert.equal(
        await page.evaluate((t) => sessionStorage.getItem(`lg:stream:${t}`), thread),
        runId,
        "useStream stored the run for reconnectOnMount",
      );
      // Wait for a few streamed tokens, then reload in the middle of the answer.
      await page.waitForFunction(() => {
        const el = document.querySelector('[data-testid="message"][data-type="ai"] [data-testid="message-text"]');
        return el && el.textContent.split(/\s+/).filter(Boolean).length >= 3;
      });
      const partial = await page
        .locator('[data-testid="message"][data-type="ai"] [data-testid="message-text"]')
        .innerText();
      assert.notEqual(partial, SLOW_ANSWER, "reloaded before the answer was complete");
      const reloadedAt = Date.now();
      const snapshotsBefore = snapshots.length;
      await page.reload();

      await waitForAiText(page, SLOW_ANSWER);
      await waitIdle(page);
      assert.deepEqual(await renderedMessages(page), [
        { type: "human", text: SLOW_TEXT },
        { type: "ai", text: SLOW_ANSWER },
      ]);

      // The re-join: GET .../runs/{run}/stream with Last-Event-ID: -1, and no new run.
      const after = requests.filter((r) => r.at >= reloadedAt);
      const join = after.find((r) => r.method === "GET" && r.path === `/threads/${thread}/runs/${runId}/stream`);
      assert.ok(join, `GET /threads/${thread}/runs/${runId}/stream after the reload`);
      assert.equal(join.headers["last-event-id"], "-1");
      assert.deepEqual(
        after.filter((r) => r.method === "POST" && /\/runs(\/stream|\/wait)?$/.test(r.path)).map((r) => r.path),
        [],
        "no run created after the reload",
      );
      const runs = await listRuns(thread);
      assert.equal(runs.length, 1, "exactly one run on the thread");
      assert.equal(runs[0].run_id, runId);
      assert.equal(runs[0].status, "success");
      assert.equal(await page.evaluate((t) => sessionStorage.getItem(`lg:stream:${t}`), thread), null);

      // Every rendering, before and after the reload, showed each message at most once and the
      // answer as a prefix of the final text: no token was lost or repeated at any moment.
      assert.ok(snapshots.length > 0);
      for (const snap of snapshots) {
        const humans = snap.filter((s) => s.startsWith("human:"));
        const ais = snap.filter((s) => s.startsWith("ai:"));
        assert.ok(humans.length <= 1 && ais.length <= 1, `each message once: ${JSON.stringify(snap)}`);
        if (humans.length) assert.equal(humans[0], `human:${SLOW_TEXT}`);
        if (ais.length) assert.ok(SLOW_ANSWER.startsWith(ais[0].slice(3)), `a prefix: ${JSON.stringify(ais[0])}`);
      }
      // ...and the page streamed token by token on both sides of the reload.
      const aiTexts = snapshots.map((s) => s.find((x) => x.startsWith("ai:"))?.slice(3)).filter(Boolean);
      const partials = new Set(aiTexts.filter((t) => t !== SLOW_ANSWER));
      assert.ok(partials.size >= 4, `partial answers seen: ${[...partials].join(" | ")}`);
      assert.ok(
        snapshots
          .slice(snapshotsBefore)
          .some((s) => s.some((x) => x.startsWith("ai:") && x.length > `ai:${partial}`.length && x !== `ai:${SLOW_ANSWER}`)),
        "after the reload, a partial answer longer than the one before it was shown (the page joined the live run)",
      );
    });
  });

  test("Stop cancels the run on the server (interrupted)", async () => {
    await onPage("stop", "?assistant=slow_chat&delay=0.5", async ({ page, requests }) => {
      await send(page, "keep talking to me");
      await page.getByTestId("run-id").waitFor();
      const thread = threadFromUrl(page);
      const runId = await page.getByTestId("run-id").innerText();
      await page.waitForFunction(() =>
        document.querySelector('[data-testid="message"][data-type="ai"] [data-testid="message-text"]'),
      );
      await page.getByTestId("stop").click();
      await waitIdle(page, 5_000);

      const cancel = await poll("the cancel request", () =>
        requests.find((r) => r.method === "POST" && r.path === `/threads/${thread}/runs/${runId}/cancel`),
      );
      assert.equal(new URLSearchParams(cancel.search).get("action"), "interrupt");
      const run = await poll("the run to be interrupted", async () => {
        const r = await api("GET", `/threads/${thread}/runs/${runId}`);
        return r.status === "interrupted" ? r : null;
      });
      assert.equal(run.status, "interrupted");
      assert.equal((await listRuns(thread)).length, 1);

      // Nothing more arrives on the page, and no error is shown.
      const text = () =>
        page.locator('[data-testid="message"][data-type="ai"] [data-testid="message-text"]').innerText();
      const stopped = await text();
      await page.waitForTimeout(1200);
      assert.equal(await text(), stopped);
      assert.notEqual(stopped, "You said: keep talking to me. Ask me some arithmetic, like 2+2.");
      assert.equal(await page.getByTestId("error").count(), 0);
      assert.equal(await page.evaluate((t) => sessionStorage.getItem(`lg:stream:${t}`), thread), null);

      // A reload shows the thread as the server kept it (the human message; the partial answer
      // was never checkpointed), re-joins nothing and offers no approval prompt.
      const reloadedAt = Date.now();
      await page.reload();
      await page.waitForFunction(() => document.querySelectorAll('[data-testid="message"]').length > 0);
      await waitIdle(page);
      assert.deepEqual(await renderedMessages(page), [{ type: "human", text: "keep talking to me" }]);
      assert.equal(await page.getByTestId("interrupt").count(), 0);
      assert.deepEqual(requests.filter((r) => r.at >= reloadedAt && r.path.includes("/runs")), []);
    });
  });

  // approval_agent asks in the standard HITL request shape; the page answers {decisions: [...]}.
  const REQUEST = (expression) => ({
    action_requests: [
      {
        name: "calculator",
        args: { expression },
        description: `Run calculator with {"expression": "${expression}"}?`,
      },
    ],
    review_configs: [{ action_name: "calculator", allowed_decisions: ["approve", "edit", "reject"] }],
  });

  // Sends `text` to approval_agent and waits for its prompt; returns the thread id.
  async function askApproval(page, text, expression) {
    await send(page, text);
    await page.getByTestId("interrupt").waitFor();
    await waitIdle(page);
    assert.equal(await page.getByTestId("interrupt").getAttribute("data-kind"), "hitl");
    assert.equal(
      await page.getByTestId("interrupt-question").innerText(),
      `Run calculator with {"expression": "${expression}"}?`,
    );
    assert.equal(await page.getByTestId("interrupt-call").innerText(), `calculator({"expression":"${expression}"})`);
    const thread = threadFromUrl(page);
    const state = await api("GET", `/threads/${thread}/state`);
    assert.deepEqual(state.tasks[0].interrupts[0].value, REQUEST(expression));
    return thread;
  }

  // The body of the n-th POST .../runs/stream of the thread (the resume is the second).
  const runBody = (requests, thread, n) =>
    JSON.parse(requests.filter((r) => r.method === "POST" && r.path === `/threads/${thread}/runs/stream`)[n].body);

  test("approves an interrupt from the page", async () => {
    await onPage("approve", "", async ({ page, requests }) => {
      await page.getByTestId("assistant").selectOption("approval_agent");
      assert.equal(new URL(page.url()).searchParams.get("assistant"), "approval_agent");
      const thread = await askApproval(page, "what is 12*(3+4)?", "12*(3+4)");
      await screenshot(page, "approve-prompt");
      threads.approval = thread;

      await page.getByTestId("approve").click();
      await waitForAiText(page, "The result is 84.");
      await waitIdle(page);
      assert.equal(await page.getByTestId("interrupt").count(), 0);

      const body = runBody(requests, thread, 1);
      assert.deepEqual(body.command, { resume: { decisions: [{ type: "approve" }] } });
      assert.equal("input" in body, false);
      const runs = await listRuns(thread);
      assert.deepEqual(runs.map((r) => r.status), ["success", "success"]);
      const state = await api("GET", `/threads/${thread}/state`);
      assert.equal(state.values.messages.at(-1).content, "The result is 84.");
    });
  });

  test("edits the args of an interrupted tool call from the page", async () => {
    await onPage("edit", "?assistant=approval_agent", async ({ page, requests }) => {
      const thread = await askApproval(page, "what is 6*7?", "6*7");
      await page.getByTestId("edit").click();
      const args = page.getByTestId("edit-args");
      assert.deepEqual(JSON.parse(await args.inputValue()), { expression: "6*7" });

      // Not JSON: the page says so and sends nothing.
      await args.fill("{expression: 6*8");
      await page.getByTestId("edit-submit").click();
      await page.getByTestId("edit-error").waitFor();
      assert.equal(requests.filter((r) => r.method === "POST" && r.path.endsWith("/runs/stream")).length, 1);

      await args.fill('{"expression": "6*8"}');
      await screenshot(page, "edit-prompt");
      await page.getByTestId("edit-submit").click();
      await waitForAiText(page, "The result is 48.");
      await waitIdle(page);
      assert.equal(await page.getByTestId("interrupt").count(), 0);
      assert.deepEqual(runBody(requests, thread, 1).command, {
        resume: { decisions: [{ type: "edit", edited_action: { name: "calculator", args: { expression: "6*8" } } }] },
      });
      // The AI message's tool call shows what actually ran.
      assert.match(await page.getByTestId("tool-call").innerText(), /calculator\(6\*8\)/);
      assert.deepEqual(await renderedMessages(page), [
        { type: "human", text: "what is 6*7?" },
        { type: "ai", text: "" },
        { type: "tool", text: "calculator → 48" },
        { type: "ai", text: "The result is 48." },
      ]);
    });
  });

  test("rejects an interrupt from the page, with a message", async () => {
    await onPage("reject", "?assistant=approval_agent", async ({ page, requests }) => {
      const thread = await askApproval(page, "what is 2+3?", "2+3");
      await page.getByTestId("reject").click();
      // Back returns to the three buttons; Reject again asks for the optional message.
      await page.getByTestId("reject-cancel").click();
      await page.getByTestId("approve").waitFor();
      await page.getByTestId("reject").click();
      await page.getByTestId("reject-message").fill("Not now, thanks.");
      await page.getByTestId("reject-submit").click();
      await waitForAiText(page, "Cancelled: the calculator was not run.");
      await waitIdle(page);
      assert.equal(await page.getByTestId("interrupt").count(), 0);
      assert.deepEqual(runBody(requests, thread, 1).command, {
        resume: { decisions: [{ type: "reject", message: "Not now, thanks." }] },
      });
      assert.deepEqual(await renderedMessages(page), [
        { type: "human", text: "what is 2+3?" },
        { type: "ai", text: "" },
        { type: "tool", text: "calculator → Not now, thanks." },
        { type: "ai", text: "Cancelled: the calculator was not run." },
      ]);
      const tool = (await api("GET", `/threads/${thread}/state`)).values.messages[2];
      assert.equal(tool.status, "error");

      // The history is valid: the next turn on the thread asks again and runs when approved.
      await askApproval(page, "and 2**5?", "2**5");
      await page.getByTestId("approve").click();
      await waitForAiText(page, "The result is 32.");
      await waitIdle(page);
      assert.equal(threadFromUrl(page), thread);
      assert.deepEqual((await listRuns(thread)).map((r) => r.status), ["success", "success", "success", "success"]);
    });
  });

  // useStream itself console.error()s the StreamError of a failed run: that one is expected.
  const FAIL_LOGGED = [/^console\.error: .*deliberate failure: break please/];

  test("shows a run's error, live and after a reload", async () => {
    await onPage(
      "error",
      "?assistant=fail",
      async ({ page, requests }) => {
        await send(page, "break please");
        const error = page.getByTestId("error");
        await error.waitFor();
        await waitIdle(page);
        assert.equal(await error.innerText(), "ValueError: deliberate failure: break please");
        const thread = threadFromUrl(page);
        threads.error = thread;
        const runs = await listRuns(thread);
        assert.deepEqual(runs.map((r) => r.status), ["error"]);

        // After showing the error useStream re-joins the run at once with Last-Event-ID: -1; that
        // replay withholds the terminal error it has already shown (design.md 4), so the join ends
        // cleanly and useStream drops its rejoin key. A reload then shows the error from
        // GET /state (tasks[-1].error): no join, no new run.
        const rejoin = await poll("the -1 re-join after the error", () =>
          requests.find((r) => r.method === "GET" && r.path === `/threads/${thread}/runs/${runs[0].run_id}/stream`),
        );
        assert.equal(rejoin.headers["last-event-id"], "-1");
        await poll("the rejoin key to be dropped", () =>
          page.evaluate((t) => sessionStorage.getItem(`lg:stream:${t}`) === null, thread),
        );
        assert.equal(await error.innerText(), "ValueError: deliberate failure: break please");

        const reloadedAt = Date.now();
        await page.reload();
        await page.getByTestId("error").waitFor();
        await waitIdle(page);
        assert.equal(await page.getByTestId("error").innerText(), "ValueError: deliberate failure: break please");
        assert.deepEqual(await renderedMessages(page), [{ type: "human", text: "break please" }]);
        const after = requests.filter((r) => r.at >= reloadedAt && r.path.includes("/runs"));
        assert.deepEqual(after.map((r) => `${r.method} ${r.path}`), [], "no join and no run after the reload");
        assert.equal((await listRuns(thread)).length, 1);
      },
      { allow: FAIL_LOGGED },
    );
  });

  test("shows a failed thread's error when opened in a new tab (from GET /state)", async () => {
    await onPage("error-new-tab", `?assistant=fail&thread=${threads.error}`, async ({ page, requests }) => {
      const error = page.getByTestId("error");
      await error.waitFor();
      // The text comes from tasks[-1].error of GET /threads/{id}/state (checked below).
      assert.match(await error.innerText(), /deliberate failure: break please/);
      assert.deepEqual(await renderedMessages(page), [{ type: "human", text: "break please" }]);
      assert.equal(requests.filter((r) => r.path.includes("/runs")).length, 0, "no join, no run");
    });
  });

  test(
    "GET /state of a failed thread names the exception like the live error event",
    async () => {
      const state = await api("GET", `/threads/${threads.error}/state`);
      assert.deepEqual(JSON.parse(state.tasks.at(-1).error), {
        error: "ValueError",
        message: "deliberate failure: break please",
      });
    },
  );

  test("works cross-origin with ?apiUrl= (CORS: preflight, Content-Location, re-join)", async () => {
    // The page from http://localhost:<port>, the API at http://127.0.0.1:<port>: two origins.
    const api = new URL(GATEWAY_URL);
    if (api.hostname !== "127.0.0.1") return;
    const origin = `http://localhost:${api.port}`;
    const query = `?assistant=slow_chat&delay=0.2&apiUrl=${encodeURIComponent(GATEWAY_URL)}`;
    await onPage(
      "cross-origin",
      query,
      async ({ page, requests }) => {
        await send(page, SLOW_TEXT);
        await page.getByTestId("run-id").waitFor(); // only readable if Content-Location is exposed
        const thread = threadFromUrl(page);
        assert.ok(requests.some((r) => r.method === "POST" && r.url.startsWith(`${GATEWAY_URL}/threads/`)));
        await page.waitForFunction(() =>
          document.querySelector('[data-testid="message"][data-type="ai"] [data-testid="message-text"]'),
        );
        await page.reload(); // the re-join sends Last-Event-ID: a preflighted header
        await waitForAiText(page, SLOW_ANSWER);
        await waitIdle(page);
        assert.deepEqual(await renderedMessages(page), [
          { type: "human", text: SLOW_TEXT },
          { type: "ai", text: SLOW_ANSWER },
        ]);
        assert.ok(requests.some((r) => r.method === "GET" && r.headers["last-event-id"] === "-1"));
        assert.equal((await listRuns(thread)).length, 1);
      },
      { origin },
    );
  });

  test("the thread list shows threads newest first and switches between them", async () => {
    const tab = await onPage("threads", "", async ({ page }) => {
      const items = page.getByTestId("thread-item");
      await items.first().waitFor();
      const shown = await items.evaluateAll((els) => els.map((el) => el.dataset.threadId));
      const found = await api("POST", "/threads/search", { limit: shown.length, sort_by: "created_at", sort_order: "desc" });
      assert.deepEqual(shown, found.map((t) => t.thread_id), "same order as POST /threads/search desc");
      const created = found.map((t) => Date.parse(t.created_at));
      assert.deepEqual(created, [...created].sort((a, b) => b - a), "newest first");
      const pos = (id) => shown.indexOf(id);
      assert.ok(pos(threads.error) >= 0 && pos(threads.error) < pos(threads.approval));
      assert.ok(pos(threads.approval) < pos(threads.chat), "created later, listed higher");

      await page.locator(`[data-testid="thread-item"][data-thread-id="${threads.approval}"]`).click();
      await waitForAiText(page, "The result is 84.");
      assert.equal(threadFromUrl(page), threads.approval);
      assert.equal(await page.getByTestId("assistant").inputValue(), "approval_agent");

      await page.locator(`[data-testid="thread-item"][data-thread-id="${threads.chat}"]`).click();
      await waitForAiText(page, "The result is 1000.");
      assert.equal(threadFromUrl(page), threads.chat);
      assert.equal(await page.getByTestId("assistant").inputValue(), "chat_agent");
      assert.equal((await renderedMessages(page)).length, 8);
      if (process.env.UPDATE_DOCS_SCREENSHOT === "1") await page.screenshot({ path: DOCS_SCREENSHOT });

      await page.getByTestId("new-thread").click();
      assert.equal(threadFromUrl(page), null);
      assert.equal((await renderedMessages(page)).length, 0);
    });
    assert.ok(tab);
  });
});
