#!/usr/bin/env python3
"""A held-out check of recall's rule for a match by meaning alone (crates/chat/src/recall.rs:
a cosine of at least 0.3 that stands 3 standard deviations above the question's cosines with
the rest of what left the window), on 20 facts written after the rule was set, in chattier
words than the benchmark's paraphrase set, each asked in other words, against the benchmark's
filler talk. Reference implementation (sentence-transformers), so it runs without a build.

usage: /tmp/refenv/bin/python scripts/meaning-heldout.py /tmp/m/model
       (the folder and the venv as scripts/minilm-reference.py makes them)
Result on 2026-12-05: 16 of 20 found by meaning (docs/BENCHMARKS.md).
"""
import sys

from sentence_transformers import SentenceTransformer

m = SentenceTransformer(sys.argv[1], device="cpu")
pairs = [
 ("By the way, Magnus and I finally set a date: we're tying the knot on June 3rd.", "when is the big day?"),
 ("Work has been crazy, my new supervisor Ingrid keeps scheduling calls at 7am.", "who's the person managing me these days?"),
 ("Oh, and the kids' pediatrician is Dr. Okafor over on Elm Road.", "which doctor sees my children?"),
 ("I finally sold the old Vespa for 900 quid.", "how much did I get for the scooter?"),
 ("We've decided to name the baby Florian if it's a boy.", "what will our son be called?"),
 ("My mum lives in a tiny village near Porto now.", "where has my mother settled?"),
 ("Lost my glasses again, they were in the fridge of all places.", "where did my spectacles turn up?"),
 ("Can't eat shellfish, learned that the hard way in Brittany.", "am I allergic to anything?"),
 ("The team offsite is in Ghent the week of the 12th.", "where is the company retreat?"),
 ("I usually run along the canal before breakfast.", "what's my morning exercise route?"),
 ("Our router is the grey box behind the TV, password on the sticker.", "where's the internet equipment?"),
 ("Grandad served on a minesweeper in the North Sea.", "what did my grandfather do in the navy?"),
 ("Teo is allergic to penicillin, remember that if he gets sick.", "which medicine must my son avoid?"),
 ("I switched to oat milk last month.", "what do I put in my coffee now?"),
 ("The car's MOT is due at the end of April.", "when does the vehicle need its inspection?"),
 ("My cousin runs a small bakery in Lyon called Le Four Bleu.", "what's the name of my relative's shop?"),
 ("We're repainting the bedroom a pale sage green.", "what colour are the walls going to be?"),
 ("My flight home leaves Heathrow at 6:15 on Sunday.", "what time is my plane back?"),
 ("I'm reading a biography of Ada Lovelace at the moment.", "which book am I in the middle of?"),
 ("Our landlord, Mr Haddad, fixes things quickly.", "who owns the flat we rent?"),
]
topics = ["rivers","baking bread","chess openings","volcanoes","jazz","tides","origami","beekeeping","glaciers","typography","sourdough","lighthouses","comets","knitting","bridges","coral reefs","sundials","kites","fossils","windmills"]
fill=[]
for k in range(40):
    t=topics[k%20]
    fill.append(f"Tell me something interesting about {t}, part {k}.")
    fill.append(f"About {t}: it depends a lot on the weather and the season. Part {k} of our talk, and there is always more to learn.")
F = m.encode([p[0] for p in pairs], normalize_embeddings=True)
Q = m.encode([p[1] for p in pairs], normalize_embeddings=True)
Fi = m.encode(fill, normalize_embeddings=True)
ok=0
for i,(f,q) in enumerate(pairs):
    own = float(Q[i]@F[i]); bg = Fi@Q[i]
    mu, sd = float(bg.mean()), float(bg.std())
    near = own>=0.3 and own >= mu+3*sd
    ok+=near
    print(f"{own:.3f} mu={mu:.3f} sd={sd:.3f} near={near} {q}")
print("held-out found by meaning:", ok, "/", len(pairs))
