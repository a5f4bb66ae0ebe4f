// #35 in the browser door (`sinkchat serve` + Debian's Chromium): a person points SinkChat at a
// model that a real llama.cpp server runs (built into .cache by the set-up, started here on
// 127.0.0.1 with the default model), chats with it as with any model, sees the gauge tell
// what the server took from its cache, and, when the server goes away, reads a sentence and
// loses nothing.
import { test, before, after } from "node:test";
import OpenAI from "openai";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { serve, launchChromium, openPage, ROOT, MODEL } from "./serve.mjs";

const CONTEXT = 1024;
let llama, llamaUrl, server, browser, page;

function freePort() {
  return new Promise((res) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => res(p)); });
  });
}

before(async () => {
  const port = await freePort();
  llamaUrl = `http://127.0.0.1:${port}`;
  const bin = process.env.SINKCHAT_LLAMACPP_BIN ?? join(ROOT, ".cache/llama.cpp/build/bin");
  llama = spawn(join(bin, "llama-server"), ["-m", join(ROOT, `.data/models/${MODEL}.gguf`), "-c", String(CONTEXT), "-np", "1", "-t", "2", "--host", "127.0.0.1", "--port", String(port)], { stdio: "ignore" });
  for (let i = 0; ; i++) {
    try { if ((await fetch(`${llamaUrl}/health`)).ok) break; } catch { /* not up yet */ }
    if (i > 600 || llama.exitCode !== null) throw new Error("llama-server did not start");
    await new Promise((r) => setTimeout(r, 200));
  }
  server = await serve();
  browser = await launchChromium();
  page = await openPage(browser, server.url);
});
after(async () => {
  await browser?.close();
  await server?.stop();
  llama?.kill();
});

test("Models: Check lists the server's model with its context, and Use makes it the model in use", async () => {
  await page.click("#views [data-view=models]");
  await page.click("#server-model summary");
  // A wrong address is a sentence, not a stack trace.
  await page.fill("#server-address", "http://127.0.0.1:1");
  await page.click("#server-check");
  await page.waitForSelector("#models-error:not([hidden])");
  assert.match(await page.locator("#models-error").textContent(), /can't be reached/);
  assert.ok(await page.locator("#server-use-form").isHidden());

  await page.fill("#server-address", llamaUrl);
  await page.click("#server-check");
  await page.waitForSelector("#server-use-form:not([hidden])");
  assert.ok(await page.locator("#server-models option").count() >= 1);
  assert.equal(await page.locator("#server-context").inputValue(), String(CONTEXT));
  assert.ok(await page.locator("#server-warning").isHidden(), "loopback: no warning");
  await page.click("#server-use");
  await page.waitForFunction(() => document.getElementById("models-active").textContent.startsWith("Using "));
  assert.match(await page.locator("#models-active").textContent(), new RegExp(`on the server at ${llamaUrl}`));
  const overview = (await server.command("models_overview")).body;
  assert.equal(overview.server.context, CONTEXT);
  assert.equal(overview.server.address, llamaUrl);
  assert.deepEqual(page.errors, []);
});

test("a chat on the server streams, is saved, and its gauge tells what the server reused", async () => {
  await page.click("#views [data-view=chat]");
  await page.click("#new-chat");
  for (const [i, text] of ["Name a fruit that is yellow.", "Name a fruit that is red."].entries()) {
    await page.fill("#message-input", text);
    await page.click("#send-button");
    await page.waitForFunction((n) => document.querySelectorAll("#messages .message.assistant.complete").length === n, i + 1, { timeout: 120_000 });
  }
  const replies = await page.locator("#messages .message.assistant .body").allTextContents();
  assert.equal(replies.length, 2);
  // The second request extended the first: the server took the start from its cache.
  const label = await page.locator("#gauge-text").textContent();
  const m = label.match(/server reused (\d+)\/(\d+) from its cache/);
  assert.ok(m, label);
  assert.ok(Number(m[1]) > 0 && Number(m[1]) <= Number(m[2]), label);
  const convs = (await server.command("list_conversations", { beforeUpdated: null, beforeId: null })).body;
  const msgs = (await server.command("get_messages", { conversationId: convs[0].id, beforeId: null })).body;
  assert.equal(msgs.length, 4);
  assert.equal(msgs[3].content.trim(), replies[1].trim());
  assert.equal(msgs[3].status, "complete");
  assert.deepEqual(page.errors, []);
});

test("the local OpenAI-compatible API answers with the server's model too", async () => {
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: server.key, maxRetries: 0 });
  const overview = (await server.command("models_overview")).body;
  const ids = (await client.models.list()).data.map((m) => m.id);
  assert.deepEqual(ids, [overview.server.model]);
  const r = await client.chat.completions.create({ model: overview.server.model, messages: [{ role: "user", content: "Name a colour." }], max_tokens: 12, temperature: 0 });
  assert.ok(r.choices[0].message.content.trim().length > 0);
  // The conversation it made is in the history, saved like any other.
  const convs = (await server.command("list_conversations", { beforeUpdated: null, beforeId: null })).body;
  const msgs = (await server.command("get_messages", { conversationId: convs[0].id, beforeId: null })).body;
  assert.equal(msgs[0].content, "Name a colour.");
  assert.equal(msgs[1].content.trim(), r.choices[0].message.content.trim());
});

test("the server goes away: a sentence in the chat, and the message stays", async () => {
  llama.kill();
  await new Promise((r) => llama.once("exit", r));
  await page.fill("#message-input", "Are you still there?");
  await page.click("#send-button");
  await page.waitForSelector("#messages .message.assistant.failed", { timeout: 60_000 });
  assert.match(await page.locator("#error-banner").textContent(), /can't be reached/);
  assert.match(await page.locator("#messages").textContent(), /Are you still there\?/);
  const convs = (await server.command("list_conversations", { beforeUpdated: null, beforeId: null })).body;
  const chat = convs.find((c) => c.title.startsWith("Name a fruit that is yellow"));
  const msgs = (await server.command("get_messages", { conversationId: chat.id, beforeId: null })).body;
  assert.equal(msgs.at(-2).content, "Are you still there?");
  assert.equal(msgs.at(-1).status, "failed");
  assert.deepEqual(page.errors, []);
});
