#!/usr/bin/env python3
"""Regenerates crates/engine/tests/data/smollm2_token_ids.json: SmolLM2's token ids for a set
of strings, as llama.cpp's own tokenizer gives them (llama-tokenize, built by scripts/bench.sh
from the llama-cpp-python source package). The engine's tokenizer test compares against it.

usage: scripts/smollm2-reference-ids.py [path/to/llama-tokenize]
"""
import json, os, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".cache/llama.cpp/build/bin/llama-tokenize")
MODEL = os.path.join(ROOT, ".data/models/SmolLM2-135M-Instruct.Q4_1.gguf")
STRINGS = [
    "Hello world",
    "What is the capital of France?",
    "Grüße aus Köln — naïve café",
    "日本語のテキストを書きます",
    "emoji 👩‍💻🚀 and ü",
    "Здравствуйте, мир!",
    "مرحبا بالعالم",
    "tabs\tand\nnewlines\r\n  indented",
    "   leading and trailing spaces   ",
    "fn main() { println!(\"{}\", 42); }",
    "Prices: $1,234.56 and 3.14159 in 2024",
    "<|im_end|> typed by a user",
    "don't won't I'm you're we'll",
    "ẞ ǅ ﬁ ½ ™ — ellipsis…",
]

out = []
env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(TOOL))
for s in STRINGS:
    r = subprocess.run([TOOL, "-m", MODEL, "--stdin", "--ids", "--log-disable", "--no-bos", "--no-parse-special"],
                       input=s.encode(), capture_output=True, env=env, check=True)
    ids = json.loads(r.stdout.decode().strip().splitlines()[-1])
    out.append({"text": s, "ids": ids})
path = os.path.join(ROOT, "crates/engine/tests/data/smollm2_token_ids.json")
with open(path, "w") as f:
    json.dump({"source": "llama.cpp llama-tokenize (llama-cpp-python 0.3.36), --no-bos --no-parse-special",
               "model_sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
               "vectors": out}, f, ensure_ascii=False, indent=1)
print(f"wrote {len(out)} vectors to {path}")
