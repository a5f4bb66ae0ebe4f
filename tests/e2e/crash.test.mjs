// End-to-end: SIGKILL the real app in the middle of a reply, twenty times in a row, continuing
// the same conversation each time. Afterwards every user message is there, every partial reply
// is there with the text saved while it streamed and is marked interrupted, and SQLite's
// integrity check says ok.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Driver } from "./webdriver.mjs";

const root = resolve(import.meta.dirname, "../..");
const app = process.env.SINKCHAT_APP ?? join(root, "target/debug/sinkchat-app");
const model = process.env.SINKCHAT_TEST_MODEL ?? join(root, ".data/models/SmolLM2-135M-Instruct.Q4_1.gguf");
const ROUNDS = Number(process.env.SINKCHAT_CRASH_ROUNDS ?? 20);

function sql(db, query) {
  const out = execFileSync("sqlite3", ["-json", db, query], { encoding: "utf8" });
  return out.trim() ? JSON.parse(out) : [];
}

/** PIDs of running app processes started from this build. */
function appPids() {
  try {
    return execFileSync("pgrep", ["-f", app], { encoding: "utf8" }).trim().split("\n").filter(Boolean).map(Number);
  } catch { return []; }
}

test(`SIGKILL mid-reply ${ROUNDS} times: nothing saved is lost`, { timeout: 1_200_000 }, async () => {
  assert.ok(existsSync(model), `model missing at ${model}`);
  assert.deepEqual(appPids(), [], "another SinkChat is running");
  const data = mkdtempSync(join(tmpdir(), "sinkchat-crash-"));
  const db = join(data, "chats.db");
  const env = { SINKCHAT_DATA_DIR: data, SINKCHAT_MODEL: model };
  const shown = [];
  for (let round = 0; round < ROUNDS; round++) {
    const d = await Driver.start({ app, env });
    try {
      await d.waitFor("the model to load", async () => (await d.text("#status")).includes("CPU"), 120_000);
      if (round > 0) {
        // Continue the same conversation (its cache is rebuilt from the transcript).
        await d.waitFor("the conversation list", async () => (await d.findAll("#conversation-list button.open")).length === 1, 20_000);
        await d.click("#conversation-list button.open");
        await d.waitFor("the old messages", async () => (await d.findAll(".message.user")).length === round, 20_000);
        // The reply cut off by the last kill is shown as such.
        const last = await d.exec("const m = [...document.querySelectorAll('.message.assistant')].pop(); return m.className;");
        assert.match(last, /interrupted/, `round ${round}: ${last}`);
      }
      await d.type("#message-input", `Round ${round}: write a long story about a lighthouse keeper and a storm, in many paragraphs.`);
      await d.click("#send-button");
      // Wait until part of the reply is on screen and saved in the database, then kill.
      const text = await d.waitFor("a partial reply saved", async () => {
        const rows = sql(db, "SELECT content, status FROM messages WHERE role = 'assistant' ORDER BY id DESC LIMIT 1");
        if (!rows.length || rows[0].content.length < 40) return null;
        assert.equal(rows[0].status, "streaming");
        return d.exec("const m = document.querySelector('.message.assistant.streaming .body'); return m ? m.textContent : null;");
      }, 60_000);
      const pids = appPids();
      assert.ok(pids.length >= 1, "the app process was not found");
      for (const pid of pids) process.kill(pid, "SIGKILL");
      shown.push(text);
    } finally {
      await d.quit();
    }
    assert.deepEqual(appPids(), [], "the app survived SIGKILL");
  }
  // One more start: the app marks the last cut-off reply and opens normally.
  const d = await Driver.start({ app, env });
  try {
    await d.waitFor("the model to load", async () => (await d.text("#status")).includes("CPU"), 120_000);
  } finally {
    await d.quit();
  }
  const users = sql(db, "SELECT content FROM messages WHERE role = 'user' ORDER BY id");
  assert.equal(users.length, ROUNDS);
  users.forEach((u, i) => assert.match(u.content, new RegExp(`^Round ${i}:`)));
  const replies = sql(db, "SELECT content, status FROM messages WHERE role = 'assistant' ORDER BY id");
  assert.equal(replies.length, ROUNDS);
  replies.forEach((r, i) => {
    assert.equal(r.status, "interrupted", `reply ${i}`);
    assert.ok(r.content.length >= 40, `reply ${i} lost its text: ${JSON.stringify(r.content)}`);
    // What was saved and what was on screen at the kill agree (one may be a little ahead).
    const a = r.content, b = shown[i] ?? "";
    assert.ok(a.startsWith(b) || b.startsWith(a), `reply ${i}: saved ${JSON.stringify(a.slice(0, 80))} vs shown ${JSON.stringify(b.slice(0, 80))}`);
  });
  assert.deepEqual(sql(db, "PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
  assert.equal(sql(db, "SELECT count(*) AS n FROM conversations")[0].n, 1);
});
