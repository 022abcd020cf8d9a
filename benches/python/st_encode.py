#!/usr/bin/env python3
"""sentence-transformers encoding throughput on the shipped corpus (the
same texts, model, batch and maximum length as benches/encode.rs). Prints JSON.

    python3 st_encode.py MODEL_DIR MAX_LEN BATCH [int8]

With `int8`, the model's Linear layers go through PyTorch's dynamic int8
quantisation first (torch.ao.quantization.quantize_dynamic), the peer of
pretext's `--int8`.
"""
import json
import os
import sys
import time

import torch
from sentence_transformers import SentenceTransformer

model_dir, max_len, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
int8 = len(sys.argv) > 4 and sys.argv[4] == "int8"
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
texts = []
with open(os.path.join(root, "corpora", "python-faq", "corpus.jsonl"), encoding="utf-8") as f:
    for line in f:
        r = json.loads(line)
        texts.append(f"{r.get('title', '')} {r.get('text', '')}")
model = SentenceTransformer(model_dir, device="cpu")
model.max_seq_length = max_len
if int8:
    model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
t0 = time.time()
e = model.encode(texts, batch_size=batch)
secs = time.time() - t0
assert len(e) == len(texts)
suffix = ", dynamic int8" if int8 else ""
print(json.dumps({"system": f"sentence-transformers (torch {torch.__version__}, {torch.get_num_threads()} threads{suffix})",
                  "docs": len(texts), "seconds": secs, "docs_per_s": len(texts) / secs}))
