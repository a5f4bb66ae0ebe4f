// The cache gauge: pinned | window in use | free, as fractions of the capacity; and a timeline
// of occupancy and evictions over the conversation.

import type { CacheStats } from "./bindings/CacheStats.js";
import { t } from "./strings.js";

export interface GaugeParts { pinned: number; window: number; free: number; label: string }

export function gaugeParts(s: CacheStats): GaugeParts {
  const cap = Math.max(1, s.capacity);
  const pinned = s.pinned_used / cap;
  const window = s.window_used / cap;
  const free = Math.max(0, 1 - pinned - window);
  const label = t.gaugeLabel(s.pinned_used, s.window_used, s.window, s.tokens_seen, s.evicted_total);
  return { pinned, window, free, label };
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

  add(s: CacheStats) {
    const fill = (s.pinned_used + s.window_used) / Math.max(1, s.capacity);
    const last = this.samples[this.samples.length - 1];
    if (last && last.seen === s.tokens_seen) { last.fill = fill; last.evicted = s.evicted_total; return; }
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
