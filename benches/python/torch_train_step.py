"""The train_step bench's settings in PyTorch, for a ratio measured in the
same run. `reference`: a 4-layer, 256-wide BERT (vocabulary 8192, 4 heads,
dropout 0.1), batch 32 x 128 tokens, a MoCo key encoder (momentum 0.999,
eval mode) and a 4096-key queue. `minilm`: all-MiniLM-L6-v2's size (6
layers, 384 wide, 12 heads, vocabulary 30,522), batch 32 x 128, queries and
positives through the one model with gradient, in-batch negatives only.
Both: InfoNCE at temperature 0.05 on mean-pooled states, AdamW with
gradient clipping at 1.0. Prints one JSON line: medians over ITERS steps
after two warm-up steps (seconds per step and its split), peak RSS.

    python benches/python/torch_train_step.py [THREADS] [ITERS] [reference|minilm]
"""
import copy
import json
import resource
import statistics
import sys
import time

import torch
from transformers import BertConfig, BertModel

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
torch.set_num_threads(threads)
torch.manual_seed(1)
iters = int(sys.argv[2]) if len(sys.argv) > 2 else 10
setting = sys.argv[3] if len(sys.argv) > 3 else "reference"
assert setting in ("reference", "minilm"), setting
minilm = setting == "minilm"
batch, seq, warmup = 32, 128, 2
vocab, hidden = (30522, 384) if minilm else (8192, 256)
config = BertConfig(
    vocab_size=vocab,
    hidden_size=hidden,
    num_hidden_layers=6 if minilm else 4,
    num_attention_heads=12 if minilm else 4,
    intermediate_size=4 * hidden,
    max_position_embeddings=512,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
)
model = BertModel(config, add_pooling_layer=False)
model.train()
key = copy.deepcopy(model)
key.eval()
for p in key.parameters():
    p.requires_grad_(False)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
queue = torch.randn(4096, hidden)
mask = torch.ones(batch, seq, dtype=torch.long)


def ids(salt):
    i = torch.arange(batch * seq, dtype=torch.int64)
    return ((i * 2654435761 + salt) % vocab).reshape(batch, seq)


def encode(m, x):
    states = m(input_ids=x, attention_mask=mask).last_hidden_state
    w = mask.unsqueeze(-1).float()
    return (states * w).sum(1) / w.sum(1)


fwd, bwd, upd, total = [], [], [], []
for i in range(warmup + iters):
    t0 = time.perf_counter()
    if minilm:
        q = encode(model, ids(1 + i))
        k = encode(model, ids(7 + i))
        logits = q @ k.T / 0.05
    else:
        with torch.no_grad():
            for pk, pq in zip(key.parameters(), model.parameters()):
                pk.mul_(0.999).add_(pq.detach(), alpha=0.001)
        q = encode(model, ids(1 + i))
        with torch.no_grad():
            k = encode(key, ids(7 + i))
        logits = torch.cat([q @ k.T, q @ queue.T], dim=1) / 0.05
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(batch))
    loss.item()
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    if not minilm:
        queue = torch.cat([queue[batch:], k.detach()])
    t3 = time.perf_counter()
    if i >= warmup:
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
        upd.append(t3 - t2)
        total.append(t3 - t0)

med = statistics.median
print(
    json.dumps(
        {
            "system": f"PyTorch {torch.__version__.split('+')[0]}",
            "step": med(total),
            "forward": med(fwd),
            "backward": med(bwd),
            "optimizer": med(upd),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )
)
