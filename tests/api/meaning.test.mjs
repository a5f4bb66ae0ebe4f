// Finding by meaning (#36) in Chromium against a real `sinkchat serve`, with the meaning model
// in its data folder as the set-up installs it: a chat imported from a file (so its messages
// were saved before they had vectors) is read in the background, Settings says how far that
// has come, and the sidebar search lists the message found by meaning under its own heading,
// below the word matches; a hit opens its chat.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { serve, launchChromium, openPage, ROOT } from "./serve.mjs";

let server, browser;
before(async () => {
  server = await serve();
  // Before anything needs it: the model is loaded on the first message that does.
  mkdirSync(join(server.dir, "models/meaning"), { recursive: true });
  symlinkSync(join(ROOT, ".data/models/meaning/all-MiniLM-L6-v2"), join(server.dir, "models/meaning/all-MiniLM-L6-v2"));
  browser = await launchChromium();
});
after(async () => { await browser?.close(); await server?.stop(); });

const say = (role, content, i) => ({ role, content, status: "complete", created_at: i });

test("search lists messages found by meaning under the word matches", { timeout: 300_000 }, async () => {
  const file = {
    format: "sinkchat-export", version: 1, exported_at: 0,
    conversations: [
      { title: "Family news", model: "m", system_prompt: "", settings: {}, created_at: 0, updated_at: 0,
        messages: [
          say("user", "My sister's wedding is on the 17th of October in Valencia.", 0),
          say("assistant", "How lovely! Valencia in October should be warm.", 1),
          say("user", "The ceremony itself is small, but the party is big.", 2),
        ] },
      { title: "Garden", model: "m", system_prompt: "", settings: {}, created_at: 3, updated_at: 3,
        messages: [
          say("user", "I grow zucchini and beans in my small vegetable garden.", 3),
          say("assistant", "Zucchini like sun and plenty of water.", 4),
        ] },
    ],
  };
  const imported = await server.command("import_conversations", { text: JSON.stringify(file) });
  assert.equal(imported.status, 200, JSON.stringify(imported.body));
  let state;
  for (let i = 0; i < 600; i++) {
    state = (await server.command("meaning_state")).body;
    if (state.state === "ready" && state.waiting === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(state, { state: "ready", done: 5, waiting: 0 });

  const page = await openPage(browser, server.url);
  // Words first (the message that says "wedding"), then, under their heading, the messages
  // about it in other words: the ceremony, never the word match again.
  await page.fill("#search", "wedding");
  await page.waitForSelector("#search-results .hits-heading", { timeout: 10_000 });
  const items = await page.locator("#search-results li").evaluateAll((lis) => lis.map((li) => ({
    cls: li.className, text: li.textContent,
  })));
  const heading = items.findIndex((i) => i.cls === "hits-heading");
  assert.equal(items[heading].text, "Found by meaning");
  assert.ok(heading >= 1, JSON.stringify(items));
  assert.match(items[0].text, /wedding is on the 17th/, "the word match comes first");
  const byMeaning = items.slice(heading + 1);
  assert.ok(byMeaning.length >= 1 && byMeaning.every((i) => i.cls === "by-meaning"), JSON.stringify(items));
  assert.ok(byMeaning.some((i) => /ceremony itself/.test(i.text)), JSON.stringify(items));
  assert.ok(!byMeaning.some((i) => /wedding is on the 17th/.test(i.text)), "never listed twice");
  assert.ok(!byMeaning.some((i) => /zucchini/i.test(i.text)), "nothing about the garden");
  // A hit found by meaning opens its chat.
  await page.locator("#search-results .by-meaning .hit", { hasText: "ceremony itself" }).click();
  await page.waitForFunction(() => [...document.querySelectorAll("#messages .message.user")].some((m) => m.textContent.includes("ceremony itself")));

  // Settings (under Advanced) says every message is ready.
  await page.click("#views [data-view=settings]");
  await page.click("#advanced-settings summary");
  const line = page.locator("#meaning-state");
  await page.waitForFunction(() => document.getElementById("meaning-state").textContent.length > 0);
  assert.match(await line.textContent(), /Finding by meaning: all 5 messages ready/);
  assert.deepEqual(page.errors, []);
});
