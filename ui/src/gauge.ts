// The cache gauge: the pinned start (system prompt and first tokens) | the user's pins | the
// window in use | recalled text in the window | free, as fractions of the capacity; and a
// timeline of occupancy and evictions over the conversation.

import type { Gauge } from "./bindings/Gauge.js";
import { t } from "./strings.js";

export interface GaugeParts {
  pinned: number; pins: number; window: number; recalled: number; free: number;
  /** The memory in words, for everyone. */
  words: string;
  /** The figures in tokens, under Details. */
  label: string;
  /** What the help adds about pins: how much of their room they take. */
  pinsNote: string;
}

export function gaugeParts(s: Gauge): GaugeParts {
  const cap = Math.max(1, s.capacity);
  const pinsUsed = Math.min(s.pins_used ?? 0, s.pinned_used);
  const recalledUsed = Math.min(s.recalled_used ?? 0, s.window_used);
  const pinned = (s.pinned_used - pinsUsed) / cap;
  const pins = pinsUsed / cap;
  const window = (s.window_used - recalledUsed) / cap;
  const recalled = recalledUsed / cap;
  const free = Math.max(0, 1 - pinned - pins - window - recalled);
  let label = t.gaugeLabel(s.pinned_used, s.window_used, s.window, s.tokens_seen, s.evicted_total);
  if (pinsUsed > 0) label += t.gaugePins(pinsUsed, s.pins_room ?? 0);
  if (recalledUsed > 0) label += t.gaugeRecalled(recalledUsed);
  if (s.server_prompt != null && s.server_cached != null) label += t.gaugeServer(s.server_cached, s.server_prompt);
  let pinsNote = (s.pins_room ?? 0) > 0 ? t.gaugePinsNote(pinsUsed, s.pins_room) : "";
  if ((s.sliding_layers ?? 0) > 0) pinsNote = `${pinsNote} ${t.gaugeSliding(s.sliding_layers, s.sliding_window)}`.trim();
  return { pinned, pins, window, recalled, free, words: inWords(s, pinsUsed, recalledUsed), label, pinsNote };
}

/** About how many words `tokens` tokens of English are (3 words to 4 tokens), rounded as a
 *  person would say it: to ten below 100, else to two figures. */
export function aboutWords(tokens: number): string {
  const w = tokens * 0.75;
  const r = w < 100 ? Math.max(10, Math.round(w / 10) * 10) : Number(w.toPrecision(2));
  return r.toLocaleString("en-US");
}

/** What the model remembers, in words: the recent words it holds, and whether earlier messages
 *  are out of its view, pinned or brought back. */
function inWords(s: Gauge, pinsUsed: number, recalledUsed: number): string {
  const recent = s.window_used - recalledUsed;
  const parts = [recent > 0 ? t.memoryWords(aboutWords(recent)) : t.memoryEmpty];
  if (s.evicted_total > 0) parts.push(t.memoryOutOfView);
  if (pinsUsed > 0) parts.push(t.memoryPinned);
  if (recalledUsed > 0) parts.push(t.memoryRecalled);
  return parts.join(" · ");
}

export interface Sample { seen: number; fill: number; evicted: number }

/** Occupancy over tokens seen, kept to at most `max` points by merging neighbours. */
export class Timeline {
  samples: Sample[] = [];
  constructor(readonly max = 240) {}

  /** A timeline back from its saved form (`JSON.stringify(timeline.samples)`); anything
   *  unreadable gives an empty one. */
  static restore(saved: string | null, max = 240): Timeline {
    const tl = new Timeline(max);
    try {
      const v: unknown = JSON.parse(saved ?? "[]");
      if (Array.isArray(v)) {
        tl.samples = v.filter((p): p is Sample => p && typeof p === "object"
          && [p.seen, p.fill, p.evicted].every((n) => typeof n === "number" && Number.isFinite(n))).slice(-max);
      }
    } catch { /* empty */ }
    return tl;
  }

  add(s: Gauge) {
    const fill = (s.pinned_used + s.window_used) / Math.max(1, s.capacity);
    const last = this.samples[this.samples.length - 1];
    // A point behind the last (counts from an older version, which restarted them when a
    // memory was rebuilt) updates the last one: the line never runs backwards.
    if (last && s.tokens_seen <= last.seen) { last.fill = fill; last.evicted = Math.max(last.evicted, s.evicted_total); return; }
    this.samples.push({ seen: s.tokens_seen, fill, evicted: s.evicted_total });
    if (this.samples.length > this.max) {
      // Drop every other point of the older half: recent detail stays sharp.
      const half = Math.floor(this.samples.length / 2);
      this.samples = this.samples.filter((_, i) => i >= half || i % 2 === 0);
    }
  }

  /** SVG points of the occupancy line and x positions of eviction ticks, in a w×h box. */
  geometry(w: number, h: number): { line: string; evictions: number[] } {
    const s = this.samples;
    if (!s.length) return { line: "", evictions: [] };
    const x0 = s[0].seen, span = Math.max(1, s[s.length - 1].seen - x0);
    const x = (v: number) => ((v - x0) / span) * w;
    const line = s.map((p) => `${x(p.seen).toFixed(1)},${(h - p.fill * h).toFixed(1)}`).join(" ");
    const evictions: number[] = [];
    for (let i = 1; i < s.length; i++) if (s[i].evicted > s[i - 1].evicted) evictions.push(x(s[i].seen));
    return { line, evictions };
  }
}
