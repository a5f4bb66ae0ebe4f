// Errors as the window shows them (#34): no paths, web addresses or "os error", advice once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { plainError } from "../test-build/plain.js";

test("paths, addresses and os errors stay out of what the window shows", () => {
  // The messages the issue found, as the backend wrote them.
  const cases = [
    ["the model file /root/.local/share/sinkchat/models/SmolLM2.Q4_1.gguf could not be opened: No such file or directory (os error 2)",
      "The model file SmolLM2.Q4_1.gguf could not be opened: No such file or directory."],
    ["error sending request for url (https://huggingface.co/api/models/x/y/revision/main)",
      "The connection failed."],
    ["the hub at https://huggingface.co/api/models did not answer", "The hub at huggingface.co did not answer."],
    ["C:\\Users\\ann\\models\\m.gguf is not a GGUF model file", "M.gguf is not a GGUF model file."],
  ];
  for (const [raw, want] of cases) {
    const got = plainError(raw);
    assert.equal(got, want);
    assert.doesNotMatch(got, /os error|https?:|\/root|\\Users/);
  }
});

test("the way forward is added once, never twice", () => {
  const hint = "Check the connection, then resume the download.";
  assert.equal(plainError("the connection stalled", hint), `The connection stalled. ${hint}`);
  assert.equal(plainError(`the connection stalled. ${hint}`, hint), `The connection stalled. ${hint}`);
  assert.equal(plainError("", hint), `Something went wrong. ${hint}`);
  // Sentences that hold no path are left as they are.
  const s = "This model's weights are stored as IQ1_S, a weight type SinkChat cannot run yet.";
  assert.equal(plainError(s), s);
  assert.equal(plainError("a reply is 3/4 done"), "A reply is 3/4 done.");
});
