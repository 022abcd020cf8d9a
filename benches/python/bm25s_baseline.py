#!/usr/bin/env python3
"""bm25s on the same data: English stopwords, Snowball English stemming,
k1 0.9, b 0.4 (Lucene's idf), top-100 for every query. Prints JSON timings.

    python3 bm25s_baseline.py DATA_DIR THREADS
"""
import json
import sys
import time

import bm25s
import Stemmer

data, threads = sys.argv[1], int(sys.argv[2])
docs = [json.loads(l)["text"] for l in open(f"{data}/corpus.jsonl", encoding="utf-8")]
queries = [json.loads(l)["text"] for l in open(f"{data}/queries.jsonl", encoding="utf-8")]
stemmer = Stemmer.Stemmer("english")
t0 = time.perf_counter()
tokens = bm25s.tokenize(docs, stopwords="en", stemmer=stemmer, show_progress=False)
retriever = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
retriever.index(tokens, show_progress=False)
t1 = time.perf_counter()
q = bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False)
retriever.retrieve(q, k=100, n_threads=threads, show_progress=False)
t2 = time.perf_counter()
print(json.dumps({"index_s": t1 - t0, "search_s": t2 - t1, "qps": len(queries) / (t2 - t1)}))
