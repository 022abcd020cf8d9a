"""How far a bag of the shipped vocabulary's tokens gets on the FAQ set, as a
guide for the from-scratch model (docs/adapt.md, "From scratch"): R@100 of
tf-idf over WordPiece tokens, and of LSA token vectors (a truncated SVD of the
training corpus's tf-idf matrix, 128 dimensions, the quickstart model's width)
pooled two ways: a plain mean over a text's tokens (what mean pooling does
with one vector per token) and weighted by tf-idf (scored by cosine and by
dot product of the projected unit tf-idf vectors).

Install: python3 -m pip install numpy scipy tokenizers
Run:     python3 scripts/lsa_probe.py   (from the repository's root)
"""
import glob
import json
import os

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds
from tokenizers import Tokenizer

DIM = 128
tok = Tokenizer.from_file("corpora/python-docs.tokenizer.json")
vocab = tok.get_vocab_size()


def texts(path):
    files = sorted(glob.glob(path + "/**/*", recursive=True)) if os.path.isdir(path) else [path]
    for f in files:
        if os.path.isdir(f):
            continue
        for line in open(f, encoding="utf-8"):
            if f.endswith(".jsonl"):
                d = json.loads(line)
                yield d.get("title", "") + " " + d["text"]
            elif line.strip():
                yield line


def counts(batch):
    rows, cols, vals = [], [], []
    for i, e in enumerate(tok.encode_batch(batch)):
        ids, c = np.unique(e.ids, return_counts=True)
        rows += [i] * len(ids)
        cols += list(ids)
        vals += list(c)
    return sp.csr_matrix((np.array(vals, float), (rows, cols)), shape=(len(batch), vocab))


train = counts(list(texts("corpora/python-docs")))
df = np.asarray((train > 0).sum(0)).ravel()
idf = np.log((1 + train.shape[0]) / (1 + df)) + 1


def tfidf(m):
    m = m.copy()
    m.data = 1 + np.log(m.data)
    m = m.multiply(idf).tocsr()
    norm = np.sqrt(np.asarray(m.multiply(m).sum(1))).ravel() + 1e-9
    return sp.diags(1 / norm) @ m


faq = [json.loads(l) for l in open("corpora/python-faq/corpus.jsonl", encoding="utf-8")]
ids = [d["_id"] for d in faq]
queries = [json.loads(l) for l in open("corpora/python-faq/queries.jsonl", encoding="utf-8")]
qrels = {}
for line in open("corpora/python-faq/qrels/test.tsv"):
    q, d, score = line.split()[:3]
    if q != "query-id" and int(score) > 0:
        qrels.setdefault(q, set()).add(d)
d_counts = counts([d.get("title", "") + " " + d["text"] for d in faq])
q_counts = counts([q["text"] for q in queries])


def recall(scores, k=100):
    r = []
    for i, q in enumerate(queries):
        if q["_id"] in qrels:
            top = {ids[j] for j in np.argsort(-scores[i])[:k]}
            r.append(len(qrels[q["_id"]] & top) / len(qrels[q["_id"]]))
    return float(np.mean(r))


def unit(x):
    x = np.asarray(x)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-9)


def mean_pooled(m, vectors):
    present = m.copy()
    present.data[:] = 1
    return unit(present @ vectors)


print(f"tf-idf over tokens: R@100 {recall((tfidf(q_counts) @ tfidf(d_counts).T).toarray()):.4f}")
_, s, vt = svds(tfidf(train), k=DIM)
vectors = vt.T * s
print(f"LSA {DIM}, mean of token vectors: R@100 {recall(mean_pooled(q_counts, vectors) @ mean_pooled(d_counts, vectors).T):.4f}")
q_lsa, d_lsa = np.asarray(tfidf(q_counts) @ vectors), np.asarray(tfidf(d_counts) @ vectors)
print(f"LSA {DIM}, tf-idf-weighted, cosine: R@100 {recall(unit(q_lsa) @ unit(d_lsa).T):.4f}")
print(f"LSA {DIM}, tf-idf-weighted, dot product: R@100 {recall(q_lsa @ d_lsa.T):.4f}")
