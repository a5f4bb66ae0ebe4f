// Starts `sinkchat serve` on a fresh data folder (a real process, a real port, a real SQLite
// file), as the API and browser tests need it.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

export const ROOT = resolve(import.meta.dirname, "../..");
export const MODEL = "SmolLM2-135M-Instruct.Q4_1";

export async function serve(env = {}) {
  const dir = mkdtempSync(join(tmpdir(), "sinkchat-serve-"));
  const proc = spawn(join(ROOT, "target/debug/sinkchat"), ["serve", "--port", "0", "--data-dir", dir], {
    env: { ...process.env, SINKCHAT_MODEL: join(ROOT, `.data/models/${MODEL}.gguf`), RUST_LOG: "warn", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: proc.stdout });
  const it = lines[Symbol.asyncIterator]();
  const url = (await it.next()).value.replace(/\/$/, "");
  await it.next();
  const key = (await it.next()).value.match(/access key: ([^)]+)\)/)[1];
  const command = async (name, args = {}) => {
    const r = await fetch(`${url}/api/${name}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(args) });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  };
  for (let i = 0; i < 600; i++) {
    if ((await command("app_status")).body.model.state === "ready") break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url, key, dir, command,
    alive: () => proc.exitCode === null,
    async stop() {
      proc.kill("SIGTERM");
      await new Promise((r) => proc.once("exit", r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Debian's Chromium (or $CHROMIUM), headless, as every browser test and the render bench use it. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** A page of the app at `url`, booted, with the first-run welcome closed; its uncaught errors
 *  collect in `page.errors`. */
export async function openPage(browser, url) {
  const page = await browser.newPage();
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(e));
  await page.goto(`${url}/`);
  await page.waitForFunction(() => document.body.dataset.booted === "1");
  if (await page.locator("#welcome").isVisible()) {
    await page.click("#welcome-start");
    await page.waitForFunction(() => document.getElementById("welcome").hidden);
  }
  return page;
}
