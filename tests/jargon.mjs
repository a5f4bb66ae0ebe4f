// The jargon list (tests/jargon.json) as one check both doors' tests use (#34).
import { readFileSync } from "node:fs";

const list = JSON.parse(readFileSync(new URL("./jargon.json", import.meta.url), "utf8"));
const escape = (w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Each jargon word or pattern found in `text`, with the words around it. */
export function findJargon(text) {
  const found = [];
  const near = (i) => text.slice(Math.max(0, i - 30), i + 40).replace(/\s+/g, " ");
  for (const w of list.words) {
    // Whole words; "KV" as written (in lower case it is part of other words' spelling).
    const re = new RegExp(`(^|[^\\p{L}\\p{N}])${escape(w)}(?![\\p{L}\\p{N}])`, w === "KV" ? "gu" : "giu");
    for (const m of text.matchAll(re)) found.push(`"${w}" in "…${near(m.index)}…"`);
  }
  for (const p of list.patterns) {
    for (const m of text.matchAll(new RegExp(p.regex, p.flags + "g"))) found.push(`${p.name} "${m[0].trim()}" in "…${near(m.index)}…"`);
  }
  return found;
}
