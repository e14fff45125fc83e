// The chat page against a gateway that requires an API key (auth.api_keys), and against one
// guarded by custom auth (examples/auth.py, whose tokens also come as X-Api-Key): opened with
// ?apiKey=<key>, it sends the key with every request (X-Api-Key), drops it from the address bar,
// keeps it across a reload, and the chat works. Skipped when GATEWAY_KEYED_URL is not set.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { launchBrowser, openPage, send, waitForAiText, waitIdle } from "./helpers.mjs";

const CASES = [
  ["api_keys", process.env.GATEWAY_KEYED_URL, process.env.GATEWAY_API_KEY],
  ["custom auth", process.env.GATEWAY_AUTH_URL, process.env.GATEWAY_AUTH_KEY],
].map(([name, url, key]) => [name, (url ?? "").replace(/\/+$/, ""), key ?? ""]);
const ANY_GATEWAY = CASES.some(([, url]) => url);
let browser;

before(async () => {
  if (ANY_GATEWAY) browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

for (const [name, KEYED, KEY] of CASES) {
  test(`${name}: ?apiKey= is sent on every request and survives a reload`, { skip: !KEYED, timeout: 60_000 }, async () => {
    const { context, page, requests } = await openPage(browser, `/?apiKey=${encodeURIComponent(KEY)}`, {
      origin: KEYED,
    });
    try {
      assert.ok(!page.url().includes("apiKey"), page.url()); // not left in the address bar
      await send(page, "what is 12*(3+4)?");
      await waitForAiText(page, "The result is 84.", 20_000);
      await waitIdle(page);
      const api = requests.filter((r) => !r.path.startsWith("/ui"));
      assert.ok(api.length >= 2, JSON.stringify(api.map((r) => r.path)));
      for (const r of api) assert.equal(r.headers["x-api-key"], KEY, `${r.method} ${r.path}`);
      await page.reload();
      await page.getByTestId("input").waitFor();
      await waitForAiText(page, "The result is 84.", 20_000); // the thread reloads with the key
      const unkeyed = await fetch(`${KEYED}/threads/search`, { method: "POST", body: "{}" });
      assert.equal(unkeyed.status, 401);
    } finally {
      await context.close();
    }
  });
}

test("the header's key button gives a key to a page opened without one", { skip: !CASES[0][1], timeout: 60_000 }, async () => {
  const [, url, key] = CASES[0];
  const { context, page, requests } = await openPage(browser, "/", { origin: url });
  try {
    const button = page.getByTestId("api-key");
    assert.equal(await button.getAttribute("data-has-key"), "false");
    page.once("dialog", (dialog) => dialog.accept(key));
    await Promise.all([page.waitForEvent("load"), button.click()]);
    await page.getByTestId("input").waitFor();
    assert.equal(await page.getByTestId("api-key").getAttribute("data-has-key"), "true");
    const before = requests.length;
    await send(page, "what is 12*(3+4)?");
    await waitForAiText(page, "The result is 84.", 20_000);
    await waitIdle(page);
    const api = requests.slice(before).filter((r) => !r.path.startsWith("/ui"));
    assert.ok(api.length >= 1);
    for (const r of api) assert.equal(r.headers["x-api-key"], key, `${r.method} ${r.path}`);
    // and clearing it: the next requests go without one (401s)
    page.once("dialog", (dialog) => dialog.accept(""));
    await Promise.all([page.waitForEvent("load"), page.getByTestId("api-key").click()]);
    assert.equal(await page.getByTestId("api-key").getAttribute("data-has-key"), "false");
  } finally {
    await context.close();
  }
});
