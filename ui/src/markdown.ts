// Markdown for model replies, rendered safely: the text is parsed into blocks and inline runs,
// and the DOM is built with createElement and textContent only. No model output ever reaches
// innerHTML, so a `<script>` or an `onerror=` in a reply is shown as text and never runs.
// Links keep only http(s) and mailto addresses.

export type Inline =
  | { t: "text"; v: string }
  | { t: "code"; v: string }
  | { t: "strong"; c: Inline[] }
  | { t: "em"; c: Inline[] }
  | { t: "del"; c: Inline[] }
  | { t: "link"; href: string; c: Inline[] };

export type Block =
  | { t: "p"; c: Inline[] }
  | { t: "h"; level: number; c: Inline[] }
  | { t: "code"; lang: string; v: string }
  | { t: "quote"; c: Block[] }
  | { t: "list"; ordered: boolean; start: number; items: Block[][] }
  | { t: "hr" }
  | { t: "table"; head: Inline[][]; rows: Inline[][][] };

// Every pattern runs in linear time on any line: no two neighbouring quantifiers can match the
// same characters (trailing blanks are trimmed before a pattern sees the line; closing
// hashes and table cells are taken apart in code). A reply or an imported chat of 100,000
// characters built to make a pattern backtrack used to freeze the window.
const FENCE_RE = /^ {0,3}(`{3,}|~{3,})[ \t]*([\w+#.-]*)$/;
const HEADING_RE = /^ {0,3}(#{1,6})(?:[ \t]+(.*))?$/;
const HR_RE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}$/;
const FENCE = { exec: (l: string) => FENCE_RE.exec(l.trimEnd()), test: (l: string) => FENCE_RE.test(l.trimEnd()) };
const HR = { test: (l: string) => HR_RE.test(l.trimEnd()) };
const HEADING = {
  /** [whole, hashes, text] with the closing hashes and blanks taken off the text. */
  exec(l: string): [string, string, string] | null {
    const m = HEADING_RE.exec(l.trimEnd());
    if (!m) return null;
    let text = m[2] ?? "";
    let end = text.length;
    while (end > 0 && text[end - 1] === "#") end--;
    if (end > 0 && end < text.length) text = text.slice(0, end).trimEnd(); // "Title ##" → "Title"
    return [m[0], m[1], text];
  },
  test: (l: string) => HEADING_RE.test(l.trimEnd()),
};
const BULLET = /^( {0,3})([-*+])\s+(.*)$/;
const ORDERED = /^( {0,3})(\d{1,9})[.)]\s+(.*)$/;
const QUOTE = /^ {0,3}>\s?(.*)$/;
/** `| --- | :-: |`: cells of two or more dashes, with optional colons, between pipes. */
const TABLE_SEP = {
  test(l: string): boolean {
    let s = l.trim();
    if (s.startsWith("|")) s = s.slice(1);
    if (s.endsWith("|")) s = s.slice(0, -1);
    return s.split("|").every((c) => /^:?-{2,}:?$/.test(c.trim()));
  },
};

/** Lists and quotes nest at most this deep; deeper markers stay text. "* * * * …" nested one
 *  list per marker and overflowed the stack (found by test/markdown.fuzz.test.mjs). */
const MAX_NESTING = 16;

/** Parses Markdown into blocks. Unclosed code fences run to the end (a reply mid-stream). */
export function parseBlocks(src: string, depth = 0): Block[] {
  const nest = depth < MAX_NESTING;
  const lines = src.replace(/\r\n?/g, "\n").split("\n");
  const out: Block[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i++; continue; }
    const fence = FENCE.exec(line);
    if (fence) {
      const close = fence[1];
      const body: string[] = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(close)) body.push(lines[i++]);
      i++; // the closing fence (or past the end)
      out.push({ t: "code", lang: fence[2].toLowerCase(), v: body.join("\n") });
      continue;
    }
    const h = HEADING.exec(line);
    if (h) { out.push({ t: "h", level: h[1].length, c: parseInline(h[2]) }); i++; continue; }
    if (HR.test(line)) { out.push({ t: "hr" }); i++; continue; }
    if (nest && QUOTE.test(line)) {
      const body: string[] = [];
      while (i < lines.length && QUOTE.test(lines[i])) body.push(QUOTE.exec(lines[i++])![1]);
      out.push({ t: "quote", c: parseBlocks(body.join("\n"), depth + 1) });
      continue;
    }
    const b = BULLET.exec(line), o = ORDERED.exec(line);
    if (nest && (b || o)) {
      const ordered = !!o;
      const re = ordered ? ORDERED : BULLET;
      const items: string[][] = [];
      while (i < lines.length) {
        const m = re.exec(lines[i]);
        if (m) { items.push([m[3]]); i++; continue; }
        // Continuation lines: indented, or blank followed by an indented line.
        if (/^\s{2,}\S/.test(lines[i]) && items.length) { items[items.length - 1].push(lines[i].replace(/^\s{2,4}/, "")); i++; continue; }
        if (!lines[i].trim() && i + 1 < lines.length && (re.test(lines[i + 1]) || /^\s{2,}\S/.test(lines[i + 1]))) { i++; continue; }
        break;
      }
      out.push({ t: "list", ordered, start: o ? parseInt(o[2], 10) : 1, items: items.map((it) => parseBlocks(it.join("\n"), depth + 1)) });
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1])) {
      const cells = (l: string) => l.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => parseInline(c.trim()));
      const head = cells(line);
      i += 2;
      const rows: Inline[][][] = [];
      while (i < lines.length && lines[i].includes("|") && lines[i].trim()) rows.push(cells(lines[i++]));
      out.push({ t: "table", head, rows });
      continue;
    }
    const para: string[] = [];
    while (i < lines.length && lines[i].trim() && !FENCE.test(lines[i]) && !HEADING.test(lines[i]) &&
      !(nest && QUOTE.test(lines[i])) && !(nest && para.length && (BULLET.test(lines[i]) || ORDERED.test(lines[i]))) && !HR.test(lines[i])) {
      para.push(lines[i++].trim());
    }
    if (!para.length) { para.push(line.trim()); i++; }
    out.push({ t: "p", c: parseInline(para.join("\n")) });
  }
  return out;
}

function safeHref(href: string): string | null {
  const h = href.trim();
  return /^(https?:\/\/|mailto:)/i.test(h) ? h : null;
}

/** Parses inline Markdown: `code`, **strong**, *em*, ~~del~~, [links](https://…), autolinks. */
export function parseInline(src: string): Inline[] {
  const out: Inline[] = [];
  let text = "";
  const flush = () => { if (text) { out.push({ t: "text", v: text }); text = ""; } };
  let i = 0;
  while (i < src.length) {
    const ch = src[i];
    if (ch === "\\" && i + 1 < src.length && /[\\`*_~[\]()#+\-.!|>]/.test(src[i + 1])) { text += src[i + 1]; i += 2; continue; }
    if (ch === "`") {
      let n = 1; while (src[i + n] === "`") n++;
      const tick = "`".repeat(n);
      const end = src.indexOf(tick, i + n);
      if (end > 0) { flush(); out.push({ t: "code", v: src.slice(i + n, end).trim() || src.slice(i + n, end) }); i = end + n; continue; }
    }
    let matched = false;
    for (const [mark, kind] of [["**", "strong"], ["__", "strong"], ["~~", "del"]] as const) {
      if (src.startsWith(mark, i)) {
        const end = src.indexOf(mark, i + 2);
        if (end > i + 2) { flush(); out.push({ t: kind, c: parseInline(src.slice(i + 2, end)) }); i = end + 2; matched = true; break; }
      }
    }
    if (matched) continue;
    if ((ch === "*" || ch === "_") && src[i + 1] && src[i + 1] !== " " && src[i + 1] !== ch) {
      const end = src.indexOf(ch, i + 1);
      const wordy = ch === "_" && i > 0 && /\w/.test(src[i - 1]);
      if (end > i + 1 && src[end - 1] !== " " && !wordy) { flush(); out.push({ t: "em", c: parseInline(src.slice(i + 1, end)) }); i = end + 1; continue; }
    }
    if (ch === "[") {
      const close = src.indexOf("]", i + 1);
      if (close > 0 && src[close + 1] === "(") {
        const end = src.indexOf(")", close + 2);
        if (end > 0) {
          const href = safeHref(src.slice(close + 2, end));
          flush();
          const label = parseInline(src.slice(i + 1, close));
          out.push(href ? { t: "link", href, c: label } : { t: "text", v: src.slice(i, end + 1) });
          i = end + 1;
          continue;
        }
      }
    }
    if (src.startsWith("http://", i) || src.startsWith("https://", i)) {
      const m = /^https?:\/\/[^\s<>()"']+[^\s<>()"'.,;:!?]/.exec(src.slice(i));
      if (m) { flush(); out.push({ t: "link", href: m[0], c: [{ t: "text", v: m[0] }] }); i += m[0].length; continue; }
    }
    text += ch;
    i++;
  }
  flush();
  return out;
}

