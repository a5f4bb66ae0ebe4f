// Markdown for model replies on well-kept libraries: markdown-it parses (CommonMark plus GFM
// tables and strikethrough, raw HTML off, so a `<script>` in a reply is text), DOMPurify cleans
// the result as a second line (an allow-list of tags and attributes, http(s) and mailto links
// only), and highlight.js colours code, each language loaded the first time a reply uses it
// (esbuild splits every language into its own chunk).
//
// This replaced a home-made parser (#18): it missed entities, reference links, setext headings,
// `)` inside URLs and intraword emphasis, and two of its patterns backtracked on crafted input.
import MarkdownIt from "markdown-it";
import type { Token } from "markdown-it";
import DOMPurify from "dompurify";
import hljs from "highlight.js/lib/core";
import type { LanguageFn } from "highlight.js";

export interface RenderOptions {
  copyLabel: string;
  copiedLabel: string;
  onCopy?: (text: string) => void | Promise<void>;
}

/** Lists and quotes nest at most this deep. Past it markdown-it stops reading the rest of the
 *  reply, so such a reply is shown as plain text instead: nothing is lost. ("* * * * …" nested one
 *  list per marker and overflowed the stack of the old parser; found by the fuzz test.) */
export const MAX_NESTING = 20;

const SAFE_URL = /^(?:https?:|mailto:)/i;

const md = new MarkdownIt("default", {
  html: false,
  linkify: true,
  typographer: false,
  maxNesting: MAX_NESTING,
  highlight: (code, lang) => highlightNow(code, lang),
});
// Images would reach out of an offline app (and the content policy blocks them anyway): the
// `![alt](url)` text stays as written.
md.disable("image");
md.validateLink = (url: string) => SAFE_URL.test(url.trim());
// Headings inside a chat bubble start at h3: a reply's "# Title" must not outshout the screen's.
md.core.ruler.push("sinkchat", (state) => {
  for (const tok of state.tokens) adjust(tok);
  return true;
});
function adjust(tok: Token) {
  if (tok.type === "heading_open" || tok.type === "heading_close") {
    tok.tag = `h${Math.min(6, Number(tok.tag.slice(1)) + 2)}`;
  } else if (tok.type === "th_open" || tok.type === "td_open") {
    // Alignment as a class: inline styles do not pass the sanitizer.
    const style = tok.attrGet("style");
    if (style) {
      tok.attrs = (tok.attrs ?? []).filter(([k]) => k !== "style");
      const m = /text-align:(left|right|center)/.exec(String(style));
      if (m) tok.attrSet("class", `align-${m[1]}`);
    }
  } else if (tok.type === "link_open") {
    tok.attrSet("rel", "noopener noreferrer");
  } else if (tok.type === "inline" && tok.children) {
    for (const c of tok.children) adjust(c);
  }
}

const ALLOWED_TAGS = [
  "p", "br", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "code", "pre", "blockquote",
  "ul", "ol", "li", "hr", "table", "thead", "tbody", "tr", "th", "td", "a", "span",
];
const PURIFY_CONFIG = {
  ALLOWED_TAGS,
  ALLOWED_ATTR: ["href", "class", "start", "rel", "title"],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
  // Attributes DOMPurify would otherwise hold to the URI pattern above.
  ADD_URI_SAFE_ATTR: ["start", "rel"],
  RETURN_DOM_FRAGMENT: true as const,
};

type Purifier = ReturnType<typeof DOMPurify>;
const purifiers = new WeakMap<object, Purifier>();
/** DOMPurify bound to the document's window (the page's, or jsdom's in the unit tests). */
function purifierFor(doc: Document): Purifier {
  const win = doc.defaultView;
  if (!win) throw new Error("markdown: the document has no window to sanitize with");
  let p = purifiers.get(win);
  if (!p) {
    p = DOMPurify(win as unknown as Window & typeof globalThis);
    purifiers.set(win, p);
  }
  return p;
}

// ---------- highlighting ----------

