// Accessibility of every screen, measured rather than chosen by eye (#18): axe-core (the
// engine behind Lighthouse's and most browsers' audits) runs inside Debian's Chromium on the
// real UI served by a real `sinkchat serve`, against WCAG 2.0/2.1/2.2 A and AA, each screen in
// the light and the dark theme. Contrast, names, roles, labels, focusable scroll regions: zero
// violations allowed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { serve, launchChromium } from "./serve.mjs";

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"];

// A reply with every kind of Markdown the renderer makes: highlighted code, a table, a quote,
// links, inline code, so that their colours are measured too.
const RICH = [
  "## Summary",
  "Here is **bold**, *emphasis*, `inline code`, ~~struck~~ and [a link](https://example.com/docs).",
  "> A quoted line, in the muted colour.",
  "| name | value |\n|:--|--:|\n| sinks | 4 |\n| window | 2044 |",
  "```rust\nfn main() {\n    // a comment\n    let s = \"text\";\n    println!(\"{} {}\", s, 42);\n}\n```",
  "```python\ndef f(x):\n    return [i * 2 for i in range(x)]  # doubled\n```",
  "1. first\n2. second",
].join("\n\n");

let server, browser;
before(async () => {
  server = await serve();
  browser = await launchChromium();
  const file = {
    format: "sinkchat-export", version: 1, exported_at: 0, conversations: [{
      title: "Markdown sampler", created_at: 1, updated_at: 1,
      messages: [{ role: "user", content: "Show me some markdown", created_at: 1 }, { role: "assistant", content: RICH, created_at: 2 }],
    }],
  };
  const r = await server.command("import_conversations", { text: JSON.stringify(file) });
  assert.equal(r.status, 200, JSON.stringify(r.body));
});
after(async () => { await browser?.close(); await server?.stop(); });

async function audit(page, screen) {
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate((tags) => window.axe.run(document, { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] }), TAGS);
  const found = result.violations.map((v) => `${screen}: ${v.id} (${v.impact}): ${v.help}\n` +
    v.nodes.slice(0, 5).map((n) => `    ${n.target.join(" ")}: ${n.failureSummary.replace(/\s+/g, " ")}`).join("\n"));
  return { found, passes: result.passes?.length };
}

for (const scheme of ["light", "dark"]) {
  test(`every screen has zero WCAG A/AA violations in the ${scheme} theme`, { timeout: 300_000 }, async () => {
    const context = await browser.newContext({ colorScheme: scheme, bypassCSP: true, viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e));
    const violations = [];
    const check = async (screen) => violations.push(...(await audit(page, `${scheme}/${screen}`)).found);
    try {
      await page.goto(`${server.url}/`);
      await page.waitForFunction(() => document.body.dataset.booted === "1");
      assert.equal(await page.evaluate(() => getComputedStyle(document.body).colorScheme), scheme, "the theme follows the system");

      // The first-run welcome (shown again for this theme).
      const settings = (await server.command("get_settings")).body;
      assert.equal((await server.command("save_settings", { settings: { ...settings, welcomed: false } })).status, 200);
      await page.reload();
      await page.waitForFunction(() => document.body.dataset.booted === "1");
      await page.waitForSelector("#welcome:not([hidden])");
      await check("welcome");
      await page.click("#welcome-start");
      await page.waitForSelector("#welcome", { state: "hidden" });

      // A chat with rendered Markdown and highlighted code (languages arrive as chunks).
      await page.locator("#conversation-list .open", { hasText: "Markdown sampler" }).click();
      await page.waitForSelector(".message.assistant .hljs-keyword");
      await page.waitForFunction(() => document.querySelectorAll(".code-block .hljs-keyword").length >= 2);
      await check("chat");

      // The gauge's explanation (shown on focus), and a chat that has talked to the model.
      await page.click("#new-chat");
      await page.fill("#message-input", "Say hello in five words.");
      await page.click("#send-button");
      await page.waitForSelector("#messages .message.assistant.complete, #messages .message.assistant.stopped", { timeout: 120_000 });
      // A pinned message (#19) carries its mark, and keeps it when the chat is opened again.
      await page.click("#messages .message.user .msg-tools .pin");
      await page.waitForSelector("#messages .message.user.pinned .pin-mark");
      assert.equal(await page.getAttribute("#messages .message.user .pin", "aria-pressed"), "true");
      await page.focus(".gauge-wrap");
      await check("chat-after-reply");
      await page.reload();
      await page.waitForFunction(() => document.body.dataset.booted === "1");
      await page.locator("#conversation-list .open", { hasText: "Say hello in five words" }).first().click(); // the newest
      await page.waitForSelector("#messages .message.user.pinned .pin-mark");

      // Search results.
      await page.fill("#search", "markdown");
      await page.waitForSelector("#search-results .hit");
      await check("search");
      await page.fill("#search", "");

      // An error in the banner (an empty message) and the undo toast after a delete.
      await page.fill("#message-input", "   ");
      await page.click("#send-button");
      await page.waitForSelector("#error-banner:not([hidden])");
      await check("error");
      await page.locator("#conversation-list li").first().locator("button.delete").click();
      await page.waitForSelector("#toast:not([hidden])");
      await check("toast");
      await page.click("#toast-undo");

      // Models, with its forms open; Settings.
      await page.click("#views button[data-view=models]");
      await page.waitForSelector("#catalog li");
      await page.evaluate(() => document.querySelectorAll("#models-view details").forEach((d) => { d.open = true; }));
      await check("models");
      await page.click("#views button[data-view=settings]");
      await page.waitForFunction(() => document.getElementById("set-window").value !== "");
      await check("settings");
    } finally {
      await context.close();
    }
    assert.deepEqual(errors, []);
    assert.deepEqual(violations, [], `\n${violations.join("\n")}`);
  });
}
