// Bounded-time fuzzing of the markdown renderer: random documents built from markdown's own
// pieces (and the seeds: real replies and the adversarial inputs found so far) must render in
// linear-ish time and never produce live HTML: no script, iframe, img or object, no on*
// attribute, only http(s)/mailto links. Budget: SINKCHAT_FUZZ_SECS (default 5; CI sets 60).
// Seed: SINKCHAT_FUZZ_SEED (printed).
import { test } from "node:test";
import assert from "node:assert/strict";
import { JSDOM } from "jsdom";
import { renderMarkdown } from "../test-build/markdown.js";

// Everything the sanitizer may let through; anything else in the output is a failure.
const ALLOWED = new Set("p br h3 h4 h5 h6 strong em s del code pre blockquote ul ol li hr table thead tbody tr th td a span div button".split(" "));

const budgetMs = 1000 * Number(process.env.SINKCHAT_FUZZ_SECS ?? 5);
let seed = Number(process.env.SINKCHAT_FUZZ_SEED ?? (Date.now() % 2 ** 31)) | 1;
const rnd = () => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return (seed >>> 0) / 2 ** 32; };
const pick = (xs) => xs[Math.floor(rnd() * xs.length)];

const pieces = [
  "#", "## ", "###### ", "\n", "\n\n", " ", "  ", "\t", "*", "**", "***", "_", "__", "~~", "`", "```", "```js\n",
  "[", "]", "(", ")", "](", "https://example.com/a_(b)", "javascript:alert(1)", "mailto:a@b.c", "<", ">", "&amp;", "&#x3C;",
  "|", "|---|", ":--", "- ", "* ", "1. ", "> ", "\\", "<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
  "<a href=\"javascript:1\">x</a>", "word", "ünïcödé", "🚉", "=", "---", "===", "![x](https://example.com/i.png)",
];
const seeds = [
  "# Title\n\nSome **bold**, *italic*, ~~gone~~ and `code`.\n\n- one\n- two\n\n> quoted\n\n| a | b |\n|---|---|\n| 1 | 2 |",
  "```python\ndef f(x):\n    return x * 2\n```\nSee [docs](https://docs.rs) and https://example.com/x.",
  "#".repeat(5000) + "x",
  "|" + "-".repeat(5000) + "|\n",
  "*".repeat(3000) + "a",
  "[".repeat(3000) + "](" + "(".repeat(3000),
  "`".repeat(4000),
  " ".repeat(5000) + "#",
];

function mutant() {
  if (rnd() < 0.2) {
    // A long run of one piece: the shape that makes backtracking parsers blow up.
    const p = pick(pieces);
    return pick(seeds).slice(0, Math.floor(rnd() * 200)) + p.repeat(200 + Math.floor(rnd() * 3000)) + pick(pieces);
  }
  let s = rnd() < 0.5 ? pick(seeds) : "";
  const n = 1 + Math.floor(rnd() * 120);
  for (let i = 0; i < n; i++) {
    const at = Math.floor(rnd() * (s.length + 1));
    s = s.slice(0, at) + pick(pieces) + s.slice(at);
  }
  return s;
}

function check(document, md) {
  const root = document.createElement("div");
  const t0 = performance.now();
  root.appendChild(renderMarkdown(document, md, { copyLabel: "Copy", copiedLabel: "Copied" }));
  const ms = performance.now() - t0;
  for (const e of root.querySelectorAll("*")) {
    assert.ok(ALLOWED.has(e.localName), `<${e.localName}> from ${JSON.stringify(md.slice(0, 200))}`);
  }
  for (const e of root.querySelectorAll("*")) {
    for (const a of e.attributes) assert.ok(!a.name.toLowerCase().startsWith("on"), `${a.name} from ${JSON.stringify(md.slice(0, 200))}`);
  }
  for (const a of root.querySelectorAll("a")) {
    assert.match(a.getAttribute("href"), /^(https?:|mailto:)/i, JSON.stringify(md.slice(0, 200)));
  }
  return ms;
}

test("random markdown renders fast and never becomes live HTML", () => {
  console.log(`markdown fuzz seed ${seed} (SINKCHAT_FUZZ_SEED=${seed} repeats this run)`);
  const { document } = new JSDOM("<!doctype html><html><body></body></html>").window;
  for (const s of seeds) check(document, s);
  const start = performance.now();
  let runs = 0, worst = 0, worstLen = 0;
  while (performance.now() - start < budgetMs) {
    const md = mutant();
    let ms;
    try { ms = check(document, md); } catch (e) {
      if (e instanceof assert.AssertionError) throw e;
      assert.fail(`${e} on ${md.length} chars: ${JSON.stringify(md.slice(0, 300))}…`);
    }
    // A reply of a few thousand characters renders in milliseconds (jsdom building the DOM of
    // the longest runs takes a second or two on a busy machine); a parser that backtracks
    // super-linearly takes minutes on the long runs above.
    assert.ok(ms < 5000, `${ms.toFixed(0)} ms for ${md.length} chars: ${JSON.stringify(md.slice(0, 120))}…`);
    if (ms > worst) { worst = ms; worstLen = md.length; }
    runs++;
  }
  console.log(`markdown: ${runs} documents in ${((performance.now() - start) / 1000).toFixed(0)} s, slowest ${worst.toFixed(1)} ms (${worstLen} chars)`);
  assert.ok(runs > 0);
});
