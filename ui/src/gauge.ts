// The cache gauge: pinned | window in use | free, as fractions of the capacity.

import type { CacheStats } from "./api.js";

export interface GaugeParts { pinned: number; window: number; free: number; label: string }

export function gaugeParts(s: CacheStats): GaugeParts {
  const cap = Math.max(1, s.capacity);
  const pinned = s.pinned_used / cap;
  const window = s.window_used / cap;
  const free = Math.max(0, 1 - pinned - window);
  const label = `${s.pinned_used} pinned · ${s.window_used}/${s.window} window · ${s.tokens_seen} seen · ${s.evicted_total} evicted`;
  return { pinned, window, free, label };
}
