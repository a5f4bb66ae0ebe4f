// End-to-end: the real SinkChat app under Xvfb, driven through tauri-driver and
// WebKitWebDriver. It sends a message, watches SmolLM2's reply stream in, and then reads both
// messages back from the SQLite file with the sqlite3 command-line tool.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync, existsSync, openSync, readSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Driver } from "./webdriver.mjs";

const root = resolve(import.meta.dirname, "../..");
const app = process.env.SINKCHAT_APP ?? join(root, "target/debug/sinkchat-app");
const model = process.env.SINKCHAT_TEST_MODEL ?? join(root, ".data/models/SmolLM2-135M-Instruct.Q4_1.gguf");

function sql(db, query) {
  const out = execFileSync("sqlite3", ["-json", db, query], { encoding: "utf8" });
  return out.trim() ? JSON.parse(out) : [];
}

async function withApp(env, fn) {
  const d = await Driver.start({ app, env });
  try { await fn(d); } finally { await d.quit(); }
}

test("send a message, see SmolLM2's reply stream in, find both in SQLite", { timeout: 300_000 }, async () => {
  assert.ok(existsSync(model), `model missing at ${model}: run scripts/setup.sh first`);
  const data = mkdtempSync(join(tmpdir(), "sinkchat-e2e-"));
  await withApp({ SINKCHAT_DATA_DIR: data, SINKCHAT_MODEL: model }, async (d) => {
    await d.waitFor("the model to load", async () => (await d.text("#status")).includes("CPU"), 120_000);

    // Bad input first: an empty message is refused in plain words, nothing is sent.
    await d.click("#send-button");
    assert.match(await d.text("#error-banner"), /Type a message first/);

    // A 1 MB message gets a clear error, and the text stays in the box.
    await d.exec("document.getElementById('message-input').value = 'x'.repeat(1 << 20);");
    await d.click("#send-button");
    await d.waitFor("the too-long error", async () => /too long/.test(await d.text("#error-banner")), 10_000);
    assert.equal(await d.exec("return document.getElementById('message-input').value.length"), 1 << 20);
    await d.exec("document.getElementById('message-input').value = '';");

    const question = "What is the capital of France? Answer in one sentence.";
    // Count how many times the reply's text grows while it streams.
    await d.exec(`window.__growths = 0; let last = 0;
      new MutationObserver(() => {
        const b = document.querySelector('.message.assistant .body');
        const n = b ? b.textContent.length : 0;
        if (n > last) { window.__growths++; last = n; }
      }).observe(document.getElementById('messages'), { subtree: true, childList: true, characterData: true });`);
    await d.type("#message-input", question);
    await d.click("#send-button");
    const reply = await d.waitFor("the finished reply", async () => {
      const r = await d.exec("const m = document.querySelector('.message.assistant.complete'); return m ? m.querySelector('.body').textContent : null;");
      return r && r.trim().length > 0 ? r : null;
    }, 180_000);
    assert.ok(reply.trim().length > 0);
    const growths = await d.exec("return window.__growths");
    assert.ok(growths >= 3, `the reply arrived in ${growths} piece(s), not streamed`);
    assert.match(await d.exec("return document.getElementById('gauge-text').textContent"), /pinned .* window .* seen/);
    // In words for everyone (#34); the token figures under Details.
    assert.match(await d.text("#gauge-words"), /Remembers about the last [\d,]+ words of this chat/);
    assert.doesNotMatch(await d.text("#gauge-words"), /token|sink|evict/i);

    const shot = await d.screenshot();
    assert.equal(shot.subarray(1, 4).toString(), "PNG");
    mkdirSync(join(root, "target/e2e"), { recursive: true });
    writeFileSync(join(root, "target/e2e/chat.png"), shot);

    const rows = sql(join(data, "chats.db"), "SELECT role, content, status FROM messages ORDER BY id");
    assert.equal(rows.length, 2, JSON.stringify(rows));
    assert.deepEqual([rows[0].role, rows[0].content, rows[0].status], ["user", question, "complete"]);
    assert.equal(rows[1].role, "assistant");
    assert.equal(rows[1].status, "complete");
    assert.equal(rows[1].content, reply);
    const [{ title }] = sql(join(data, "chats.db"), "SELECT title FROM conversations");
    assert.match(title, /capital of France/);
  });
});

test("no model file: the window says so in plain words and history still opens", { timeout: 120_000 }, async () => {
  const data = mkdtempSync(join(tmpdir(), "sinkchat-e2e-"));
  await withApp({ SINKCHAT_DATA_DIR: data, SINKCHAT_MODEL: join(data, "models/nothing-here.gguf") }, async (d) => {
    const msg = await d.waitFor("the error banner", async () => d.text("#error-banner"), 60_000);
    assert.match(msg, /no model is installed/i);
    // In words (#34): no path, no set-up script, and a way forward; and it can be closed.
    assert.doesNotMatch(msg, /\/|scripts|setup\.sh|os error/, msg);
    assert.match(msg, /Models/, msg);
    await d.click("#error-banner .banner-close");
    assert.equal(await d.exec("return document.getElementById('error-banner').hidden"), true);
    await d.type("#message-input", "hello?");
    await d.click("#send-button");
    await d.waitFor("a send error", async () => /no model is installed/i.test(await d.text("#error-banner")), 10_000);
    assert.equal(await d.exec("return document.getElementById('message-input').value"), "hello?");
  });
});

test("a truncated GGUF is reported as damaged, not a crash", { timeout: 120_000 }, async () => {
  const data = mkdtempSync(join(tmpdir(), "sinkchat-e2e-"));
  const bad = join(data, "truncated.gguf");
  const fd = openSync(model, "r");
  const buf = Buffer.alloc(5_000_000);
  readSync(fd, buf, 0, buf.length, 0);
  closeSync(fd);
  writeFileSync(bad, buf);
  await withApp({ SINKCHAT_DATA_DIR: data, SINKCHAT_MODEL: bad }, async (d) => {
    const msg = await d.waitFor("the error banner", async () => d.text("#error-banner"), 60_000);
    assert.match(msg, /truncated|corrupt|not a valid GGUF/i);
    assert.equal(await d.exec("return document.title"), "SinkChat");
  });
});
