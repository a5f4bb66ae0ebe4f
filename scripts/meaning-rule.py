#!/usr/bin/env python3
"""Recall's rule for a message found by meaning alone (crates/chat/src/recall.rs, near_enough),
checked with the reference implementation (sentence-transformers, all-MiniLM-L6-v2), so that it
runs without a build, on both sides of what the rule must do:

- find: the paraphrase set (crates/bench/data/paraphrase.json, 52 facts) and 20 facts written
  after the first rule was set (paraphrase-heldout.json, chattier words), each question against
  its fact and a background of N other messages: the recall bench's filler talk (N = 240), and
  paragraphs of a novel (N = 300, a background as varied as a real chat, or more);
- stay silent: every paragraph of each novel given that asks something (recall::asks), against
  every paragraph that has left a 1,024-token window before it (tokens estimated as 1.35 a word:
  the real run is `sinkchat-bench eval recall-perplexity`). A paragraph whose best match passes
  the rule is one recall would add text to.

Each rule: a cosine of at least 0.3 and at least k standard deviations above the mean of the
question's cosines with the N messages; k is 3 (the first rule), or chance's best among N,
sqrt(2 ln N), plus a margin (the rule that ships: margin 1, never under 3).

usage:
  target/debug/sinkchat-bench eval text --book emma > /tmp/emma.txt   # and persuasion, ...
  /tmp/refenv/bin/python scripts/meaning-rule.py .data/models/meaning/all-MiniLM-L6-v2 \\
      /tmp/emma.txt /tmp/persuasion.txt /tmp/prideprejudice.txt
(/tmp/refenv as scripts/minilm-reference.py makes it.) Results: docs/BENCHMARKS.md.
"""
import json
import math
import os
import re
import sys

import numpy as np
from sentence_transformers import SentenceTransformer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
model = SentenceTransformer(sys.argv[1], device="cpu")
model.max_seq_length = 256  # as the app embeds (a longer text by its start)
books = sys.argv[2:]


def embed(texts):
    return model.encode(texts, normalize_embeddings=True, batch_size=64)


OPENERS = set(
    "who whom whose what whats which when where why how do does did is are was were can could "
    "would will should shall may have has tell remind remember recall give list name say write "
    "describe explain summarize summarise repeat please help find show suggest recommend".split()
)


def asks(text):  # recall::asks
    if "?" in text or "\uff1f" in text:
        return True
    words = [w for w in re.split(r"[^\w'\u2019]+", text) if w]
    return bool(words) and "".join(c for c in words[0].lower() if c.isalnum()) in OPENERS


RULES = {
    "3 sd (first rule)": lambda n: 3.0,
    "chance + 0.5 sd": lambda n: max(3.0, math.sqrt(2 * math.log(n)) + 0.5),
    "chance + 1 sd (ships)": lambda n: max(3.0, math.sqrt(2 * math.log(n)) + 1.0),
    "chance + 1.5 sd": lambda n: max(3.0, math.sqrt(2 * math.log(n)) + 1.5),
}


def passes(rule, cos, others):
    """Whether `cos` passes against the question's cosines with the other messages gone."""
    n = len(others) + 1
    if n < 8:
        return cos >= 0.3
    if rule.startswith("3 sd"):  # the first rule: the spread of all, the match among them
        every = np.append(others, cos)
        return cos >= 0.3 and cos >= every.mean() + 3.0 * every.std()
    # The rule that ships: the match against the rest, whose best chance alone puts
    # sqrt(2 ln (n - 1)) deviations up.
    return cos >= 0.3 and cos >= others.mean() + RULES[rule](n - 1) * others.std()


def filler():  # crates/bench/src/recall_bench.rs, filler()
    topics = ["rivers", "baking bread", "chess openings", "volcanoes", "jazz", "tides", "origami",
              "beekeeping", "glaciers", "typography", "sourdough", "lighthouses", "comets",
              "knitting", "bridges", "coral reefs", "sundials", "kites", "fossils", "windmills"]
    facts = ["it has a long history and people still argue about the details",
             "the basics are simple but mastering it takes years of practice",
             "it depends a lot on the weather and the season",
             "there are many regional styles, each with its own traditions",
             "small changes in the method make a surprisingly large difference"]
    out = []
    for k in range(120):
        t, f = topics[k % 20], facts[(k // 20 + k) % 5]
        out += [f"Tell me something interesting about {t}, part {k}.",
                f"About {t}: {f}. Part {k} of our talk, and there is always more to learn."]
    return out


def paragraphs(path):
    return [p.strip() for p in open(path, encoding="utf-8").read().split("\n\n") if p.strip()]


novels = {os.path.basename(b).split(".")[0]: paragraphs(b) for b in books}
vectors = {name: embed(ps) for name, ps in novels.items()}
backgrounds = {"filler": embed(filler())}
# Two windows on: a dozen messages gone, the fewest the bench's rule judges a spread by.
backgrounds["filler, 12 gone"] = backgrounds["filler"][:12]
rng = np.random.default_rng(0)
for name, v in vectors.items():
    backgrounds[name] = v[rng.choice(len(v), min(300, len(v)), replace=False)]

sets = {}
for file in ["paraphrase.json", "paraphrase-heldout.json"]:
    pairs = json.load(open(os.path.join(ROOT, "crates/bench/data", file), encoding="utf-8"))
    sets[file] = (embed([p["fact"] for p in pairs]), embed([p["question"] for p in pairs]))

silence = {}
for name, ps in novels.items():
    v = vectors[name]
    tokens = np.array([len(p.split()) * 1.35 + 2 for p in ps])
    ends = np.cumsum(tokens)
    asking = []
    for i in range(1, len(ps)):
        if not asks(ps[i]):
            continue
        gone = np.where(ends <= ends[i - 1] + tokens[i] + 24 - 1020)[0]
        if len(gone) == 0:
            continue
        c = v[gone] @ v[i]
        best = int(np.argmax(c))
        asking.append((c[best], np.delete(c, best)))
    silence[name] = asking

print(f"{'rule':24s} | " + " | ".join(
    [f"{f} / {bg}" for f in sets for bg in backgrounds] + [f"silent? {n}" for n in novels]))
for rule in RULES:
    cells = []
    for f, (F, Q) in sets.items():
        for bg, B in backgrounds.items():
            found = sum(passes(rule, float(F[i] @ Q[i]), B @ Q[i]) for i in range(len(F)))
            cells.append(f"found {found}/{len(F)}")
    for name, asking in silence.items():
        fired = sum(passes(rule, float(c), o) for c, o in asking)
        cells.append(f"adds to {fired}/{len(asking)}")
    print(f"{rule:24s} | " + " | ".join(cells))
