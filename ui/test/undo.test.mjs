import { test, mock } from "node:test";
import assert from "node:assert/strict";
import { PendingDeletes } from "../test-build/undo.js";

test("a delete waits for its undo window, and undo cancels it", () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const done = [];
    const p = new PendingDeletes(5000);
    assert.ok(p.schedule(1, async () => { done.push(1); }));
    assert.ok(p.schedule(2, async () => { done.push(2); }));
    assert.equal(p.schedule(1, async () => { done.push(99); }), false, "no double delete");
    mock.timers.tick(4999);
    assert.deepEqual(done, [], "nothing deleted inside the undo window");
    assert.ok(p.undo(2));
    assert.equal(p.undo(2), false);
    mock.timers.tick(1);
    assert.deepEqual(done, [1]);
    assert.equal(p.isPending(1), false);
    mock.timers.tick(10_000);
    assert.deepEqual(done, [1], "the undone delete never happens");
  } finally {
    mock.timers.reset();
  }
});

test("flush carries out pending deletes at once", async () => {
  const done = [];
  const p = new PendingDeletes(60_000);
  p.schedule(3, async () => { done.push(3); });
  await p.flush();
  assert.deepEqual(done, [3]);
  assert.equal(p.isPending(3), false);
});
