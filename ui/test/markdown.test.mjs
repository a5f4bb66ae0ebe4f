// The markdown renderer on linkedom's DOM: structure, highlighting, and that nothing in a reply
// can become live HTML.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseHTML } from "linkedom";
import { parseBlocks, parseInline, renderMarkdown, highlight } from "../dist/markdown.js";

const opts = { copyLabel: "Copy", copiedLabel: "Copied" };
function render(md) {
  const { document } = parseHTML("<!doctype html><html><body><div id=r></div></body></html>");
  const root = document.getElementById("r");
  root.appendChild(renderMarkdown(document, md, opts));
  return { document, root };
}

test("a script tag, an event handler and a javascript: link stay text", () => {
  const evil = [
    "<script>window.pwned = 1</script>",
    '<img src=x onerror="window.pwned = 2">',
    "[click me](javascript:alert(1))",
    "<iframe src=https://example.com></iframe>",
  ].join("\n\n");
  const { root } = render(evil);
  for (const tag of ["script", "img", "iframe"]) assert.equal(root.querySelectorAll(tag).length, 0, tag);
  const hrefs = [...root.querySelectorAll("a")].map((a) => a.getAttribute("href"));
  assert.ok(hrefs.every((h) => /^https:\/\//.test(h)), `only http(s) links: ${hrefs}`);
  assert.ok(root.textContent.includes("[click me](javascript:alert(1))"), "the javascript: link stays text");
  assert.ok(root.textContent.includes("<script>window.pwned = 1</script>"));
  assert.ok(root.textContent.includes('onerror="window.pwned = 2"'));
  assert.equal([...root.querySelectorAll("*")].filter((e) => [...e.attributes].some((a) => a.name.startsWith("on"))).length, 0);
});

test("headings, emphasis, lists, quotes, tables and links become elements", () => {
  const { root } = render("# Title\n\nSome **bold**, *italic*, ~~gone~~ and `code`.\n\n- one\n- two\n\n3. three\n4. four\n\n> quoted\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nSee https://example.com/x and [docs](https://docs.rs).");
  assert.equal(root.querySelector("h3").textContent, "Title");
  assert.equal(root.querySelector("strong").textContent, "bold");
  assert.equal(root.querySelector("em").textContent, "italic");
  assert.equal(root.querySelector("del").textContent, "gone");
  assert.equal(root.querySelector("p code").textContent, "code");
  assert.deepEqual([...root.querySelectorAll("ul li")].map((l) => l.textContent), ["one", "two"]);
  assert.equal(root.querySelector("ol").getAttribute("start"), "3");
  assert.equal(root.querySelector("blockquote").textContent.trim(), "quoted");
  assert.deepEqual([...root.querySelectorAll("td")].map((c) => c.textContent), ["1", "2"]);
  const links = [...root.querySelectorAll("a")];
  assert.deepEqual(links.map((a) => a.getAttribute("href")), ["https://example.com/x", "https://docs.rs"]);
  assert.ok(links.every((a) => a.getAttribute("rel") === "noopener noreferrer"));
});

test("code blocks keep their text exactly, get a copy button and highlighting", () => {
  const code = 'fn main() {\n    // greet\n    let s = "hi <b>";\n    println!("{}", 42);\n}';
  const { root } = render("Here:\n\n```rust\n" + code + "\n```\n");
  const block = root.querySelector(".code-block code");
  assert.equal(block.textContent, code);
  assert.equal(block.getAttribute("class"), "language-rust");
  assert.equal(root.querySelector(".copy-code").textContent, "Copy");
  assert.equal(root.querySelector(".tok-comment").textContent, "// greet");
  assert.equal(root.querySelector(".tok-string").textContent, '"hi <b>"');
  assert.ok([...root.querySelectorAll(".tok-keyword")].some((s) => s.textContent === "let"));
  assert.equal(root.querySelectorAll("b").length, 0);
});

test("a code fence still open mid-stream renders as code", () => {
  const b = parseBlocks("Start\n\n```python\nprint('x')");
  assert.equal(b.length, 2);
  assert.deepEqual(b[1], { t: "code", lang: "python", v: "print('x')" });
  assert.deepEqual(highlight("# note", "python"), [{ kind: "comment", v: "# note" }]);
});

test("inline parsing leaves ordinary punctuation alone", () => {
  assert.deepEqual(parseInline("2 * 3 = 6 and snake_case_name"), [{ t: "text", v: "2 * 3 = 6 and snake_case_name" }]);
  assert.deepEqual(parseInline("\\*not em\\*"), [{ t: "text", v: "*not em*" }]);
});

test("lines built to make a regex backtrack are parsed in linear time", () => {
  // A reply (or an imported chat) of 100,000 characters: the message limit. Each used to cost
  // quadratic time in the heading or table-separator pattern and froze the window.
  const n = 100_000;
  const cases = {
    heading: "#" + " ".repeat(n) + "x",
    headingHashes: "# a" + "#".repeat(n) + "x",
    tableSep: "a | b\n|--" + " ".repeat(n) + "x",
    tableSepDashes: "a | b\n|" + " --".repeat(n / 3) + "x",
    fence: "```" + " ".repeat(n) + "!",
    rule: "- - -" + " ".repeat(n) + "x",
    inline: "*a".repeat(n / 2) + " [x](" + "(".repeat(1000) + " `" + "`a".repeat(1000),
  };
  for (const [name, src] of Object.entries(cases)) {
    const t0 = performance.now();
    const blocks = parseBlocks(src);
    const ms = performance.now() - t0;
    assert.ok(blocks.length > 0, name);
    // Linear parsing takes a few ms; the quadratic patterns took minutes on these inputs.
    assert.ok(ms < 2000, `${name}: ${ms.toFixed(0)} ms`);
  }
  // The fixed patterns still read what they did.
  assert.deepEqual(parseBlocks("## Title ##").map((b) => [b.t, b.level]), [["h", 2]]);
  assert.equal(parseBlocks("## Title ##")[0].c[0].v, "Title");
  assert.equal(parseBlocks("a | b\n|:--|--:|\n1 | 2")[0].t, "table");
  assert.equal(parseBlocks("a | b\n| - | - |")[0].t, "p", "one dash is not a separator");
});

test("deeply nested lists and quotes stop nesting instead of overflowing the stack", () => {
  for (const md of ["* ".repeat(5000) + "x", "> ".repeat(5000) + "x", "1. ".repeat(3000) + "x", "- > ".repeat(3000) + "x"]) {
    const t0 = performance.now();
    const { root } = render(md);
    assert.ok(performance.now() - t0 < 2000, "slow");
    let depth = 0;
    for (let e = root.querySelector("li, blockquote"); e; e = e.querySelector("li, blockquote")) depth++;
    assert.ok(depth > 0 && depth <= 16, `nesting ${depth}`);
    assert.ok(root.textContent.endsWith("x"), "the text after the deepest level is kept");
  }
});
