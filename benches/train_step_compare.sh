#!/usr/bin/env bash
# A training step of pretext against PyTorch on CPU, in one run, in the
# train_step bench's two settings: `reference` (4-layer, 256-wide BERT,
# batch 32 x 128, MoCo key encoder, 4096-key queue, InfoNCE, AdamW) and
# `minilm` (all-MiniLM-L6-v2's size, batch 32 x 128, in-batch negatives,
# both sides with gradient), ROUNDS times each (default 5: single rounds
# vary by +-30 % here), taking turns so that both see the same machine.
# Prints a Markdown table per setting of the medians and pretext's ratio to
# PyTorch.
#
#   TORCH_PYTHON=python3 bash benches/train_step_compare.sh [ROUNDS] [THREADS] [SETTINGS]
#
# SETTINGS: "reference minilm" (default), or either alone.
#
# TORCH_PYTHON needs torch and transformers (`pip install torch transformers`).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
threads=${2:-2}
settings=${3:-reference minilm}
py=${TORCH_PYTHON:-python3}
cargo bench --quiet --bench train_step --no-run 2>/dev/null
for setting in $settings; do
torch_runs=()
ours_runs=()
for _ in $(seq "$rounds"); do
    torch_runs+=("$("$py" benches/python/torch_train_step.py "$threads" 10 "$setting" 2>/dev/null | tail -1)")
    ours_runs+=("$(BENCH_SETTING=$setting RAYON_NUM_THREADS=$threads BENCH_JSON=1 cargo bench --quiet --bench train_step 2>/dev/null | tail -1)")
done
echo "### $setting"
echo
python3 - "$(printf '%s\n' "${torch_runs[@]}")" "$(printf '%s\n' "${ours_runs[@]}")" <<'PY'
import json, statistics, sys
torch = [json.loads(l) for l in sys.argv[1].splitlines()]
ours = [json.loads(l) for l in sys.argv[2].splitlines()]
def med(runs, key):
    return statistics.median(r[key] for r in runs)
print("| system | step (s) | forward (s) | backward (s) | optimizer (s) | peak RSS (MiB) | step vs PyTorch |")
print("|---|---:|---:|---:|---:|---:|---:|")
base = med(torch, "step")
for name, runs in ((torch[0]["system"], torch), ("pretext", ours)):
    step = med(runs, "step")
    print(f"| {name} | {step:.3f} | {med(runs, 'forward'):.3f} | {med(runs, 'backward'):.3f} "
          f"| {med(runs, 'optimizer'):.3f} | {med(runs, 'peak_rss_mib'):.0f} | {step / base:.2f}x |")
print()
print("per round, step seconds (PyTorch / pretext): " + ", ".join(
    f"{t['step']:.3f} / {o['step']:.3f}" for t, o in zip(torch, ours)))
PY
echo
done
