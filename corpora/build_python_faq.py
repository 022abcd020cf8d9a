#!/usr/bin/env python3
"""Rebuild corpora/python-faq: an evaluation set in BEIR layout whose queries
are the questions of the Python FAQ (written by people) and whose documents
are the sections of corpora/python-docs (the FAQ itself is not in that
corpus, nor in any training text).

Judgements come from the links the FAQ's own answers make:
- `:ref:`label`` to a documentation section: that section, relevance 2;
- `:mod:`m``, `:func:`m.f``, `:class:`m.C``, `:meth:`…``, `:exc:`…``: in
  the module's page (library/m), the first three sections that mention the
  object's name, relevance 1 (the page's first section for a module link);
  objects without a module are looked up where built-ins are documented
  (library/functions, stdtypes, exceptions, constants).
A question is kept when its answer links to at least one document.

Usage (from the repository root), like build_python_docs.py:

    python3 corpora/build_python_faq.py            # downloads the .deb with apt-get
    python3 corpora/build_python_faq.py SOURCES    # an extracted html/_sources folder
"""
import glob
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_python_docs as docs  # noqa: E402

# Sections judged per link to a module object (its first mentions).
MAX_PER_LINK = 3
# Where objects without a module are documented.
BUILTIN_PAGES = {
    "func": ["library/functions"],
    "class": ["library/functions", "library/stdtypes"],
    "meth": ["library/stdtypes"],
    "exc": ["library/exceptions"],
    "data": ["library/constants", "library/stdtypes"],
    "attr": ["library/stdtypes"],
}
ROLE = re.compile(r":(ref|mod|func|class|meth|exc|data|attr|const):`!?~?([^`<]*?)\s*(?:<([^>]*)>)?`")


def build(src, out_dir):
    here = os.path.dirname(os.path.abspath(__file__))
    corpus = {}
    with open(os.path.join(here, "python-docs", "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            corpus[d["_id"]] = d["text"]
    # label -> section id, and module page -> its section ids.
    labels, pages = {}, {}
    for inc in docs.INCLUDE:
        p = os.path.join(src, inc)
        files = glob.glob(os.path.join(p, "**", "*.rst.txt"), recursive=True) if os.path.isdir(p) else [p]
        for path in files:
            rel = os.path.relpath(path, src)[: -len(".rst.txt")]
            for k, (_, _, names, _) in enumerate(docs.sections(path, rel)):
                sid = f"{rel}#{k}"
                if sid in corpus:
                    pages.setdefault(rel, []).append(sid)
                    for n in names:
                        labels[n] = sid
    queries, qrels = [], []
    for path in sorted(glob.glob(os.path.join(src, "faq", "*.rst.txt"))):
        rel = os.path.relpath(path, src)[: -len(".rst.txt")]
        for k, (heading, _, _, raw) in enumerate(docs.sections(path, rel)):
            if not heading or not heading.endswith("?"):
                continue
            judged = {}
            for role, text, target in ROLE.findall("\n".join(raw)):
                name = (target or text).strip().lower() if role == "ref" else (target or text).strip()
                if role == "ref":
                    if name in labels:
                        judged[labels[name]] = 2
                    continue
                parts = name.strip("()").split(".")
                # Module pages first, then where built-ins are documented.
                candidates = [("library/" + ".".join(parts[:cut]), cut == len(parts)) for cut in range(len(parts), 0, -1)]
                candidates += [(p, False) for p in BUILTIN_PAGES.get(role, [])]
                for page, whole in candidates:
                    if page in pages:
                        last = re.escape(parts[-1])
                        hits = [s for s in pages[page] if whole or re.search(rf"\b{last}\b", corpus[s])]
                        if hits or whole:
                            for s in (hits or pages[page])[:MAX_PER_LINK]:
                                judged.setdefault(s, 1)
                            break
            if judged:
                qid = f"{rel}#{k}"
                queries.append({"_id": qid, "text": heading})
                qrels += [(qid, d, r) for d, r in sorted(judged.items())]
    os.makedirs(os.path.join(out_dir, "qrels"), exist_ok=True)
    with open(os.path.join(out_dir, "queries.jsonl"), "w", encoding="utf-8") as f:
        for q in queries:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    with open(os.path.join(out_dir, "qrels", "test.tsv"), "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, d, r in qrels:
            f.write(f"{q}\t{d}\t{r}\n")
    link = os.path.join(out_dir, "corpus.jsonl")
    if not os.path.lexists(link):
        os.symlink(os.path.join("..", "python-docs", "corpus.jsonl"), link)
    print(f"wrote {len(queries)} queries and {len(qrels)} judgements to {out_dir}", file=sys.stderr)


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "python-faq")
    docs.with_sources(lambda src: build(src, out))


if __name__ == "__main__":
    main()
