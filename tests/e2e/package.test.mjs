// The installed package: the .deb built by the Tauri bundler and installed with dpkg, started
// from /usr/bin under Xvfb the way a desktop starts it, with a fresh data folder and no model
// given: its first start installs the model it carries, and a chat gets a streamed reply.
// Run by `scripts/setup.sh test` after `dpkg -i` (SINKCHAT_APP=/usr/bin/sinkchat-app).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Driver } from "./webdriver.mjs";

const app = process.env.SINKCHAT_APP ?? "/usr/bin/sinkchat-app";
const sql = (db, q) => { const o = execFileSync("sqlite3", ["-json", db, q], { encoding: "utf8" }); return o.trim() ? JSON.parse(o) : []; };

test("the installed app starts offline on the model it carries and chats", { timeout: 300_000 }, async () => {
  assert.ok(existsSync(app), `${app} is not installed: build and install the .deb first`);
  const listing = execFileSync("dpkg", ["-L", "sink-chat"], { encoding: "utf8" });
  for (const f of ["/usr/bin/sinkchat-app", "/usr/share/applications/SinkChat.desktop", "SmolLM2-135M-Instruct.Q4_1.gguf"]) {
    assert.ok(listing.includes(f), `${f} is not in the package:\n${listing}`);
  }
  const desktop = readFileSync("/usr/share/applications/SinkChat.desktop", "utf8");
  assert.match(desktop, /^Exec=sinkchat-app/m);
  assert.match(desktop, /^Icon=sinkchat-app/m);
  const data = mkdtempSync(join(tmpdir(), "sinkchat-pkg-"));
  // No SINKCHAT_MODEL: the app must find its model by itself.
  delete process.env.SINKCHAT_MODEL;
  const env = { SINKCHAT_DATA_DIR: data };
  const d = await Driver.start({ app, env });
  try {
    await d.waitFor("the model to load", async () => d.exec("return document.getElementById('status').textContent.includes('CPU')"), 120_000);
    assert.match(await d.exec("return document.getElementById('status').textContent"), /SmolLM2 135M Instruct/);
    assert.ok(existsSync(join(data, "models/SmolLM2-135M-Instruct.Q4_1.gguf")), "the bundled model was not installed");
    await d.click("#new-chat");
    await d.exec("document.getElementById('message-input').value = 'Say hello in one short sentence.';");
    await d.click("#send-button");
    await d.waitFor("the reply", async () => d.exec(`const m = [...document.querySelectorAll('.message.assistant')].pop();
      return m && !m.classList.contains('streaming') && !document.getElementById('send-button').hidden && m.textContent.trim().length > 0`), 180_000);
  } finally { await d.quit(); }
  const rows = sql(join(data, "chats.db"), "SELECT role, status, length(content) AS n FROM messages ORDER BY id");
  assert.equal(rows.length, 2);
  assert.equal(rows[1].role, "assistant");
  assert.equal(rows[1].status, "complete");
  assert.ok(rows[1].n > 0);
});
