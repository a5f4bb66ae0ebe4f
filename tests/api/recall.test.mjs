// Recall in the UI (#19), in Chromium against a real `sinkchat serve` with a small window: a
// fact said early, talk until it leaves the model's window, then a question about it. The
// reply says it used recalled text (and explains on hover), the recalled message is marked,
// the gauge shows the recalled part, and both marks are drawn again when the chat is opened later.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { serve, launchChromium } from "./serve.mjs";

let server, browser;
before(async () => {
  server = await serve();
  const settings = (await server.command("get_settings")).body;
  const small = { ...settings, welcomed: true, cache: { ...settings.cache, sinks: 4, window: 128 }, sampling: { ...settings.sampling, max_tokens: 8, temperature: 0 } };
  assert.equal((await server.command("save_settings", { settings: small })).status, 200);
  browser = await launchChromium();
});
after(async () => { await browser?.close(); await server?.stop(); });

async function send(page, text) {
  const n = await page.locator("#messages .message.assistant").count();
  await page.fill("#message-input", text);
  await page.click("#send-button");
  await page.waitForFunction((n) => {
    const r = document.querySelectorAll("#messages .message.assistant");
    return r.length > n && !r[r.length - 1].classList.contains("streaming") && !document.getElementById("send-button").hidden;
  }, n, { timeout: 120_000 });
}

test("a question about a fact the window let go gets it back, and the window shows it", { timeout: 600_000 }, async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  await page.goto(`${server.url}/`);
  await page.waitForFunction(() => document.body.dataset.booted === "1");
  await send(page, "My cat is called Quokkamuffin.");
  const fact = await page.locator("#messages .message.user").first().getAttribute("data-id");
  // Talk until the memory line has passed the fact (the model's window begins after it), in
  // statements: they ask nothing, so they never recall.
  for (let i = 0; i < 30; i++) {
    await send(page, `Number ${i} is noted.`);
    const convs = (await server.command("list_conversations", { beforeUpdated: null, beforeId: null })).body;
    const mem = (await server.command("conversation_memory", { conversationId: convs[0].id })).body;
    if (mem.first_visible_message > Number(fact) + 1) break;
  }
  assert.equal(await page.locator(".recall-note").count(), 0, "nothing was recalled while telling numbers");
  await send(page, "What is my cat called?");
  const last = page.locator("#messages .message.assistant").last();
  assert.match(await last.locator(".recall-note").textContent(), /earlier message/);
  assert.match(await last.locator(".recall-note").getAttribute("title"), /left the model's memory window/);
  const factEl = page.locator(`#messages .message[data-id="${fact}"]`);
  assert.match(await factEl.getAttribute("class"), /recalled/);
  assert.match(await factEl.locator(".recalled-mark").textContent(), /Recalled/);
  // The gauge shows the recalled text as a part of its own, inside the window.
  const gauge = await page.evaluate(() => ({
    recalled: parseFloat(document.querySelector("#gauge .recalled").style.width),
    text: document.getElementById("gauge-text").textContent,
  }));
  assert.ok(gauge.recalled > 0, JSON.stringify(gauge));
  assert.match(gauge.text, /\d+ recalled/);
  // Opened again later: the same marks, from the transcript.
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.booted === "1");
  await page.locator("#conversation-list .open").first().click();
  await page.waitForSelector(`#messages .message[data-id="${fact}"].recalled .recalled-mark`);
  assert.equal(await page.locator("#messages .message.assistant .recall-note").count(), 1);
  assert.deepEqual(errors, []);
});
