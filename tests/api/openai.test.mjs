// SinkChat's OpenAI-compatible server driven by the real `openai` package from npm.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { serve, MODEL } from "./serve.mjs";

let server, client;
before(async () => {
  server = await serve();
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: server.key, maxRetries: 0 });
});
after(async () => { await server?.stop(); });

const ask = (messages, extra = {}) => client.chat.completions.create({ model: MODEL, messages, max_tokens: 12, temperature: 0, ...extra });

test("models: the loaded model", async () => {
  const list = await client.models.list();
  assert.deepEqual(list.data.map((m) => m.id), [MODEL]);
});

test("a plain completion, saved in the app's history", async () => {
  const r = await ask([{ role: "user", content: "Name a colour." }]);
  assert.equal(r.object, "chat.completion");
  assert.ok(r.choices[0].message.content.trim());
  assert.ok(["stop", "length"].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0);
  const msgs = (await server.command("get_messages", { conversationId: r.sinkchat.conversation_id, beforeId: null })).body;
  assert.deepEqual(msgs.map((m) => m.role), ["user", "assistant"]);
  assert.equal(msgs[1].content, r.choices[0].message.content);
});

test("a streamed completion", async () => {
  const stream = await ask([{ role: "user", content: "Count to five." }], { stream: true, stream_options: { include_usage: true } });
  let pieces = 0, text = "", usage = null, finish = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.content) { pieces++; text += c.delta.content; }
      finish = c.finish_reason ?? finish;
    }
  }
  assert.ok(pieces > 2, "the reply came in pieces");
  assert.ok(text.trim());
  assert.ok(["stop", "length"].includes(finish));
  assert.ok(usage && usage.completion_tokens > 0);
});

test("ten turns: later turns are answered without reading the history again", async () => {
  const messages = [{ role: "system", content: "You are a terse assistant." }];
  const fed = [], memory = [], convs = new Set();
  for (let i = 1; i <= 10; i++) {
    messages.push({ role: "user", content: `Question ${i}: name an animal.` });
    const r = await ask(messages, { max_tokens: 8 });
    messages.push({ role: "assistant", content: r.choices[0].message.content });
    fed.push(r.sinkchat.prompt_tokens_fed);
    memory.push(r.sinkchat.memory);
    convs.add(r.sinkchat.conversation_id);
  }
  assert.equal(convs.size, 1, "all ten turns in one chat");
  assert.deepEqual(memory, ["rebuilt", ...Array(9).fill("live")]);
  for (const n of fed.slice(1)) assert.ok(n < 40, `a later turn read ${n} tokens`);
  const fresh = await ask([{ role: "system", content: "You are a terse helper." }, ...messages.slice(1, -1)], { max_tokens: 4 });
  assert.equal(fresh.sinkchat.memory, "rebuilt");
  assert.ok(fresh.sinkchat.prompt_tokens_fed > 5 * Math.max(...fed.slice(1)));
  console.log(`prompt tokens fed per turn (npm client): ${fed.join(", ")}; as a new chat: ${fresh.sinkchat.prompt_tokens_fed}`);
});

test("four clients at once", async () => {
  const rs = await Promise.all([0, 1, 2, 3].map((i) => {
    const c = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: server.key, maxRetries: 0 });
    return c.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: `Client ${i}: say hello.` }], max_tokens: 8 });
  }));
  assert.equal(new Set(rs.map((r) => r.sinkchat.conversation_id)).size, 4);
  for (const r of rs) assert.ok(r.choices[0].message.content.trim());
});

test("errors in OpenAI's shape; the server keeps serving and loses nothing", async () => {
  const wrong = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "sk-wrong", maxRetries: 0 });
  await assert.rejects(wrong.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "hi" }] }),
    (e) => e instanceof OpenAI.AuthenticationError && e.status === 401 && e.code === "invalid_api_key");
  let r = await fetch(`${server.url}/v1/chat/completions`, { method: "POST", body: "{}" });
  assert.equal(r.status, 401);
  assert.equal((await r.json()).error.code, "missing_api_key");
  r = await fetch(`${server.url}/v1/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${server.key}`, "content-type": "application/json" }, body: '{"model": ' });
  assert.equal(r.status, 400);
  assert.equal((await r.json()).error.type, "invalid_request_error");
  await assert.rejects(ask([{ role: "user", content: "hi" }], { model: "gpt-4o" }),
    (e) => e instanceof OpenAI.NotFoundError && e.code === "model_not_found");
  const count = async () => (await server.command("list_conversations", { beforeUpdated: null, beforeId: null })).body.length;
  const n = await count();
  await assert.rejects(ask([{ role: "user", content: "x".repeat(100_001) }]),
    (e) => e instanceof OpenAI.BadRequestError && e.code === "message_too_long");
  await assert.rejects(ask([{ role: "tool", content: "42" }, { role: "user", content: "hi" }]), (e) => e.status === 400);
  await assert.rejects(ask([{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }]), (e) => e.status === 400);
  assert.equal(await count(), n, "a refused request made no chat");
  assert.ok((await ask([{ role: "user", content: "Still there?" }])).choices[0].message.content);
});

test("a client that hangs up mid-stream: its reply stops and what was written is saved", async () => {
  const ac = new AbortController();
  const stream = await ask([{ role: "user", content: "Write a long story about a lighthouse." }], { stream: true, max_tokens: 400 }, { signal: ac.signal });
  let got = "";
  try {
    for await (const chunk of stream) {
      got += chunk.choices[0]?.delta?.content ?? "";
      if (got.length > 20) { stream.controller.abort(); }
    }
  } catch { /* the abort */ }
  let msgs;
  for (let i = 0; i < 200; i++) {
    const convs = (await server.command("list_conversations", { beforeUpdated: null, beforeId: null })).body;
    const c = convs.find((c) => c.title.startsWith("Write a long story about a lighthouse"));
    msgs = (await server.command("get_messages", { conversationId: c.id, beforeId: null })).body;
    if (msgs.at(-1).status !== "streaming") break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(msgs.at(-1).status, "stopped");
  assert.ok(msgs.at(-1).content.length >= got.trim().length - 1);
  assert.ok(server.alive());
  assert.ok((await ask([{ role: "user", content: "Hello again." }])).choices[0].message.content);
});

test("two clients writing to one conversation: the second is told 409", async () => {
  const messages = [{ role: "user", content: "Tell me about mountains." }];
  const r = await ask(messages, { max_tokens: 6 });
  messages.push({ role: "assistant", content: r.choices[0].message.content }, { role: "user", content: "Tell me a very long story about a mountain." });
  const first = await ask(messages, { stream: true, max_tokens: 300 });
  const it = first[Symbol.asyncIterator]();
  await it.next();
  await assert.rejects(ask(messages), (e) => e instanceof OpenAI.ConflictError && e.status === 409 && e.code === "conversation_busy");
  first.controller.abort();
  assert.ok((await ask([{ role: "user", content: "And now?" }])).choices[0].message.content);
});