type Loader = () => Promise<{ default: LanguageFn }>;
/** The languages a chat is likely to show, each its own chunk, fetched on first use. */
const LANGUAGES: Record<string, Loader> = {
  bash: () => import("highlight.js/lib/languages/bash"),
  c: () => import("highlight.js/lib/languages/c"),
  cpp: () => import("highlight.js/lib/languages/cpp"),
  csharp: () => import("highlight.js/lib/languages/csharp"),
  css: () => import("highlight.js/lib/languages/css"),
  diff: () => import("highlight.js/lib/languages/diff"),
  dockerfile: () => import("highlight.js/lib/languages/dockerfile"),
  go: () => import("highlight.js/lib/languages/go"),
  haskell: () => import("highlight.js/lib/languages/haskell"),
  ini: () => import("highlight.js/lib/languages/ini"),
  java: () => import("highlight.js/lib/languages/java"),
  javascript: () => import("highlight.js/lib/languages/javascript"),
  json: () => import("highlight.js/lib/languages/json"),
  kotlin: () => import("highlight.js/lib/languages/kotlin"),
  latex: () => import("highlight.js/lib/languages/latex"),
  lua: () => import("highlight.js/lib/languages/lua"),
  makefile: () => import("highlight.js/lib/languages/makefile"),
  markdown: () => import("highlight.js/lib/languages/markdown"),
  perl: () => import("highlight.js/lib/languages/perl"),
  php: () => import("highlight.js/lib/languages/php"),
  powershell: () => import("highlight.js/lib/languages/powershell"),
  python: () => import("highlight.js/lib/languages/python"),
  r: () => import("highlight.js/lib/languages/r"),
  ruby: () => import("highlight.js/lib/languages/ruby"),
  rust: () => import("highlight.js/lib/languages/rust"),
  scala: () => import("highlight.js/lib/languages/scala"),
  shell: () => import("highlight.js/lib/languages/shell"),
  sql: () => import("highlight.js/lib/languages/sql"),
  swift: () => import("highlight.js/lib/languages/swift"),
  typescript: () => import("highlight.js/lib/languages/typescript"),
  xml: () => import("highlight.js/lib/languages/xml"),
  yaml: () => import("highlight.js/lib/languages/yaml"),
};
const ALIASES: Record<string, string> = {
  sh: "bash", zsh: "bash", console: "shell", js: "javascript", jsx: "javascript", mjs: "javascript",
  ts: "typescript", tsx: "typescript", py: "python", python3: "python", rs: "rust", "c++": "cpp",
  cc: "cpp", h: "c", hpp: "cpp", cs: "csharp", "c#": "csharp", golang: "go", kt: "kotlin",
  html: "xml", svg: "xml", toml: "ini", yml: "yaml", md: "markdown", rb: "ruby", ps1: "powershell",
  tex: "latex", docker: "dockerfile", make: "makefile", patch: "diff", jsonc: "json",
};

/** The module name of a fence's language, or null when it is not one we highlight. */
export function languageOf(fence: string): string | null {
  const l = fence.trim().toLowerCase();
  const name = ALIASES[l] ?? l;
  return Object.hasOwn(LANGUAGES, name) ? name : null;
}

const loading = new Map<string, Promise<boolean>>();
/** Loads (once) and registers a language; resolves false when it cannot be loaded. */
export function loadLanguage(name: string): Promise<boolean> {
  let p = loading.get(name);
  if (!p) {
    p = LANGUAGES[name]().then(
      (m) => { hljs.registerLanguage(name, m.default); return true; },
      () => false,
    );
    loading.set(name, p);
  }
  return p;
}

/** markdown-it's hook: highlighted HTML when the language is already loaded, "" (plain,
 *  escaped by markdown-it) otherwise; renderMarkdown then loads it and colours the block. */
function highlightNow(code: string, fence: string): string {
  const name = languageOf(fence);
  if (!name || !hljs.getLanguage(name)) return "";
  try {
    return hljs.highlight(code, { language: name, ignoreIllegals: true }).value;
  } catch {
    return "";
  }
}

// ---------- rendering ----------

/** Renders Markdown into a fragment of sanitized DOM nodes, code blocks given a language
 *  label and a copy button. A block whose language is not loaded yet is shown plain and
 *  coloured in place when it arrives; `highlighted` resolves then (tests wait on it). */
export function renderMarkdown(doc: Document, src: string, opts: RenderOptions): DocumentFragment & { highlighted?: Promise<void> } {
  return renderParsed(doc, src, md.parse(wellFormed(src), {}), opts);
}

const BLOCK_PARENTS = new Set(["UL", "OL", "LI", "BLOCKQUOTE", "TABLE", "THEAD", "TBODY", "TR"]);
/** Removes the whitespace-only text nodes markdown-it leaves between block elements (at the
 *  top and inside lists, quotes and tables; never inside a paragraph or code). */
function dropBlockNewlines(root: Node) {
  for (const n of [...root.childNodes]) {
    if (n.nodeType === 3) {
      if (!/\S/.test(n.textContent ?? "")) root.removeChild(n);
    } else if (BLOCK_PARENTS.has(n.nodeName)) {
      dropBlockNewlines(n);
    }
  }
}

/** A lone UTF-16 surrogate (never in text from the backend, which is valid UTF-8, but possible
 *  in a pasted or imported string) broke jsdom's HTML parser in the fuzz test: make it U+FFFD. */
function wellFormed(src: string): string {
  return (src as string & { toWellFormed(): string }).toWellFormed();
}

