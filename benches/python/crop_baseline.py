#!/usr/bin/env python3
"""A straightforward Python generator of Contriever crop pairs, as users write
it: HF `tokenizers` to tokenize each document, Python loops to cut windows of
256 tokens and two random crops of 10-50 % each, decode, write JSONL.

    python3 crop_baseline.py CORPUS.jsonl TOKENIZER.json OUT.jsonl [--batch]

Prints one JSON line: documents, bytes, pairs, seconds. With --batch the
documents are tokenized with encode_batch in chunks of 1000 (HF's fast path);
run with RAYON_NUM_THREADS=1 for a one-core figure.
"""
import json
import random
import sys
import time

from tokenizers import Tokenizer


def main():
    corpus, tokenizer, out = sys.argv[1:4]
    batch = "--batch" in sys.argv
    tok = Tokenizer.from_file(tokenizer)
    tok.no_truncation()
    rng = random.Random(42)
    docs = pairs = nbytes = 0
    start = time.perf_counter()

    def crops(ids, o):
        nonlocal pairs
        for s in range(0, len(ids), 256):
            window = ids[s : s + 256]
            if len(window) < 8:
                continue
            sides = []
            for _ in range(2):
                n = max(1, round(rng.uniform(0.1, 0.5) * len(window)))
                b = rng.randint(0, len(window) - n)
                sides.append(tok.decode(window[b : b + n]))
            o.write(json.dumps({"anchor": sides[0], "positive": sides[1]}) + "\n")
            pairs += 1

    with open(corpus, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as o:
        pending = []
        for line in f:
            nbytes += len(line.encode("utf-8"))
            docs += 1
            text = json.loads(line)["text"]
            if not batch:
                crops(tok.encode(text, add_special_tokens=False).ids, o)
                continue
            pending.append(text)
            if len(pending) == 1000:
                for e in tok.encode_batch(pending, add_special_tokens=False):
                    crops(e.ids, o)
                pending = []
        for e in tok.encode_batch(pending, add_special_tokens=False) if pending else []:
            crops(e.ids, o)
    secs = time.perf_counter() - start
    print(json.dumps({"documents": docs, "bytes": nbytes, "pairs": pairs, "seconds": secs}))


if __name__ == "__main__":
    main()
