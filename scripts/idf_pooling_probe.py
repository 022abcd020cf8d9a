"""A copy of a sentence-transformers model folder that pools with each token's
idf over a corpus (a WordWeights module before its Pooling, as `model.pooling
= "weighted"` starts from), so `pretext eval` can score idf-weighted pooling
with no training (docs/adapt.md, "Weighted pooling on a pretrained model").
The idf is pretext's: ln(1 + (N - df + 0.5) / (df + 0.5)), texts tokenized
whole with their special tokens.

Install: python3 -m pip install tokenizers
Run:     python3 scripts/idf_pooling_probe.py MODEL_DIR CORPUS.jsonl OUT_DIR
         pretext eval --model OUT_DIR --data BEIR_DIR --max-len 256
"""
import json
import math
import os
import shutil
import sys

from tokenizers import Tokenizer

src, corpus, out = sys.argv[1:4]
if os.path.exists(out):
    shutil.rmtree(out)
shutil.copytree(src, out)
tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
tok.no_truncation()
tok.no_padding()
vocab_size = json.load(open(os.path.join(out, "config.json")))["vocab_size"]
texts = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8") if line.strip()]
df = [0] * vocab_size
for e in tok.encode_batch(texts):
    for i in set(e.ids):
        df[i] += 1
n = len(texts)
weights = [math.log(1 + (n - d + 0.5) / (d + 0.5)) for d in df]
vocab = [None] * vocab_size
for token, i in tok.get_vocab(True).items():
    if i < vocab_size:
        vocab[i] = token
vocab = [v or f"[unused{i}]" for i, v in enumerate(vocab)]
os.makedirs(os.path.join(out, "1_WordWeights"))
config = {"vocab": vocab, "word_weights": dict(zip(vocab, weights)), "unknown_word_weight": 1.0}
json.dump(config, open(os.path.join(out, "1_WordWeights", "config.json"), "w"))
modules = json.load(open(os.path.join(out, "modules.json")))
modules.insert(1, {"idx": 1, "name": "1w", "path": "1_WordWeights", "type": "sentence_transformers.models.WordWeights"})
json.dump(modules, open(os.path.join(out, "modules.json"), "w"), indent=2)
