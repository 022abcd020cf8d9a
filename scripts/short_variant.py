"""A short-document variant of a BEIR folder: each document cut to its first
sentence (at most 30 words), titles dropped; queries and judgements copied.
The adaptation recipe's pseudo-queries need titles, several sentences or a
long text, so such a corpus (questions, tweets, one-line definitions) is the
case `task.short_documents` covers.

    python3 scripts/short_variant.py ../shared/data/cranfield /tmp/cranfield-short
    bash scripts/adapt_compare.sh /tmp/cranfield-short
"""
import json
import re
import shutil
import sys
from pathlib import Path

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
(dst / "qrels").mkdir(parents=True, exist_ok=True)
shutil.copy(src / "queries.jsonl", dst / "queries.jsonl")
for q in (src / "qrels").iterdir():
    shutil.copy(q, dst / "qrels" / q.name)
kept = 0
with open(src / "corpus.jsonl") as f, open(dst / "corpus.jsonl", "w") as out:
    for line in f:
        doc = json.loads(line)
        text = (doc.get("text") or "").strip()
        if not text:
            continue
        first = re.split(r"(?<=[.?!])\s+", text)[0]
        out.write(json.dumps({"_id": doc["_id"], "text": " ".join(first.split()[:30])}) + "\n")
        kept += 1
print(f"{dst}: {kept} documents")
