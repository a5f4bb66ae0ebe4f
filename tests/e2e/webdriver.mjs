// A small W3C WebDriver client over fetch, for driving the real SinkChat window through
// tauri-driver (which forwards to WebKitWebDriver).
import { spawn, execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

/** Pids of running copies of `app` started with SINKCHAT_DATA_DIR = `data`. */
export function appPids(app, data) {
  let pids = [];
  try {
    pids = execFileSync("pgrep", ["-f", app], { encoding: "utf8" }).trim().split("\n").filter(Boolean).map(Number);
  } catch { return []; }
  return pids.filter((pid) => {
    try { return readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").includes(`SINKCHAT_DATA_DIR=${data}`); } catch { return false; }
  });
}

export class Driver {
  constructor(port, session) { this.base = `http://127.0.0.1:${port}`; this.session = session; }

  /** Starts the app; unless `keepWelcome`, waits for the window to boot and closes the
   *  first-run screen. */
  static async start({ app, env, port = 4444, keepWelcome = false }) {
    const proc = spawn("tauri-driver", ["--port", String(port), "--native-port", String(port + 1)], {
      env: { ...process.env, ...env }, stdio: ["ignore", "inherit", "inherit"],
    });
    const deadline = Date.now() + 30_000;
    let lastErr;
    while (Date.now() < deadline) {
      try {
        const r = await fetch(`http://127.0.0.1:${port}/status`);
        if (r.ok) break;
      } catch (e) { lastErr = e; }
      await sleep(200);
    }
    const res = await fetch(`http://127.0.0.1:${port}/session`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ capabilities: { alwaysMatch: { "tauri:options": { application: app } } } }),
    }).catch((e) => { throw new Error(`tauri-driver did not answer: ${e} ${lastErr ?? ""}`); });
    const body = await res.json();
    if (!res.ok) { proc.kill(); throw new Error(`no session: ${JSON.stringify(body)}`); }
    const d = new Driver(port, body.value.sessionId);
    d.proc = proc;
    d.app = app;
    d.data = env?.SINKCHAT_DATA_DIR;
    await d.waitFor("the window to boot", async () => d.exec("return document.body.dataset.booted === '1'"), 60_000);
    if (!keepWelcome && await d.exec("return !document.getElementById('welcome').hidden")) await d.click("#welcome-start");
    return d;
  }

  async cmd(method, path, body) {
    const r = await fetch(`${this.base}/session/${this.session}${path}`, {
      method, headers: { "content-type": "application/json" }, body: body ? JSON.stringify(body) : undefined,
    });
    const j = await r.json();
    if (!r.ok) throw new Error(`${method} ${path}: ${JSON.stringify(j.value)}`);
    return j.value;
  }

  async find(css) { return (await this.cmd("POST", "/element", { using: "css selector", value: css }))[ELEMENT]; }
  async findAll(css) { return (await this.cmd("POST", "/elements", { using: "css selector", value: css })).map((e) => e[ELEMENT]); }
  async click(css) { await this.cmd("POST", `/element/${await this.find(css)}/click`, {}); }
  async type(css, text) { await this.cmd("POST", `/element/${await this.find(css)}/value`, { text }); }
  async text(css) { return this.cmd("GET", `/element/${await this.find(css)}/text`); }
  async exec(script, args = []) { return this.cmd("POST", "/execute/sync", { script, args }); }
  /** Asks the app to stop as a logout or a service manager does (SIGTERM: it closes as its
   *  close button does, running its shutdown), and waits up to 20 s for it to end. */
  async closeWindow() {
    for (const pid of appPids(this.app, this.data)) process.kill(pid, "SIGTERM");
    const deadline = Date.now() + 20_000;
    while (this.data && appPids(this.app, this.data).length && Date.now() < deadline) await sleep(200);
    return this.data ? appPids(this.app, this.data).length === 0 : true;
  }
  async screenshot() { return Buffer.from(await this.cmd("GET", "/screenshot"), "base64"); }

  /** Polls `fn` until it returns a truthy value, or fails after `ms`. */
  async waitFor(what, fn, ms = 120_000) {
    const deadline = Date.now() + ms;
    let last;
    while (Date.now() < deadline) {
      try { last = await fn(); if (last) return last; } catch (e) { last = e; }
      await sleep(250);
    }
    throw new Error(`timed out waiting for ${what} (last: ${last})`);
  }

  async quit() {
    try {
      await fetch(`${this.base}/session/${this.session}`, { method: "DELETE", signal: AbortSignal.timeout(10_000) });
    } catch { /* already gone */ }
    this.proc.kill();
    await new Promise((r) => this.proc.once("exit", r));
    // The app is tauri-driver's grandchild: if closing the session did not end it, it would
    // outlive the test and hold the test runner's output open. Give it 10 s to save and go,
    // then end it.
    if (!this.data) return;
    const deadline = Date.now() + 10_000;
    while (appPids(this.app, this.data).length && Date.now() < deadline) await sleep(200);
    for (const pid of appPids(this.app, this.data)) {
      console.error(`the app (pid ${pid}) was still running after its session closed; ending it`);
      try { process.kill(pid, "SIGTERM"); } catch { /* gone */ }
      await sleep(2000);
      try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
    }
  }
}
