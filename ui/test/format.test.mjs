// Sizes, durations and search snippets as people read them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { bytes, duration, count } from "../test-build/format.js";
import { snippetParts } from "../test-build/search.js";

test("sizes and durations", () => {
  assert.equal(bytes(98_362_432), "98 MB");
  assert.equal(bytes(4_370_000_000), "4.4 GB");
  assert.equal(bytes(512), "512 bytes");
  assert.equal(bytes(null), "?");
  // In French: its units and its decimal comma.
  assert.equal(bytes(4_370_000_000, "fr"), "4,4 Go");
  assert.equal(bytes(98_362_432, "fr"), "98 Mo");
  assert.equal(bytes(512, "fr"), "512 octets");
  assert.equal(bytes(1_500_000_000, "en"), "1.5 GB");
  assert.equal(duration(42.4), "42 s");
  assert.equal(duration(125), "2 min 5 s");
  assert.equal(duration(null), "–");
  assert.equal(count(134_515_008), "135M");
});

test("search snippets mark the matches", () => {
  assert.deepEqual(snippetParts("…the [[zebra]] ran [[fast]]"), [
    { text: "…the ", hit: false }, { text: "zebra", hit: true }, { text: " ran ", hit: false }, { text: "fast", hit: true },
  ]);
  assert.deepEqual(snippetParts("plain"), [{ text: "plain", hit: false }]);
});
