// The same web UI in a browser, with no window: Playwright drives Debian's Chromium against a
// real `sinkchat serve` (HTTP + server-sent events instead of Tauri's IPC).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { serve, launchChromium } from "./serve.mjs";

let server, browser, page;
before(async () => {
  server = await serve();
  browser = await launchChromium();
  page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  page.errors = errors;
});
after(async () => { await browser?.close(); await server?.stop(); });

test("send a message, watch it stream, find it in the history, see the gauge move", async () => {
  await page.goto(`${server.url}/`);
  await page.click("#welcome-start");
  await page.waitForFunction(() => document.getElementById("welcome").hidden);
  const gauge = page.locator("#gauge");
  assert.equal(await gauge.getAttribute("aria-valuenow"), "0");

  // Sample the reply's text while it streams: it must grow in steps, not arrive at once.
  await page.fill("#message-input", "Tell me about zebras in three sentences.");
  await page.evaluate(() => {
    window.__lengths = [];
    const obs = new MutationObserver(() => {
      const r = document.querySelector("#messages .message.assistant .body");
      if (r) window.__lengths.push(r.textContent.length);
    });
    obs.observe(document.getElementById("messages"), { subtree: true, childList: true, characterData: true });
  });
  await page.click("#send-button");
  await page.waitForSelector("#messages .message.assistant.complete, #messages .message.assistant.stopped", { timeout: 120_000 });
  const lengths = await page.evaluate(() => window.__lengths);
  const distinct = new Set(lengths.filter((n) => n > 0));
  assert.ok(distinct.size >= 3, `the reply streamed in pieces (${[...distinct].join(",")})`);
  const reply = await page.locator("#messages .message.assistant .body").textContent();
  assert.ok(reply.trim().length > 0);

  // The gauge moved: the cache holds the turn.
  const filled = Number(await gauge.getAttribute("aria-valuenow"));
  assert.ok(filled > 0, `gauge at ${filled}`);
  assert.match(await page.locator("#gauge-text").textContent(), /\d/);

  // A new chat shows an empty gauge; back in this one, the gauge shows its memory again
  // (parked on disk when it was left, as it will come back).
  await page.click("#new-chat");
  await page.waitForFunction(() => document.getElementById("gauge").getAttribute("aria-valuenow") === "0");
  await page.locator("#conversation-list .open", { hasText: "Tell me about zebras" }).click();
  await page.waitForFunction((f) => document.getElementById("gauge").getAttribute("aria-valuenow") === String(f), filled);

  // In the history: the sidebar names the chat after the message, and search finds it.
  await page.waitForFunction(() => [...document.querySelectorAll("#conversation-list .open")].some((b) => b.textContent.startsWith("Tell me about zebras")));
  await page.fill("#search", "zebras");
  await page.waitForSelector("#search-results .hit", { timeout: 10_000 });
  assert.match(await page.locator("#search-results .hit mark").first().textContent(), /zebras/i);
  await page.click("#search-results .hit");
  await page.waitForFunction(() => document.querySelectorAll("#messages .message").length === 2);

  // The same chat is on disk, as the window would find it.
  const convs = (await server.command("list_conversations", { beforeUpdated: null, beforeId: null })).body;
  const zebras = convs.find((c) => c.title.startsWith("Tell me about zebras"));
  const msgs = (await server.command("get_messages", { conversationId: zebras.id, beforeId: null })).body;
  assert.equal(msgs[1].content.trim(), reply.trim());
  assert.deepEqual(page.errors, []);
});

test("a second message continues the chat in its live memory, and stop works", async () => {
  await page.fill("#message-input", "Write a very long poem about the sea.");
  await page.click("#send-button");
  await page.waitForFunction(() => (document.querySelector("#messages .message.assistant.streaming .body")?.textContent.length ?? 0) > 10, null, { timeout: 60_000 });
  await page.click("#stop-button");
  await page.waitForSelector("#messages .message.assistant.stopped", { timeout: 30_000 });
  assert.equal(await page.locator("#messages .message").count(), 4);
  const convs = (await server.command("list_conversations", { beforeUpdated: null, beforeId: null })).body;
  const msgs = (await server.command("get_messages", { conversationId: convs[0].id, beforeId: null })).body;
  assert.equal(msgs.at(-1).status, "stopped");
  assert.deepEqual(page.errors, []);
});

test("the page's commands answer only this computer's own pages", async () => {
  const post = (headers, body = "{}") => fetch(`${server.url}/api/app_status`, { method: "POST", headers, body });
  assert.equal((await post({ "content-type": "application/json" })).status, 200);
  // The page carries the window's content security policy.
  const page = await fetch(`${server.url}/`);
  const csp = page.headers.get("content-security-policy") ?? "";
  for (const d of ["object-src 'none'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'", "script-src 'self'"]) assert.ok(csp.includes(d), `${d} in ${csp}`);
  assert.equal(page.headers.get("x-content-type-options"), "nosniff");
  // Another web page (a cross-site form or fetch) cannot drive it.
  let r = await post({ "content-type": "application/json", origin: "https://evil.example" });
  assert.equal(r.status, 403);
  r = await post({ "content-type": "text/plain" });
  assert.equal(r.status, 415);
  // Bad input: plain words, nothing changes, the server goes on.
  r = await post({ "content-type": "application/json" }, "{not json");
  assert.equal(r.status, 400);
  assert.ok((await r.json()).message.length > 0);
  r = await fetch(`${server.url}/api/no_such_command`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
  assert.equal(r.status, 404);
  r = await fetch(`${server.url}/api/get_messages`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"conversationId": "x"}' });
  assert.equal(r.status, 400);
  assert.match((await r.json()).message, /conversationId/);
  assert.ok(server.alive());
});
