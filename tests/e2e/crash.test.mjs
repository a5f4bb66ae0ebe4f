// End-to-end: SIGKILL the real app in the middle of a reply, twenty times in a row, in
// a fresh chat each time. Afterwards every user message is there, every partial reply
// is there with the text saved while it streamed and is marked interrupted, and SQLite's
// integrity check says ok.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Driver, appPids } from "./webdriver.mjs";

const root = resolve(import.meta.dirname, "../..");
const app = process.env.SINKCHAT_APP ?? join(root, "target/debug/sinkchat-app");
const model = process.env.SINKCHAT_TEST_MODEL ?? join(root, ".data/models/SmolLM2-135M-Instruct.Q4_1.gguf");
const ROUNDS = Number(process.env.SINKCHAT_CRASH_ROUNDS ?? 20);

function sql(db, query) {
  const out = execFileSync("sqlite3", ["-json", db, query], { encoding: "utf8" });
  return out.trim() ? JSON.parse(out) : [];
}

/** PIDs of the app processes this test started: this build, with this test's data folder. */
test(`SIGKILL mid-reply ${ROUNDS} times: nothing saved is lost`, { timeout: 1_200_000 }, async () => {
  assert.ok(existsSync(model), `model missing at ${model}`);
  const data = mkdtempSync(join(tmpdir(), "sinkchat-crash-"));
  const db = join(data, "chats.db");
  const env = { SINKCHAT_DATA_DIR: data, SINKCHAT_MODEL: model };
  const killed = []; // { id, shown }: the reply cut off in each round
  let sent = 0;
  let lateKills = 0;
  let seenId = 0; // the newest reply already accounted for
  for (let round = 0; round < ROUNDS; round++) {
    const d = await Driver.start({ app, env });
    try {
      await d.waitFor("the model to load", async () => (await d.text("#status")).includes("CPU"), 120_000);
      if (round > 0) {
        // The chat of the last round is listed, and its cut-off reply is shown as such.
        await d.waitFor("the conversation list", async () => (await d.findAll("#conversation-list button.open")).length === round, 20_000);
        await d.click("#conversation-list li:first-child button.open");
        await d.waitFor("the old messages", async () => (await d.findAll(".message.assistant")).length >= 1, 20_000);
        const last = await d.exec("const m = [...document.querySelectorAll('.message.assistant')].pop(); return m.className;");
        if (killed.at(-1)?.id === seenId) assert.match(last, /interrupted/, `round ${round}: ${last}`);
        // A fresh chat each round: a tiny model shown a history of cut-off replies learns to
        // cut its own replies short, and this test needs replies long enough to cut.
        await d.click("#new-chat");
        await d.waitFor("an empty chat", async () => (await d.findAll(".message")).length === 0, 20_000);
      }
      // Send, and kill as soon as part of the reply is saved. A reply that ends before that
      // (a short answer) is left complete, and the round asks again.
      let cut = null;
      for (let attempt = 0; attempt < 5 && !cut; attempt++) {
        await d.type("#message-input", `Round ${round}.${attempt}: write a long story about a lighthouse keeper and a storm, in many paragraphs.`);
        await d.click("#send-button");
        sent++;
        cut = await d.waitFor("a partial or finished reply", async () => {
          const rows = sql(db, "SELECT m.id, m.content, m.status FROM messages m WHERE role = 'assistant' ORDER BY id DESC LIMIT 1");
          if (!rows.length || rows[0].id <= seenId) return null;
          const r = rows[0];
          if (r.status === "complete") return { done: true, id: r.id };
          if (r.content.length < 8) return null;
          const shown = await d.exec("const m = document.querySelector('.message.assistant.streaming .body'); return m ? m.textContent : '';");
          return { id: r.id, shown };
        }, 60_000);
        seenId = cut.id;
        if (cut.done) {
          cut = null;
          await d.waitFor("the send button", async () => !(await d.exec("return document.getElementById('send-button').hidden")), 10_000);
        }
      }
      assert.ok(cut, "no reply could be caught mid-stream");
      const pids = appPids(app, data);
      assert.ok(pids.length >= 1, "the app process was not found");
      for (const pid of pids) process.kill(pid, "SIGKILL");
      // The reply may have ended in the instant between the check and the kill: then this
      // round caught nothing mid-stream and is run again.
      const [{ status }] = sql(db, `SELECT status FROM messages WHERE id = ${cut.id}`);
      if (status === "streaming") killed.push(cut);
      else { assert.equal(status, "complete"); lateKills++; round--; }
      assert.ok(lateKills < 5, "the reply kept ending before the kill");
    } finally {
      await d.quit();
    }
    assert.deepEqual(appPids(app, data), [], "the app survived SIGKILL");
  }
  // One more start: the app marks the last cut-off reply and opens normally.
  const d = await Driver.start({ app, env });
  try {
    await d.waitFor("the model to load", async () => (await d.text("#status")).includes("CPU"), 120_000);
  } finally {
    await d.quit();
  }
  const users = sql(db, "SELECT content FROM messages WHERE role = 'user' ORDER BY id");
  assert.equal(users.length, sent, "every user message is there");
  assert.ok(users.every((u) => /^Round \d+\.\d+:/.test(u.content)));
  const replies = sql(db, "SELECT id, content, status FROM messages WHERE role = 'assistant' ORDER BY id");
  assert.equal(replies.length, sent);
  assert.equal(killed.length, ROUNDS);
  for (const [i, k] of killed.entries()) {
    const r = replies.find((x) => x.id === k.id);
    assert.equal(r.status, "interrupted", `reply cut in round ${i}`);
    assert.ok(r.content.length >= 8, `reply ${i} lost its text: ${JSON.stringify(r.content)}`);
    // What was saved and what was on screen at the kill agree (one may be a little ahead).
    const a = r.content, b = k.shown;
    assert.ok(a.startsWith(b) || b.startsWith(a), `reply ${i}: saved ${JSON.stringify(a.slice(0, 80))} vs shown ${JSON.stringify(b.slice(0, 80))}`);
  }
  // Replies not cut off finished normally.
  for (const r of replies) if (!killed.some((k) => k.id === r.id)) assert.equal(r.status, "complete");
  assert.deepEqual(sql(db, "PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
  assert.equal(sql(db, "SELECT count(*) AS n FROM conversations")[0].n, ROUNDS);
});
