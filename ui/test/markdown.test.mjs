// The markdown renderer (markdown-it + DOMPurify + highlight.js) on jsdom: CommonMark cases the
// old home-made parser got wrong, structure, highlighting loaded on demand, that nothing in a
// reply can become live HTML, and that crafted input renders in bounded time.
import { test } from "node:test";
import assert from "node:assert/strict";
import { JSDOM } from "jsdom";
import { renderMarkdown, languageOf, MAX_NESTING, StreamingMarkdown } from "../test-build/markdown.js";

const { document } = new JSDOM("<!doctype html><html><body></body></html>").window;
const opts = { copyLabel: "Copy", copiedLabel: "Copied" };
function render(md) {
  const root = document.createElement("div");
  const frag = renderMarkdown(document, md, opts);
  root.appendChild(frag);
  return { root, highlighted: frag.highlighted };
}
const texts = (root, sel) => [...root.querySelectorAll(sel)].map((e) => e.textContent);

test("a script tag, an event handler and a javascript: link stay text", () => {
  const evil = [
    "<script>window.pwned = 1</script>",
    '<img src=x onerror="window.pwned = 2">',
    "[click me](javascript:alert(1))",
    "<iframe src=https://example.com></iframe>",
    "[data](data:text/html;base64,PHNjcmlwdD4=) [vb](vbscript:x) [file](file:///etc/passwd)",
    "![pic](https://example.com/i.png)",
  ].join("\n\n");
  const { root } = render(evil);
  for (const tag of ["script", "img", "iframe"]) assert.equal(root.querySelectorAll(tag).length, 0, tag);
  const hrefs = [...root.querySelectorAll("a")].map((a) => a.getAttribute("href"));
  assert.ok(hrefs.every((h) => /^https:\/\//.test(h)), `only http(s) links: ${hrefs}`);
  assert.ok(root.textContent.includes("[click me](javascript:alert(1))"), "the javascript: link stays text");
  assert.ok(root.textContent.includes("[file](file:///etc/passwd)"));
  assert.ok(root.textContent.includes("<script>window.pwned = 1</script>"));
  assert.ok(root.textContent.includes('onerror="window.pwned = 2"'));
  assert.equal([...root.querySelectorAll("*")].filter((e) => [...e.attributes].some((a) => a.name.startsWith("on"))).length, 0);
});

test("headings, emphasis, lists, quotes, tables and links become elements", () => {
  const { root } = render("# Title\n\nSome **bold**, *italic*, ~~gone~~ and `code`.\n\n- one\n- two\n\n3. three\n4. four\n\n> quoted\n\n| a | b |\n|:---|---:|\n| 1 | 2 |\n\nSee https://example.com/x and [docs](https://docs.rs).");
  assert.equal(root.querySelector("h3").textContent, "Title", "a reply's # starts at h3");
  assert.equal(root.querySelector("strong").textContent, "bold");
  assert.equal(root.querySelector("em").textContent, "italic");
  assert.equal(root.querySelector("s").textContent, "gone");
  assert.equal(root.querySelector("p code").textContent, "code");
  assert.deepEqual(texts(root, "ul li"), ["one", "two"]);
  assert.equal(root.querySelector("ol").getAttribute("start"), "3");
  assert.equal(root.querySelector("blockquote").textContent.trim(), "quoted");
  assert.deepEqual(texts(root, "td"), ["1", "2"]);
  assert.deepEqual([...root.querySelectorAll("td")].map((c) => c.className), ["align-left", "align-right"]);
  assert.ok(root.querySelector(".table-wrap > table"), "tables scroll inside a wrapper");
  assert.equal(root.querySelectorAll("[style]").length, 0, "no inline styles");
  const links = [...root.querySelectorAll("a")];
  assert.deepEqual(links.map((a) => a.getAttribute("href")), ["https://example.com/x", "https://docs.rs"]);
  assert.ok(links.every((a) => a.getAttribute("rel") === "noopener noreferrer"));
});

test("CommonMark cases the old parser missed: entities, reference links, setext headings, URLs with parentheses, intraword emphasis", () => {
  // Entities: named and numeric become characters; an escaped one stays literal.
  let { root } = render("Fish &amp; chips &copy; 2026 &#x263A; and \\&amp; literal");
  assert.equal(root.textContent.trim(), "Fish & chips © 2026 ☺ and &amp; literal");
  // Reference links, full, collapsed and shortcut, with the definition out of sight.
  ({ root } = render("Read [the docs][d], [Rust][] and [crates].\n\n[d]: https://docs.rs \"Docs\"\n[rust]: https://www.rust-lang.org\n[crates]: <https://crates.io>"));
  assert.deepEqual([...root.querySelectorAll("a")].map((a) => [a.textContent, a.getAttribute("href")]),
    [["the docs", "https://docs.rs"], ["Rust", "https://www.rust-lang.org"], ["crates", "https://crates.io"]]);
  assert.equal(root.querySelector("a").getAttribute("title"), "Docs");
  assert.ok(!root.textContent.includes("[d]:"), "definitions are not shown");
  // Setext headings, both levels.
  ({ root } = render("Big title\n=========\n\nSmaller\n-------\n\ntext"));
  assert.deepEqual([...root.querySelectorAll("h3, h4")].map((h) => [h.localName, h.textContent]), [["h3", "Big title"], ["h4", "Smaller"]]);
  // Parentheses inside URLs, as written links and as bare ones.
  ({ root } = render("See [Foo](https://en.wikipedia.org/wiki/Foo_(bar)) and https://en.wikipedia.org/wiki/Baz_(qux) (a bare one)."));
  assert.deepEqual([...root.querySelectorAll("a")].map((a) => a.getAttribute("href")),
    ["https://en.wikipedia.org/wiki/Foo_(bar)", "https://en.wikipedia.org/wiki/Baz_(qux)"]);
  assert.ok(root.textContent.includes("(a bare one)."));
  // Intraword emphasis with * but not with _ ; lone stars stay text.
  ({ root } = render("un*frigging*believable, snake_case_name, 2 * 3 = 6, __init__"));
  assert.deepEqual(texts(root, "em"), ["frigging"]);
  assert.ok(root.textContent.includes("snake_case_name"));
  assert.ok(root.textContent.includes("2 * 3 = 6"));
  assert.deepEqual(texts(root, "strong"), ["init"]);
  // Hard breaks, autolinks and emails.
  ({ root } = render("line one  \nline two <https://example.org> write to a@b.example"));
  assert.equal(root.querySelectorAll("br").length, 1);
  assert.deepEqual([...root.querySelectorAll("a")].map((a) => a.getAttribute("href")), ["https://example.org", "mailto:a@b.example"]);
});

test("code blocks keep their text exactly, get a copy button and are highlighted once the language arrives", async () => {
  const code = 'fn main() {\n    // greet\n    let s = "hi <b>";\n    println!("{}", 42);\n}';
  const md = "Here:\n\n```rust\n" + code + "\n```\n";
  const first = render(md);
  assert.equal(first.root.querySelector(".code-block code").textContent, code + "\n");
  assert.equal(first.root.querySelector(".code-bar span").textContent, "rust");
  assert.equal(first.root.querySelector(".copy-code").textContent, "Copy");
  assert.ok(first.highlighted, "rust is loaded on demand");
  await first.highlighted;
  for (const { root } of [first, render(md)]) { // in place, then at once for the next render
    const block = root.querySelector(".code-block code");
    assert.equal(block.textContent, code + "\n", "highlighting keeps the text");
    assert.equal(block.className, "language-rust");
    assert.equal(root.querySelector(".hljs-comment").textContent, "// greet");
    assert.equal(root.querySelector(".hljs-string").textContent, '"hi <b>"');
    assert.ok(texts(root, ".hljs-keyword").includes("let"));
    assert.equal(root.querySelectorAll("b").length, 0);
  }
  assert.equal(render(md).highlighted, undefined, "a loaded language needs no wait");
  // Aliases and unknown languages.
  assert.equal(languageOf("py"), "python");
  assert.equal(languageOf("C++"), "cpp");
  assert.equal(languageOf("klingon"), null);
  assert.equal(languageOf("__proto__"), null);
  const odd = render("```klingon\nQapla'\n```");
  assert.equal(odd.highlighted, undefined);
  assert.equal(odd.root.querySelector("code").textContent, "Qapla'\n");
});

test("the rendered text is the reply's words, without markdown-it's newlines between blocks", () => {
  const { root } = render("The capital of France is Paris.");
  assert.equal(root.textContent, "The capital of France is Paris.");
  const list = render("Intro\n\n- a\n- b\n\n> q\n\n| x |\n|---|\n| 1 |").root;
  assert.equal(list.textContent, "Introabqx1");
  const loose = render("- a\n\n- b").root;
  assert.equal(loose.textContent, "ab");
  // Inside paragraphs and code the newlines are the text's own and stay.
  assert.equal(render("one\ntwo").root.textContent, "one\ntwo");
  assert.equal(render("```\na\n\nb\n```").root.querySelector("code").textContent, "a\n\nb\n");
});

test("a copy button copies its block's text", async () => {
  const copied = [];
  const root = document.createElement("div");
  root.appendChild(renderMarkdown(document, "```\na < b\n```", { ...opts, onCopy: (t) => { copied.push(t); } }));
  root.querySelector(".copy-code").click();
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(copied, ["a < b"], "without the fence's last newline");
  assert.equal(root.querySelector(".copy-code").textContent, "Copied");
});

test("a code fence still open mid-stream renders as code", () => {
  const { root } = render("Start\n\n```python\nprint('x')");
  assert.equal(root.querySelector("p").textContent, "Start");
  assert.equal(root.querySelector(".code-block code").textContent, "print('x')");
});

test("crafted input renders in bounded time", () => {
  // A reply (or an imported chat) of 100,000 characters: the message limit. The first six made
  // the old parser's patterns backtrack; the rest are markdown-it's known hard shapes.
  const n = 100_000;
  const cases = {
    heading: "#" + " ".repeat(n) + "x",
    headingHashes: "# a" + "#".repeat(n) + "x",
    tableSep: "a | b\n|--" + " ".repeat(n) + "x",
    tableSepDashes: "a | b\n|" + " --".repeat(n / 3) + "x",
    fence: "```" + " ".repeat(n) + "!",
    rule: "- - -" + " ".repeat(n) + "x",
    inline: "*a".repeat(n / 2) + " [x](" + "(".repeat(1000) + " `" + "`a".repeat(1000),
    brackets: "[".repeat(n),
    linkOpeners: "[a](".repeat(n / 4),
    backticks: "`a``".repeat(n / 4),
    emphasis: "_a*".repeat(n / 3),
    strongRuns: "a**b".repeat(n / 4),
    angle: "<".repeat(n),
    refDefs: "[a]: <".repeat(n / 6),
    tableRows: "a|b\n-|-\n" + "|".repeat(n),
    entities: "&#".repeat(n / 2),
    autolinks: "http://a.b/(".repeat(n / 12),
  };
  for (const [name, src] of Object.entries(cases)) {
    const t0 = performance.now();
    const { root } = render(src);
    const ms = performance.now() - t0;
    assert.ok(root.textContent.length > 0, name);
    // Linear work: markdown-it takes ~0.1 s on the worst of these; jsdom building and cleaning
    // 50,000 <em> elements takes 1-3 s on a busy 2-core machine. A quadratic pattern takes
    // minutes on these inputs.
    assert.ok(ms < 10_000, `${name}: ${ms.toFixed(0)} ms`);
  }
});

test("deeply nested lists and quotes become plain text instead of losing the rest", () => {
  for (const md of ["* ".repeat(5000) + "x", "> ".repeat(5000) + "x", "1. ".repeat(3000) + "x", "- > ".repeat(3000) + "x"]) {
    const t0 = performance.now();
    const { root } = render(md);
    assert.ok(performance.now() - t0 < 2000, "slow");
    assert.ok(root.textContent.endsWith("x"), "the text after the deepest level is kept");
    assert.equal(root.textContent, md, "every character is shown");
  }
  // Nesting below the limit still renders as structure.
  const { root } = render("> ".repeat(5) + "deep");
  assert.equal(root.querySelectorAll("blockquote").length, 5);
  assert.ok(MAX_NESTING > 5);
});

test("a lone UTF-16 surrogate is shown as U+FFFD instead of breaking the parser", () => {
  // Found by the fuzz test: jsdom's HTML parser threw on "\ud83d" followed by other text.
  const { root } = render("a \ud83d`x` b \ude89 **c**");
  assert.equal(root.textContent.trim(), "a \ufffdx b \ufffd c");
});

test("a streaming reply shows at every step what a whole render of the text so far shows", async () => {
  const parts = [
    "# Plan\n\nFirst a paragraph with **bold** and a [link](https://example.com/a_(b)).\nIt goes on.",
    "- one\n- two\n\n- three, loose\n\n  continued inside the item",
    "1. first\n2. second",
    "```rust\nfn main() {\n\n    let x = 1; // blank line above stays in the block\n}\n```",
    "| a | b |\n|---|--:|\n| 1 | 2 |\n| 3 | 4 |",
    "> quoted\n> still quoted\n\nSetext\n------",
    "    indented code\n\n    more of it",
    "---",
    "Last line with `code` and *emphasis*",
  ];
  const text = parts.join("\n\n");
  await render(text).highlighted; // the languages, loaded, as they will be after the first block
  let seed = 11;
  const rnd = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31; };
  for (let run = 0; run < 5; run++) {
    const root = document.createElement("div");
    const live = new StreamingMarkdown(document, root, opts);
    let at = 0, kept = 0;
    while (at < text.length) {
      at = Math.min(text.length, at + 1 + Math.floor(rnd() * 12));
      live.update(text.slice(0, at));
      assert.equal(root.innerHTML, render(text.slice(0, at)).root.innerHTML, `after ${JSON.stringify(text.slice(0, at).slice(-40))}`);
      kept = Math.max(kept, live.kept.length);
    }
    assert.ok(kept > text.length / 2, `most of the reply was kept rather than rendered again (${kept} of ${text.length})`);
    live.finish(text);
    assert.equal(root.innerHTML, render(text).root.innerHTML);
  }
  // A reply that starts over (regenerated into the same bubble) is drawn from scratch.
  const root = document.createElement("div");
  const live = new StreamingMarkdown(document, root, opts);
  live.update("Para one.\n\nPara two.");
  live.update("Other text");
  assert.equal(root.innerHTML, render("Other text").root.innerHTML);
});
