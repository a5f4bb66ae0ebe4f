// #34: every screen's default view in plain words, in the browser door (`sinkchat serve` +
// Debian's Chromium), in English and in French (the system's language picks the table): the
// rendered text holds none of tests/jargon.json; the engineer's words are under Advanced
// (Settings) and Details (Models, the gauge), where they belong. The Models screen recommends
// one model for this computer and says what this computer has. Screenshots of each screen in
// French, both themes (UPDATE_SCREENSHOTS=1 writes them to docs/screenshots).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { serve, launchChromium, ROOT } from "./serve.mjs";
import { findJargon } from "../jargon.mjs";

let server, browser;
before(async () => {
  server = await serve();
  browser = await launchChromium();
});
after(async () => { await browser?.close(); await server?.stop(); });

/** The text a person sees: what is rendered (closed Details and hidden parts are not), less
 *  the messages themselves (the model's words are its own, not the app's). */
const seen = (page) => page.evaluate(() => {
  const hide = document.createElement("style");
  hide.textContent = ".message .body { display: none !important; }";
  document.head.append(hide);
  const text = document.body.innerText;
  hide.remove();
  return text;
});

async function shoot(page, name) {
  const png = await page.screenshot();
  mkdirSync(join(ROOT, "target/screens"), { recursive: true });
  writeFileSync(join(ROOT, "target/screens", `${name}.png`), png);
  if (process.env.UPDATE_SCREENSHOTS) writeFileSync(join(ROOT, "docs/screenshots", `${name}.png`), png);
}

