// Unit tests of the gauge's arithmetic, on the compiled module (npm run build first).
import { test } from "node:test";
import assert from "node:assert/strict";
import { gaugeParts } from "../dist/gauge.js";

const stats = (o) => ({ capacity: 2048, pinned: 20, pinned_used: 20, window: 2028, window_used: 0,
  tokens_seen: 20, evicted_total: 0, evicted_last_step: 0, window_start: 20, bytes: 0, device: "CPU", ...o });

test("parts add up to the whole and follow the cache", () => {
  const g = gaugeParts(stats({ window_used: 1014 }));
  assert.ok(Math.abs(g.pinned + g.window + g.free - 1) < 1e-9);
  assert.ok(Math.abs(g.window - 1014 / 2048) < 1e-9);
  assert.match(g.label, /20 pinned · 1014\/2028 window · 20 seen · 0 evicted/);
});

test("a full cache has no free room and counts evictions", () => {
  const g = gaugeParts(stats({ window_used: 2028, tokens_seen: 100000, evicted_total: 97952 }));
  assert.equal(g.free, 0);
  assert.match(g.label, /97952 evicted/);
});

test("an empty cache is all free", () => {
  const g = gaugeParts(stats({ pinned_used: 0, tokens_seen: 0 }));
  assert.equal(g.free, 1);
});
