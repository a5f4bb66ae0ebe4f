// Settings' simple choices (#34): styles map to stated sampling values and back; a value set
// under Advanced (or in a file from before the styles) reads as the user's own, unchanged.
import { test } from "node:test";
import assert from "node:assert/strict";
import { STYLES, styleOf, keepSizes, keepWords } from "../test-build/choices.js";

test("each style reads back as itself; the engine's defaults read as Balanced", () => {
  for (const [name, v] of Object.entries(STYLES)) assert.equal(styleOf(v), name);
  assert.equal(styleOf({ temperature: 0.7, top_p: 0.9, top_k: 40, repeat_penalty: 1.1 }), "balanced");
  // Precise is less random than balanced, creative more.
  assert.ok(STYLES.precise.temperature < STYLES.balanced.temperature);
  assert.ok(STYLES.creative.temperature > STYLES.balanced.temperature);
});

test("any other mix is the user's own and is not rounded to a style", () => {
  assert.equal(styleOf({ temperature: 0.75, top_p: 0.9, top_k: 40, repeat_penalty: 1.1 }), "own");
  assert.equal(styleOf({ temperature: 0.7, top_p: 0.9, top_k: 41, repeat_penalty: 1.1 }), "own");
  assert.equal(styleOf({ temperature: 0.2, top_p: 0.9, top_k: 40, repeat_penalty: 1.3 }), "own");
});

test("how much it keeps in mind is said in words, and an unusual size is offered as it is", () => {
  assert.equal(keepWords(2048), "1,500");
  assert.equal(keepWords(1024), "770");
  assert.equal(keepWords(8192), "6,100");
  assert.match(keepWords(2048, "fr"), /^1\s500$/u, "French groups digits with a space");
  assert.deepEqual(keepSizes(2048), [1024, 2048, 4096, 8192]);
  assert.deepEqual(keepSizes(68), [68, 1024, 2048, 4096, 8192]);
  assert.deepEqual(keepSizes(3000), [1024, 2048, 3000, 4096, 8192]);
});