async function screens(locale, scheme, visit) {
  const context = await browser.newContext({ locale, colorScheme: scheme, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  try {
    const settings = (await server.command("get_settings")).body;
    assert.equal((await server.command("save_settings", { settings: { ...settings, welcomed: false } })).status, 200);
    await page.goto(`${server.url}/`);
    await page.waitForFunction(() => document.body.dataset.booted === "1");
    await page.waitForSelector("#welcome:not([hidden])");
    await visit(page, "welcome");
    await page.click("#welcome-start");
    await page.waitForSelector("#welcome", { state: "hidden" });

    await page.click("#new-chat");
    await page.fill("#message-input", locale.startsWith("fr") ? "Dis bonjour en cinq mots." : "Say hello in five words.");
    await page.click("#send-button");
    await page.waitForSelector("#messages .message.assistant.complete, #messages .message.assistant.stopped", { timeout: 120_000 });
    await page.waitForFunction(() => !/…/.test(document.getElementById("status").textContent));
    await visit(page, "chat");

    await page.click("#views button[data-view=models]");
    await page.waitForSelector("#catalog li[data-fit]");
    await page.waitForFunction(() => document.getElementById("models-free").textContent !== "");
    await visit(page, "models");

    await page.click("#views button[data-view=settings]");
    await page.waitForFunction(() => document.getElementById("set-window").value !== "");
    await visit(page, "settings");
  } finally {
    await context.close();
  }
  assert.deepEqual(errors, []);
}

test("no screen's default view speaks jargon; Advanced and Details hold it", { timeout: 300_000 }, async () => {
  const where = {};
  await screens("en-US", "light", async (page, screen) => {
    assert.deepEqual(findJargon(await seen(page)), [], `${screen}'s default view`);
    if (screen === "chat") {
      // The gauge's counts are under its Details.
      await page.evaluate(() => document.querySelectorAll(".gauge-wrap details, #gauge-details").forEach((d) => { d.open = true; }));
      where.chat = findJargon(await seen(page));
      await page.evaluate(() => document.querySelectorAll(".gauge-wrap details, #gauge-details").forEach((d) => { d.open = false; }));
    }
    if (screen === "models") {
      // One model recommended, first, and this computer's memory stated.
      assert.equal(await page.locator("#catalog li[data-fit=best]").count(), 1);
      assert.equal(await page.getAttribute("#catalog li:first-child", "data-fit"), "best");
      assert.match(await page.textContent("#models-free"), /This computer: [\d.]+ GB of memory/);
      assert.match(await page.textContent("#catalog li:first-child"), /Best for this computer/);
      assert.match(await page.textContent("#catalog li:first-child"), /needs about [\d.]+ (MB|GB) of memory/);
      await page.evaluate(() => document.querySelectorAll("#catalog details").forEach((d) => { d.open = true; }));
      where.models = findJargon(await seen(page));
    }
    if (screen === "settings") {
      assert.equal(await page.isChecked("input[name=style][value=balanced]"), true, "a new install reads Balanced");
      assert.match(await page.locator("#set-keep option:checked").textContent(), /the last 1,500 words/);
      await page.click("#advanced-settings summary");
      where.settings = findJargon(await seen(page));
    }
  });
  assert.ok(where.chat.some((f) => /token|evict/i.test(f)), `the gauge's Details: ${where.chat}`);
  assert.ok(where.models.some((f) => /weight-type code/.test(f)), `a card's Details: ${where.models}`);
  for (const w of ["top-k", "top-p", "seed", "sink"]) {
    assert.ok(where.settings.some((f) => f.toLowerCase().includes(`"${w}`)), `Advanced holds ${w}: ${where.settings}`);
  }
});

test("an answer style sets the stated values; a value of one's own is kept as it is", { timeout: 120_000 }, async () => {
  const page = await browser.newPage();
  const before = (await server.command("get_settings")).body;
  try {
    await page.goto(`${server.url}/`);
    await page.waitForFunction(() => document.body.dataset.booted === "1");
    if (await page.locator("#welcome").isVisible()) await page.click("#welcome-start");
    await page.click("#views button[data-view=settings]");
    await page.waitForFunction(() => document.getElementById("set-window").value !== "");
    await page.check("input[name=style][value=precise]");
    await page.selectOption("#set-keep", "4096");
    await page.click("#save-settings");
    await page.waitForFunction(() => document.getElementById("settings-unsaved").hidden);
    const s = (await server.command("get_settings")).body;
    assert.equal(s.sampling.temperature, 0.2);
    assert.equal(s.cache.sinks + s.cache.window, 4096);
    assert.equal(s.sampling.seed, before.sampling.seed, "what the style does not set stays");
    // A temperature of one's own (Advanced) reads as "your own mix", and saving keeps it.
    await page.click("#advanced-settings summary");
    await page.fill("#set-temperature", "0.55");
    assert.equal(await page.isChecked("input[name=style][value=own]"), true);
    await page.click("#save-settings");
    await page.waitForFunction(() => document.getElementById("settings-unsaved").hidden);
    assert.equal((await server.command("get_settings")).body.sampling.temperature, 0.55);
  } finally {
    await server.command("save_settings", { settings: before });
    await page.close();
  }
});

for (const scheme of ["light", "dark"]) {
  test(`French, chosen by the system's language, on every screen (${scheme} theme)`, { timeout: 300_000 }, async () => {
    await screens("fr-FR", scheme, async (page, screen) => {
      assert.equal(await page.getAttribute("html", "lang"), "fr");
      const text = await seen(page);
      assert.deepEqual(findJargon(text), [], `${screen}'s default view in French`);
      assert.match(text, /Réglages/, screen);
      for (const english of ["Settings", "New chat", "Download", "Start chatting", "Best for this computer"]) {
        assert.ok(!text.includes(english), `${screen}: "${english}" left in English`);
      }
      if (screen === "models") {
        assert.match(text, /Le meilleur pour cet ordinateur/);
        // Sizes in French units, with a decimal comma where there is one.
        assert.match(await page.textContent("#models-free"), /\d+(,\d)? Go/);
        assert.ok(!/\d (MB|GB|bytes)\b/.test(text), "sizes left in English units");
        for (const c of (await server.command("models_overview")).body.catalog) {
          assert.ok(!text.includes(c.description), `${c.id}'s description left in English`);
        }
      }
      await shoot(page, `${screen}-fr-${scheme}`);
    });
  });
}
