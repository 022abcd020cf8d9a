#!/usr/bin/env python3
"""BM25 with pyserini (Lucene, Anserini's defaults k1 0.9, b 0.4) on a
bm25_data.py folder: index time (a whole `pyserini.index.lucene` run, JVM
start included, as pretext's figures include its process) and queries/s of
top-100 batch search on THREADS threads. Prints JSON.

    python3 pyserini_baseline.py DIR THREADS

pyserini 0.24.0 runs on Java 17 (later versions need 21); install it as
benches/bm25_compare.sh does: --no-deps, plus the modules its search module
imports, with OPENAI_API_KEY set to any string (nothing is sent).
"""
import json
import os
import subprocess
import sys
import time

d, threads = sys.argv[1], int(sys.argv[2])
coll = os.path.join(d, "pyserini-collection")
os.makedirs(coll, exist_ok=True)
with open(os.path.join(d, "corpus.jsonl"), encoding="utf-8") as f, open(
    os.path.join(coll, "docs.jsonl"), "w", encoding="utf-8"
) as out:
    for line in f:
        r = json.loads(line)
        out.write(json.dumps({"id": r["_id"], "contents": r["text"]}) + "\n")
index = os.path.join(d, "pyserini-index")
t0 = time.time()
subprocess.run(
    [sys.executable, "-m", "pyserini.index.lucene", "--collection", "JsonCollection",
     "--input", coll, "--index", index, "--generator", "DefaultLuceneDocumentGenerator",
     "--threads", str(threads)],
    check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
index_s = time.time() - t0
from pyserini.search.lucene import LuceneSearcher  # noqa: E402

qids, qs = [], []
with open(os.path.join(d, "queries.jsonl"), encoding="utf-8") as f:
    for line in f:
        r = json.loads(line)
        qids.append(r["_id"])
        qs.append(r["text"])
searcher = LuceneSearcher(index)
searcher.set_bm25(0.9, 0.4)
t0 = time.time()
hits = searcher.batch_search(qs, qids, k=100, threads=threads)
qps = len(qs) / (time.time() - t0)
size = sum(os.path.getsize(os.path.join(index, f)) for f in os.listdir(index))
print(json.dumps({"index_s": index_s, "qps": qps, "hits": sum(len(h) for h in hits.values()), "index_mb": size / 1e6}))
