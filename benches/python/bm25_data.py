#!/usr/bin/env python3
"""Makes a BM25 benchmark set from the shipped corpus: N passages of 100
words (windows over the running text with a stride that gives N) and 1,000
queries (8-word spans drawn with a fixed seed). Writes JSONL (`_id`, `text`).

    python3 bm25_data.py N OUT_DIR
"""
import json
import os
import random
import sys

n, out = int(sys.argv[1]), sys.argv[2]
here = os.path.dirname(os.path.abspath(__file__))
words = []
with open(os.path.join(here, "..", "..", "corpora", "python-docs", "corpus.jsonl"), encoding="utf-8") as f:
    for line in f:
        words += json.loads(line)["text"].split()
stride = max(1, (len(words) - 100) // n)
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "corpus.jsonl"), "w", encoding="utf-8") as f:
    for i in range(n):
        start = (i * stride) % (len(words) - 100)
        f.write(json.dumps({"_id": f"p{i}", "text": " ".join(words[start:start + 100])}) + "\n")
rng = random.Random(1)
with open(os.path.join(out, "queries.jsonl"), "w", encoding="utf-8") as f:
    for i in range(1000):
        s = rng.randrange(len(words) - 8)
        f.write(json.dumps({"_id": f"q{i}", "text": " ".join(words[s:s + 8])}) + "\n")