function renderParsed(doc: Document, src: string, tokens: Token[], opts: RenderOptions): DocumentFragment & { highlighted?: Promise<void> } {
  const purify = purifierFor(doc);
  const env = {};
  if (tokens.some((t) => t.level >= MAX_NESTING - 1)) {
    // markdown-it stopped at the nesting limit and dropped the rest: show every word instead.
    const p = doc.createElement("p");
    p.className = "plain";
    p.textContent = src;
    const frag = doc.createDocumentFragment();
    frag.appendChild(p);
    return frag;
  }
  const frag = purify.sanitize(md.renderer.render(tokens, md.options, env), PURIFY_CONFIG) as DocumentFragment & { highlighted?: Promise<void> };
  const pending: Promise<void>[] = [];
  for (const pre of [...frag.querySelectorAll("pre")]) {
    const code = pre.querySelector("code");
    if (!code) continue;
    const fence = /(?:^|\s)language-(\S+)/.exec(code.className)?.[1] ?? "";
    const raw = code.textContent ?? "";
    const text = raw.replace(/\n$/, ""); // copied without the newline markdown-it keeps
    const block = doc.createElement("div");
    block.className = "code-block";
    const bar = doc.createElement("div");
    bar.className = "code-bar";
    const label = doc.createElement("span");
    label.textContent = fence || "text";
    const copy = doc.createElement("button");
    copy.type = "button";
    copy.className = "copy-code";
    copy.textContent = opts.copyLabel;
    copy.setAttribute("aria-label", `${opts.copyLabel} (${fence || "text"})`);
    copy.addEventListener("click", async () => {
      await opts.onCopy?.(text);
      copy.textContent = opts.copiedLabel;
      setTimeout(() => { copy.textContent = opts.copyLabel; }, 1500);
    });
    bar.append(label, copy);
    pre.replaceWith(block);
    block.append(bar, pre);
    const name = languageOf(fence);
    if (name && !hljs.getLanguage(name)) {
      pending.push(loadLanguage(name).then((ok) => {
        if (!ok) return;
        const html = highlightNow(raw, name);
        if (html) code.replaceChildren(purify.sanitize(html, PURIFY_CONFIG));
      }));
    }
  }
  // markdown-it puts a newline between blocks; as text nodes they would reach the reply's
  // textContent (what Copy and the tests read), which must be the reply's words only.
  dropBlockNewlines(frag);
  // A link with no address (`[y]()`, or one the sanitizer took away) is text, not a dead link.
  for (const a of [...frag.querySelectorAll("a:not([href]), a[href=\"\"]")]) a.replaceWith(...a.childNodes);
  for (const table of [...frag.querySelectorAll("table")]) {
    const wrap = doc.createElement("div");
    wrap.className = "table-wrap";
    table.replaceWith(wrap);
    wrap.appendChild(table);
  }
  if (pending.length) frag.highlighted = Promise.all(pending).then(() => undefined);
  return frag;
}

/** Renders a reply while it streams without redoing the whole reply each frame: the blocks
 *  markdown-it has closed (a later block has begun after them) are rendered once and kept, and
 *  only the open block at the end is rendered again. On a 5,000-word reply the whole-reply
 *  re-render took 26 ms a frame in Chromium here (`tests/api/bench-render.mjs`), this a few.
 *  Kept blocks are exactly what a full render makes, except that a reference definition
 *  written after its link is only honoured by `finish`, which renders the whole reply once. */
export class StreamingMarkdown {
  /** The text of the blocks rendered once and kept (read by the tests). */
  kept = "";
  private tail: Node[] = [];

  constructor(private doc: Document, private root: HTMLElement, private opts: RenderOptions) {}

  /** Shows `full`, the reply so far. */
  update(full: string) {
    full = full.replace(/\r\n?/g, "\n"); // markdown-it counts lines after this
    if (!full.startsWith(this.kept)) this.reset();
    let rest = full.slice(this.kept.length);
    let tokens = md.parse(wellFormed(rest), {});
    // Top-level blocks start at level 0; every block before the last one is closed.
    const starts = tokens.filter((t) => t.level === 0 && t.nesting !== -1 && t.map).map((t) => t.map![0]);
    const last = starts.length > 1 ? starts[starts.length - 1] : 0;
    if (last > 0) {
      let cut = 0;
      for (let line = 0; line < last; line++) cut = rest.indexOf("\n", cut) + 1;
      const done = rest.slice(0, cut);
      this.root.insertBefore(renderMarkdown(this.doc, done, this.opts), this.tail[0] ?? null);
      this.kept += done;
      rest = rest.slice(cut);
      tokens = md.parse(wellFormed(rest), {});
    }
    const frag = renderParsed(this.doc, rest, tokens, this.opts);
    const nodes = [...frag.childNodes];
    for (const n of this.tail) n.parentNode?.removeChild(n);
    this.root.appendChild(frag);
    this.tail = nodes;
  }

  /** Renders the whole reply once more, exactly as a finished message is shown. */
  finish(full: string) {
    this.root.replaceChildren(renderMarkdown(this.doc, full, this.opts));
    this.kept = "";
    this.tail = [];
  }

  private reset() {
    this.root.replaceChildren();
    this.kept = "";
    this.tail = [];
  }
}
