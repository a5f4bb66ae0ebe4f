"""SinkChat's OpenAI-compatible server driven by the real `openai` client from PyPI."""

import concurrent.futures
import json
import unittest

import urllib.error
import urllib.request
import openai

from server import MODEL, Serve


def raw_post(url, body, headers):
    """A request no client would send: (status, JSON body)."""
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def extension(obj):
    """SinkChat's own figures in a response (the client keeps unknown fields as extras)."""
    return obj.model_extra["sinkchat"]


class OpenAIClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Serve().__enter__()
        cls.client = openai.OpenAI(base_url=cls.server.url + "/v1", api_key=cls.server.key, max_retries=0)

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)

    def ask(self, messages, **kw):
        return self.client.chat.completions.create(model=MODEL, messages=messages, max_tokens=kw.pop("max_tokens", 12), temperature=0, **kw)

    def test_models_lists_the_loaded_model(self):
        ids = [m.id for m in self.client.models.list()]
        self.assertEqual(ids, [MODEL])

    def test_plain_completion(self):
        r = self.ask([{"role": "user", "content": "Name a colour."}])
        self.assertEqual(r.object, "chat.completion")
        self.assertTrue(r.choices[0].message.content.strip())
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
        self.assertGreater(r.usage.prompt_tokens, 0)
        self.assertGreater(r.usage.completion_tokens, 0)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)
        # The chat is in the app's history, with the reply saved.
        conv = extension(r)["conversation_id"]
        msgs = self.server.command("get_messages", conversationId=conv, beforeId=None)
        self.assertEqual([m["role"] for m in msgs], ["user", "assistant"])
        self.assertEqual(msgs[1]["content"], r.choices[0].message.content)

    def test_streamed_completion(self):
        stream = self.ask([{"role": "user", "content": "Count to five."}], stream=True, stream_options={"include_usage": True})
        parts, usage, finish = [], None, None
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for c in chunk.choices:
                parts.append(c.delta.content or "")
                finish = c.finish_reason or finish
        self.assertGreater(len([p for p in parts if p]), 2, "the reply came in pieces")
        self.assertIn(finish, ("stop", "length"))
        self.assertIsNotNone(usage)
        self.assertGreater(usage.completion_tokens, 0)

    def test_ten_turns_are_answered_without_reading_the_history_again(self):
        messages = [{"role": "system", "content": "You are a terse assistant."}]
        fed, memory = [], []
        for i in range(10):
            messages.append({"role": "user", "content": f"Question {i + 1}: name a number."})
            r = self.ask(messages, max_tokens=8)
            messages.append({"role": "assistant", "content": r.choices[0].message.content})
            fed.append(extension(r)["prompt_tokens_fed"])
            memory.append(extension(r)["memory"])
            conv = extension(r)["conversation_id"]
            if i == 0:
                first_conv = conv
            self.assertEqual(conv, first_conv, f"turn {i + 1} went to another chat")
        self.assertEqual(memory, ["rebuilt"] + ["live"] * 9)
        # Each later turn reads only its own new message (plus the previous reply's close).
        for i, n in enumerate(fed[1:], start=2):
            self.assertLess(n, 40, f"turn {i} read {n} tokens")
        # The same ten turns sent as a new conversation are read whole.
        fresh = [{"role": "system", "content": "You are a terse helper."}] + messages[1:-1]
        r = self.ask(fresh, max_tokens=4)
        self.assertEqual(extension(r)["memory"], "rebuilt")
        self.assertGreater(extension(r)["prompt_tokens_fed"], 5 * max(fed[1:]))
        print(f"\nprompt tokens fed per turn (python client): {fed}; the same transcript as a new chat: {extension(r)['prompt_tokens_fed']}")

    def test_four_clients_at_once(self):
        def one(i):
            c = openai.OpenAI(base_url=self.server.url + "/v1", api_key=self.server.key, max_retries=0)
            r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"Client {i}: say hello."}], max_tokens=8)
            return extension(r)["conversation_id"], r.choices[0].message.content
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, range(4)))
        self.assertEqual(len({c for c, _ in results}), 4, "each client has its own chat")
        self.assertTrue(all(text.strip() for _, text in results))

    def test_errors_come_in_openai_shape_and_the_server_keeps_serving(self):
        # A wrong key, and none.
        bad = openai.OpenAI(base_url=self.server.url + "/v1", api_key="sk-wrong", max_retries=0)
        with self.assertRaises(openai.AuthenticationError) as e:
            bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        self.assertEqual(e.exception.status_code, 401)
        self.assertEqual(e.exception.code, "invalid_api_key")
        status, body = raw_post(self.server.url + "/v1/chat/completions", b"{}", {"content-type": "application/json"})
        self.assertEqual(status, 401)
        self.assertEqual(body["error"]["code"], "missing_api_key")
        # Malformed JSON.
        status, body = raw_post(self.server.url + "/v1/chat/completions", b'{"model": ', {"authorization": f"Bearer {self.server.key}", "content-type": "application/json"})
        self.assertEqual(status, 400)
        self.assertEqual(body["error"]["type"], "invalid_request_error")
        # An unknown model.
        with self.assertRaises(openai.NotFoundError) as e:
            self.client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        self.assertEqual(e.exception.code, "model_not_found")
        # A message over the limit: refused, nothing half-saved.
        before = len(self.server.command("list_conversations", beforeUpdated=None, beforeId=None))
        with self.assertRaises(openai.BadRequestError) as e:
            self.ask([{"role": "user", "content": "x" * 100_001}])
        self.assertEqual(e.exception.code, "message_too_long")
        with self.assertRaises(openai.BadRequestError):
            self.ask([{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "y" * 100_001}, {"role": "user", "content": "now"}])
        self.assertEqual(len(self.server.command("list_conversations", beforeUpdated=None, beforeId=None)), before)
        # The server still answers.
        self.assertTrue(self.ask([{"role": "user", "content": "Still there?"}]).choices[0].message.content)

    def test_a_client_that_hangs_up_mid_stream_stops_its_reply_and_keeps_what_was_written(self):
        stream = self.ask([{"role": "user", "content": "Write a long story about the sea."}], stream=True, max_tokens=400)
        got = ""
        for chunk in stream:
            got += chunk.choices[0].delta.content or "" if chunk.choices else ""
            if len(got) > 20:
                break
        stream.close()
        self.assertTrue(self.server.alive())
        # The reply was stopped and saved as far as it went; the server keeps serving.
        import time
        for _ in range(200):
            convs = self.server.command("list_conversations", beforeUpdated=None, beforeId=None)
            sea = [c for c in convs if c["title"].startswith("Write a long story about the sea")]
            msgs = self.server.command("get_messages", conversationId=sea[0]["id"], beforeId=None)
            if msgs[-1]["status"] != "streaming":
                break
            time.sleep(0.1)
        self.assertEqual(msgs[-1]["status"], "stopped")
        self.assertTrue(msgs[-1]["content"].startswith(got.strip()[:10]))
        self.assertTrue(self.ask([{"role": "user", "content": "Hello again."}]).choices[0].message.content)

    def test_two_clients_writing_to_one_conversation(self):
        messages = [{"role": "user", "content": "Tell me about rivers."}]
        r = self.ask(messages, max_tokens=6)
        messages.append({"role": "assistant", "content": r.choices[0].message.content})
        messages.append({"role": "user", "content": "Tell me a very long story about a river."})
        first = self.ask(messages, stream=True, max_tokens=300)
        next(iter(first))  # the first client's reply is being written
        with self.assertRaises(openai.ConflictError) as e:
            self.ask(messages)
        self.assertEqual(e.exception.status_code, 409)
        self.assertEqual(e.exception.code, "conversation_busy")
        first.close()
        self.assertTrue(self.ask([{"role": "user", "content": "And now?"}]).choices[0].message.content)


if __name__ == "__main__":
    unittest.main(verbosity=2)
