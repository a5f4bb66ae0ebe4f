// Frame time while a long reply streams, in Chromium (#18): the UI's own renderer (ui/src/markdown.ts,
// bundled by esbuild as the app bundles it) draws the reply once per animation frame as main.ts
// does while tokens arrive (StreamingMarkdown: closed blocks kept, the last one rendered again),
// inside the app's stylesheet, until the reply is 5,000 words of mixed Markdown (paragraphs,
// lists, tables, code in three languages). Prints frame intervals and render times per 1,000
// words, and the slowest frame. `--whole` renders the whole reply each frame instead (the way
// before StreamingMarkdown), for comparison.
//
//   node tests/api/bench-render.mjs [--words 5000] [--tokens-per-frame 2] [--whole] [--json out.json]
//
// Needs `scripts/setup.sh test-deps` (playwright-core here, esbuild in ui/) and Debian's chromium.
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, extname, normalize } from "node:path";
import { ROOT, launchChromium } from "./serve.mjs";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const WORDS = Number(arg("words", 5000));
const PER_FRAME = Number(arg("tokens-per-frame", 2));
const JSON_OUT = arg("json", null);
const WHOLE = process.argv.includes("--whole");

// A deterministic reply of about WORDS words, made of the shapes models write.
function reply(words) {
  const vocab = "the model keeps a rolling window of recent tokens and a few sinks so that a chat can go on for as long as the person likes without slowing down while every word stays in the database and search finds it".split(" ");
  let seed = 7;
  const rnd = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31; };
  const sentence = (n) => { const w = Array.from({ length: n }, () => vocab[Math.floor(rnd() * vocab.length)]); w[0] = w[0][0].toUpperCase() + w[0].slice(1); return w.join(" ") + "."; };
  const parts = [];
  let count = 0;
  for (let section = 1; count < words; section++) {
    parts.push(`## Part ${section}`);
    const para = Array.from({ length: 4 }, () => sentence(12)).join(" ").replace(/window/, "**window**").replace(/sinks/, "*sinks*").replace(/tokens/, "`tokens`");
    parts.push(para);
    parts.push(["- first point, with a [link](https://example.com/a_(b))", "- second point: " + sentence(8), "- third point"].join("\n"));
    if (section % 3 === 0) parts.push("| name | value |\n|:--|--:|\n| sinks | 4 |\n| window | 2044 |\n| free | 0 |");
    if (section % 2 === 0) parts.push(["```rust", "fn main() {", "    // a comment", '    let s = "text";', "    println!(\"{} {}\", s, 42);", "}", "```"].join("\n"));
    if (section % 5 === 0) parts.push(["```python", "def f(x):", "    return [i * 2 for i in range(x)]  # doubled", "```"].join("\n"));
    if (section % 7 === 0) parts.push(["```json", '{"a": [1, 2, 3], "b": {"c": null}}', "```"].join("\n"));
    count = parts.join("\n\n").split(/\s+/).length;
  }
  return parts.join("\n\n");
}

const dir = mkdtempSync(join(tmpdir(), "sinkchat-render-"));
const { build } = await import(join(ROOT, "ui/node_modules/esbuild/lib/main.js"));
await build({
  stdin: {
    contents: `import { renderMarkdown, StreamingMarkdown } from "./src/markdown.ts"; window.renderMarkdown = renderMarkdown; window.StreamingMarkdown = StreamingMarkdown;`,
    resolveDir: join(ROOT, "ui"),
    loader: "ts",
  },
  bundle: true, splitting: true, format: "esm", outdir: dir, entryNames: "bench", minify: true, logLevel: "warning",
});
copyFileSync(join(ROOT, "ui/styles.css"), join(dir, "styles.css"));
writeFileSync(join(dir, "index.html"), `<!doctype html><html data-theme="light"><head><meta charset="utf-8"><link rel="stylesheet" href="styles.css"><script type="module" src="bench.js"></script></head>
<body><main id="chat"><section id="messages"><article class="message assistant streaming"><div class="body"></div></article></section></main></body></html>`);

const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };
const http = createServer((req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^\/+/, "") || "index.html";
  try {
    const body = readFileSync(join(dir, path));
    res.writeHead(200, { "content-type": types[extname(path)] ?? "application/octet-stream" }).end(body);
  } catch { res.writeHead(404).end(); }
});
await new Promise((r) => http.listen(0, "127.0.0.1", r));
const url = `http://127.0.0.1:${http.address().port}/`;

const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(url);
  await page.waitForFunction(() => typeof window.renderMarkdown === "function");
  const text = reply(WORDS);
  // Tokens of about four characters, as a BPE tokenizer cuts English.
  const tokens = text.match(/[\s\S]{1,4}/g);
  const run = await page.evaluate(async ({ tokens, perFrame, whole }) => {
    const body = document.querySelector(".body");
    const messages = document.getElementById("messages");
    const opts = { copyLabel: "Copy", copiedLabel: "Copied", onCopy: () => {} };
    const live = new StreamingMarkdown(document, body, opts);
    const frames = [];
    let full = "";
    let last = performance.now();
    for (let i = 0; i < tokens.length; i += perFrame) {
      full += tokens.slice(i, i + perFrame).join("");
      const t0 = performance.now();
      if (whole) body.replaceChildren(renderMarkdown(document, full, opts));
      else live.update(full);
      messages.scrollTop = messages.scrollHeight; // stick to the bottom, as the chat does
      void body.offsetHeight; // layout inside the measured time
      const render = performance.now() - t0;
      await new Promise((r) => requestAnimationFrame(r));
      const now = performance.now();
      frames.push({ words: full.split(/\s+/).length, render, frame: now - last });
      last = now;
    }
    const t0 = performance.now();
    live.finish(full); // the last frame of a reply: the whole of it once
    void body.offsetHeight;
    return { frames, finish: performance.now() - t0 };
  }, { tokens, perFrame: PER_FRAME, whole: WHOLE });

  const { frames: result, finish } = run;
  const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
  const buckets = [];
  for (let from = 0; from < WORDS; from += 1000) {
    const fs = result.filter((f) => f.words > from && f.words <= from + 1000);
    if (!fs.length) continue;
    buckets.push({
      words: `${from}-${from + 1000}`,
      frames: fs.length,
      render_ms_p50: +pct(fs.map((f) => f.render), 0.5).toFixed(2),
      render_ms_p95: +pct(fs.map((f) => f.render), 0.95).toFixed(2),
      frame_ms_p50: +pct(fs.map((f) => f.frame), 0.5).toFixed(2),
      frame_ms_p95: +pct(fs.map((f) => f.frame), 0.95).toFixed(2),
      over_16_7_ms: fs.filter((f) => f.frame > 1000 / 60 + 1).length,
    });
  }
  const slowest = result.reduce((a, b) => (b.frame > a.frame ? b : a));
  const out = {
    browser: `Chromium ${browser.version()}`,
    words: result.at(-1).words,
    characters: text.length,
    tokens: tokens.length,
    tokens_per_frame: PER_FRAME,
    renderer: WHOLE ? "whole reply each frame" : "StreamingMarkdown (closed blocks kept)",
    final_whole_render_ms: +finish.toFixed(1),
    buckets,
    slowest_frame_ms: +slowest.frame.toFixed(1),
    slowest_frame_at_words: slowest.words,
  };
  console.table(buckets);
  console.log(JSON.stringify(out, null, 2));
  if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify(out, null, 2) + "\n");
} finally {
  await browser.close();
  http.close();
  rmSync(dir, { recursive: true, force: true });
}
