#!/usr/bin/env bash
# BM25 index time and queries/s of `pretext bm25` against bm25s, on the same
# passages (100-word windows of the shipped corpus) and 1,000 queries, in one
# run, at 10k and 100k passages. Prints a Markdown table.
#
#   bash benches/bm25_compare.sh [SIZES...]      # default: 10000 100000
#
# Needs pip (bm25s, PyStemmer) and cargo. With PYSERINI_PYTHON set to a
# Python that has pyserini 0.24.0 (Java 17; see benches/python/pyserini_baseline.py),
# pyserini (Lucene) is compared too:
#   python3 -m venv /tmp/pys && /tmp/pys/bin/pip install pyserini==0.24.0 --no-deps
#   /tmp/pys/bin/pip install pyjnius numpy pandas scipy tqdm faiss-cpu torch transformers \
#     scikit-learn onnxruntime openai tiktoken
#   PYSERINI_PYTHON=/tmp/pys/bin/python bash benches/bm25_compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000)
python3 -c "import bm25s, Stemmer" 2>/dev/null || python3 -m pip install --quiet bm25s PyStemmer
cargo build --release --quiet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "| passages | system | index s | queries/s (top 100) | index size |"
echo "|---:|---|---:|---:|---:|"
for n in "${sizes[@]}"; do
  python3 benches/python/bm25_data.py "$n" "$tmp/$n"
  t0=$(date +%s.%N)
  ./target/release/pretext bm25 index --corpus "$tmp/$n/corpus.jsonl" --out "$tmp/$n/index.bm25" 2>/dev/null
  t1=$(date +%s.%N)
  ./target/release/pretext bm25 search --index "$tmp/$n/index.bm25" --queries "$tmp/$n/queries.jsonl" -k 100 > /dev/null
  t2=$(date +%s.%N)
  ./target/release/pretext bm25 search --index "$tmp/$n/index.bm25" --queries "$tmp/$n/queries.jsonl" -k 100 --exhaustive > /dev/null
  t3=$(date +%s.%N)
  size=$(python3 -c "import os, sys; print(f'{os.path.getsize(sys.argv[1]) / 1e6:.1f} MB')" "$tmp/$n/index.bm25")
  python3 - "$n" "$t0" "$t1" "$t2" "$t3" "$size" <<'PY'
import sys
n, t0, t1, t2, t3, size = sys.argv[1], *map(float, sys.argv[2:6]), sys.argv[6]
print(f"| {int(n):,} | pretext | {t1 - t0:.2f} | {1000 / (t2 - t1):,.0f} | {size} |")
print(f"| {int(n):,} | pretext `--exhaustive` (every posting scored) | | {1000 / (t3 - t2):,.0f} | |")
PY
  python3 benches/python/bm25s_baseline.py "$tmp/$n" 2 | python3 -c "
import json, sys
r = json.load(sys.stdin)
print(f\"| {int('$n'):,} | bm25s 0.3 (n_threads=2) | {r['index_s']:.2f} | {r['qps']:,.0f} | in memory |\")"
  if [ -n "${PYSERINI_PYTHON:-}" ]; then
    JAVA_HOME=${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")} OPENAI_API_KEY=${OPENAI_API_KEY:-unused} \
      "$PYSERINI_PYTHON" benches/python/pyserini_baseline.py "$tmp/$n" 2 | python3 -c "
import json, sys
r = json.load(sys.stdin)
print(f\"| {int('$n'):,} | pyserini 0.24 (Lucene, 2 threads) | {r['index_s']:.2f} | {r['qps']:,.0f} | {r['index_mb']:.1f} MB |\")"
  fi
done
