// Unit tests of the gauge's arithmetic and the memory timeline, on the compiled modules
// (npm run build first).
import { test } from "node:test";
import assert from "node:assert/strict";
import { gaugeParts, Timeline, aboutWords } from "../test-build/gauge.js";

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

test("pins and recalled text are parts of their own, inside the pinned start and the window", () => {
  const g = gaugeParts(stats({ pinned_used: 60, pinned: 60, pins_used: 40, pins_room: 994, window_used: 500, recalled_used: 30 }));
  const sum = g.pinned + g.pins + g.window + g.recalled + g.free;
  assert.ok(Math.abs(sum - 1) < 1e-9);
  assert.ok(Math.abs(g.pinned - 20 / 2048) < 1e-9, "the system prompt's share without the pins");
  assert.ok(Math.abs(g.pins - 40 / 2048) < 1e-9);
  assert.ok(Math.abs(g.window - 470 / 2048) < 1e-9, "the window's share without the recalled text");
  assert.ok(Math.abs(g.recalled - 30 / 2048) < 1e-9);
  assert.match(g.label, /60 pinned · 500\/2028 window · .* · 40\/994 pinned by you · 30 recalled/);
  assert.match(g.pinsNote, /take 40 of the 994 tokens/);
  // None of either: the label stays as it was, and the help says the room.
  const plain = gaugeParts(stats({ window_used: 100, pins_room: 994 }));
  assert.equal(plain.pins, 0);
  assert.equal(plain.recalled, 0);
  assert.doesNotMatch(plain.label, /pinned by you|recalled/);
  assert.match(plain.pinsNote, /Room for pinned messages: 994 tokens/);
  // Figures that disagree (an older backend) never make a part negative.
  const odd = gaugeParts(stats({ pins_used: 500, recalled_used: 900, window_used: 10 }));
  for (const part of ["pinned", "pins", "window", "recalled", "free"]) assert.ok(odd[part] >= 0, part);
});

test("an empty cache is all free", () => {
  const g = gaugeParts(stats({ pinned_used: 0, tokens_seen: 0 }));
  assert.equal(g.free, 1);
});

test("the timeline rises as the cache fills and marks each eviction", () => {
  const tl = new Timeline(1000);
  for (let seen = 20; seen <= 2048; seen += 4) tl.add(stats({ tokens_seen: seen, window_used: seen - 20 }));
  for (let seen = 2049; seen <= 2060; seen++) tl.add(stats({ tokens_seen: seen, window_used: 2028, evicted_total: seen - 2048 }));
  const { line, evictions } = tl.geometry(100, 10);
  const pts = line.split(" ").map((p) => p.split(",").map(Number));
  assert.equal(pts[0][0], 0);
  assert.equal(pts[pts.length - 1][0], 100);
  assert.ok(pts[0][1] > pts[pts.length - 1][1], "fuller is higher");
  assert.equal(pts[pts.length - 1][1], 0, "full at the end");
  assert.equal(evictions.length, 12);
  assert.ok(evictions.every((x) => x > 95));
});

test("the timeline keeps at most its budget of points", () => {
  const tl = new Timeline(50);
  for (let i = 0; i < 5000; i++) tl.add(stats({ tokens_seen: i, window_used: Math.min(i, 2028) }));
  assert.ok(tl.samples.length <= 50);
  assert.equal(tl.samples[tl.samples.length - 1].seen, 4999, "the newest point stays");
  assert.ok(tl.samples.every((s, i) => i === 0 || s.seen > tl.samples[i - 1].seen));
});

test("a timeline survives its saved form, and a damaged one starts empty", () => {
  const tl = new Timeline(50);
  for (let i = 1; i <= 80; i++) tl.add({ capacity: 10, pinned: 2, pinned_used: 2, window: 8, window_used: Math.min(8, i), tokens_seen: i * 3, evicted_total: Math.max(0, i - 8), evicted_last_step: 0, window_start: 2, bytes: 0, device: "CPU" });
  const back = Timeline.restore(JSON.stringify(tl.samples), 50);
  assert.deepEqual(back.samples, tl.samples);
  assert.deepEqual(back.geometry(160, 24), tl.geometry(160, 24));
  for (const bad of [null, "", "not json", "{}", '[{"seen":"x"}]', "[1,2,3]", '[{"seen":1,"fill":null,"evicted":0}]']) {
    assert.deepEqual(Timeline.restore(bad).samples, [], String(bad));
  }
  assert.equal(Timeline.restore(JSON.stringify(tl.samples), 10).samples.length, 10, "capped at its size");
});

test("the timeline never runs backwards and keeps its eviction marks when counts restart", () => {
  // An older backend restarted a chat's counts when its memory was rebuilt (a pin): 884 seen,
  // 571 evicted, then 162 and 0 (#34, bug 5).
  const tl = new Timeline();
  tl.add(stats({ tokens_seen: 500, evicted_total: 200, window_used: 2028 }));
  tl.add(stats({ tokens_seen: 884, evicted_total: 571, window_used: 2028 }));
  const before = tl.geometry(160, 24).evictions.length;
  assert.equal(before, 1);
  tl.add(stats({ tokens_seen: 162, evicted_total: 0, window_used: 142 }));
  const seen = tl.samples.map((p) => p.seen);
  assert.deepEqual(seen, [...seen].sort((a, b) => a - b), `seen in order: ${seen}`);
  assert.equal(tl.geometry(160, 24).evictions.length, before, "the eviction marks stay");
  assert.equal(tl.samples.at(-1).evicted, 571);
});

test("the memory in words: about how many words, earlier messages out of view, pins, recall; no tokens", () => {
  assert.equal(aboutWords(0), "10");
  assert.equal(aboutWords(67), "50");
  assert.equal(aboutWords(2044), "1,500");
  assert.equal(aboutWords(100000), "75,000");
  const fresh = gaugeParts(stats({}));
  assert.equal(fresh.words, "Remembers nothing of this chat yet");
  const some = gaugeParts(stats({ window_used: 67 }));
  assert.equal(some.words, "Remembers about the last 50 words of this chat");
  const full = gaugeParts(stats({ window_used: 2028, tokens_seen: 100000, evicted_total: 97952, pinned_used: 60, pinned: 60, pins_used: 40, recalled_used: 30 }));
  assert.equal(full.words, "Remembers about the last 1,500 words of this chat · earlier messages saved, out of its view · your pinned messages kept for good · earlier messages brought back for this question");
  for (const g of [fresh, some, full]) assert.doesNotMatch(g.words, /token|sink|evict|pinned start|KV/i);
  // The figures stay, for Details.
  assert.match(full.label, /97952 evicted/);
});