// A small highlighter: comments, strings, numbers and keywords of common languages.
const KEYWORDS = new Set(("as async await break case catch class const continue def del do elif else enum export extends " +
  "false fn for from func function go if impl import in interface is lambda let loop match mod mut new nil none " +
  "None null pass pub raise return self static struct super switch this throw true True False try type typeof " +
  "use var void while with yield int float str bool char string public private protected package").split(" "));

export type Token = { kind: "comment" | "string" | "number" | "keyword" | "plain"; v: string };

export function highlight(code: string, lang: string): Token[] {
  const hashComments = /^(py|python|sh|bash|shell|zsh|rb|ruby|yaml|yml|toml|r|perl)$/.test(lang);
  const re = hashComments
    ? /(#[^\n]*)|("""[\s\S]*?"""|'''[\s\S]*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')|(\b\d[\d_.]*(?:e[+-]?\d+)?\b)|([A-Za-z_]\w*)/g
    : /(\/\/[^\n]*|\/\*[\s\S]*?\*\/|<!--[\s\S]*?-->)|("(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`)|(\b\d[\d_.]*(?:e[+-]?\d+)?\b)|([A-Za-z_]\w*)/g;
  const out: Token[] = [];
  let last = 0;
  for (const m of code.matchAll(re)) {
    if (m.index! > last) out.push({ kind: "plain", v: code.slice(last, m.index) });
    const kind = m[1] ? "comment" : m[2] ? "string" : m[3] ? "number" : KEYWORDS.has(m[4]) ? "keyword" : "plain";
    out.push({ kind, v: m[0] });
    last = m.index! + m[0].length;
  }
  if (last < code.length) out.push({ kind: "plain", v: code.slice(last) });
  return out;
}

export interface RenderOptions {
  /** Label of the copy button on code blocks. */
  copyLabel: string;
  copiedLabel: string;
  onCopy?: (text: string) => Promise<void> | void;
}

function renderInline(doc: Document, parent: Node, runs: Inline[]) {
  for (const r of runs) {
    if (r.t === "text") { parent.appendChild(doc.createTextNode(r.v)); continue; }
    if (r.t === "code") { const c = doc.createElement("code"); c.textContent = r.v; parent.appendChild(c); continue; }
    const tag = r.t === "link" ? "a" : r.t;
    const el = doc.createElement(tag);
    if (r.t === "link") {
      el.setAttribute("href", r.href);
      el.setAttribute("rel", "noopener noreferrer");
      el.setAttribute("target", "_blank");
    }
    renderInline(doc, el, r.c);
    parent.appendChild(el);
  }
}

function renderBlocks(doc: Document, parent: Node, blocks: Block[], opts: RenderOptions) {
  for (const b of blocks) {
    switch (b.t) {
      case "p": { const p = doc.createElement("p"); renderInline(doc, p, b.c); parent.appendChild(p); break; }
      case "h": { const h = doc.createElement(`h${Math.min(6, b.level + 2)}`); renderInline(doc, h, b.c); parent.appendChild(h); break; }
      case "hr": parent.appendChild(doc.createElement("hr")); break;
      case "quote": { const q = doc.createElement("blockquote"); renderBlocks(doc, q, b.c, opts); parent.appendChild(q); break; }
      case "list": {
        const l = doc.createElement(b.ordered ? "ol" : "ul");
        if (b.ordered && b.start !== 1) l.setAttribute("start", String(b.start));
        for (const item of b.items) {
          const li = doc.createElement("li");
          // A single-paragraph item renders without the <p>.
          if (item.length === 1 && item[0].t === "p") renderInline(doc, li, item[0].c);
          else renderBlocks(doc, li, item, opts);
          l.appendChild(li);
        }
        parent.appendChild(l);
        break;
      }
      case "table": {
        const wrap = doc.createElement("div"); wrap.className = "table-wrap";
        const t = doc.createElement("table");
        const thead = doc.createElement("thead"), tr = doc.createElement("tr");
        for (const c of b.head) { const th = doc.createElement("th"); renderInline(doc, th, c); tr.appendChild(th); }
        thead.appendChild(tr); t.appendChild(thead);
        const tbody = doc.createElement("tbody");
        for (const row of b.rows) {
          const r = doc.createElement("tr");
          for (const c of row) { const td = doc.createElement("td"); renderInline(doc, td, c); r.appendChild(td); }
          tbody.appendChild(r);
        }
        t.appendChild(tbody); wrap.appendChild(t); parent.appendChild(wrap);
        break;
      }
      case "code": {
        const fig = doc.createElement("div"); fig.className = "code-block";
        const bar = doc.createElement("div"); bar.className = "code-bar";
        const lang = doc.createElement("span"); lang.textContent = b.lang || "text";
        const copy = doc.createElement("button");
        copy.type = "button"; copy.className = "copy-code"; copy.textContent = opts.copyLabel;
        copy.setAttribute("aria-label", `${opts.copyLabel} (${b.lang || "text"})`);
        const code = b.v;
        copy.addEventListener("click", async () => {
          await opts.onCopy?.(code);
          copy.textContent = opts.copiedLabel;
          setTimeout(() => { copy.textContent = opts.copyLabel; }, 1500);
        });
        bar.append(lang, copy);
        const pre = doc.createElement("pre"), c = doc.createElement("code");
        if (b.lang) c.className = `language-${b.lang.replace(/[^\w-]/g, "")}`;
        for (const tok of highlight(code, b.lang)) {
          if (tok.kind === "plain") { c.appendChild(doc.createTextNode(tok.v)); continue; }
          const s = doc.createElement("span"); s.className = `tok-${tok.kind}`; s.textContent = tok.v; c.appendChild(s);
        }
        pre.appendChild(c);
        fig.append(bar, pre);
        parent.appendChild(fig);
        break;
      }
    }
  }
}

/** Renders Markdown into a fragment of safe DOM nodes. */
export function renderMarkdown(doc: Document, src: string, opts: RenderOptions): DocumentFragment {
  const frag = doc.createDocumentFragment();
  renderBlocks(doc, frag, parseBlocks(src), opts);
  return frag;
}
