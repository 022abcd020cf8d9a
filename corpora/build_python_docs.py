#!/usr/bin/env python3
"""Rebuild corpora/python-docs/corpus.jsonl from Debian's python3.11-doc package.

The corpus is the reStructuredText source of the Python 3.11 documentation,
cut into one document per section and stripped of markup, in BEIR corpus layout
(`_id`, `title`, `text`). Paragraphs are separated by a blank line ("\n\n").

Usage (from the repository root):

    python3 corpora/build_python_docs.py            # downloads the .deb with apt-get
    python3 corpora/build_python_docs.py SOURCES    # an extracted html/_sources folder

The FAQ (`faq/`) is left out on purpose: its questions are kept for evaluation,
never for training text. `whatsnew/` (changelogs) and `distutils/` (removed
module) are left out as well. Only the standard library is used.
"""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

INCLUDE = [
    "tutorial", "library", "reference", "howto", "c-api", "extending",
    "using", "install", "installing", "distributing", "glossary.rst.txt",
]
MIN_WORDS = 20
UNDERLINE = re.compile(r"^([=\-~^\"'*#+`:.])\1{2,}\s*$")
DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:-]+)::\s*(.*)$")
# Directives whose body is code or navigation, not prose.
DROP_BODY = {
    "code-block", "sourcecode", "code", "doctest", "testcode", "testoutput",
    "testsetup", "testcleanup", "toctree", "index", "highlight", "productionlist",
    "literalinclude", "image", "figure", "raw", "only", "contents", "csv-table",
    "sectionauthor", "moduleauthor", "include", "tabularcolumns", "audit-event-table",
    "availability", "impl-detail", "limited-api-list", "include", "grammar-snippet",
    "pypi", "program", "opcode", "pdbcommand", "cmdoption", "option", "envvar",
    "describe", "productionlist", "audit-event", "versionchanged", "deprecated-removed",
}
# Directives whose argument is a signature or label worth keeping as text.
KEEP_ARG = {
    "function", "method", "class", "exception", "attribute", "data", "module",
    "decorator", "decoratormethod", "classmethod", "staticmethod", "coroutinefunction",
    "coroutinemethod", "abstractmethod", "c:function", "c:type", "c:macro",
    "c:member", "c:var", "c:struct", "c:data", "term", "glossary", "note", "warning",
    "seealso", "versionadded", "deprecated", "rubric", "topic", "attention", "tip",
    "important", "hint", "caution", "danger", "admonition", "sidebar",
}


def inline(text):
    """Strip inline markup, keeping the words a reader sees."""
    text = re.sub(r":[\w:-]+:`([^`<]*?)\s*<[^>]*>`", r"\1", text)  # :ref:`text <target>`
    text = re.sub(r":[\w:-]+:`!?~?([^`]*)`", r"\1", text)  # :func:`~os.path.join`
    text = re.sub(r"`([^`<]+?)\s*<[^>]*>`__?", r"\1", text)  # `text <url>`_
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"`([^`]+)`_*", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*", r"\1", text)
    text = re.sub(r"\|(\w[\w\s-]*)\|", r"\1", text)
    text = re.sub(r"\[#\w*\]_", "", text)
    text = re.sub(r"\\(.)", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def sections(path, rel):
    """Yield (heading, paragraphs, labels, raw lines) for each section of one
    .rst source; labels are the `.. _label:` targets naming the section."""
    lines = open(path, encoding="utf-8").read().splitlines()
    heading, paras, para = None, [], []
    labels, pending, raw = [], [], []
    skip_indent = None  # drop lines indented deeper than this (code, dropped bodies)
    i = 0

    def flush_para():
        if para:
            text = inline(" ".join(para))
            if text:
                paras.append(text)
            para.clear()

    while i < len(lines):
        line = lines[i]
        raw.append(line)
        stripped = line.strip()
        label = re.match(r"^\.\.\s+_([^:]+):\s*$", stripped)
        if label:
            pending.append(label.group(1).strip().lower())
        indent = len(line) - len(line.lstrip())
        if skip_indent is not None:
            if stripped == "" or indent > skip_indent:
                i += 1
                continue
            skip_indent = None
        # A heading: a text line underlined (and maybe overlined) with punctuation.
        if (i + 1 < len(lines) and stripped and not UNDERLINE.match(line)
                and UNDERLINE.match(lines[i + 1])
                and len(lines[i + 1].strip()) >= len(stripped) and indent == 0):
            flush_para()
            if heading is not None or paras:
                yield heading, paras, labels, raw
            heading, paras, labels, raw = inline(stripped), [], pending, []
            pending = []
            i += 2
            continue
        if UNDERLINE.match(line):
            i += 1
            continue
        m = DIRECTIVE.match(line)
        if m:
            flush_para()
            name, arg = m.group(2), m.group(3)
            if name in KEEP_ARG:
                if arg:
                    para.append(arg)
                    flush_para()
                i += 1
                # option lines (:noindex: and the like)
                while i < len(lines) and re.match(r"^\s+:[\w-]+:", lines[i]):
                    i += 1
                continue
            skip_indent = len(m.group(1))
            i += 1
            continue
        if stripped.startswith(".. "):  # comment, target or footnote
            flush_para()
            skip_indent = indent
            i += 1
            continue
        if stripped.startswith(">>>") or stripped.startswith("..."):
            flush_para()
            i += 1
            continue
        if stripped == "":
            flush_para()
            i += 1
            continue
        if stripped in ("::",):
            flush_para()
            skip_indent = indent
            i += 1
            continue
        if stripped.endswith("::"):
            para.append(stripped[:-1])
            flush_para()
            skip_indent = indent
            i += 1
            continue
        if re.match(r"^[+|]", stripped) or re.match(r"^=+( +=+)+$", stripped):
            i += 1  # table borders
            continue
        para.append(stripped.lstrip("*-").strip() if re.match(r"^[*-] ", stripped) else stripped)
        i += 1
    flush_para()
    if heading is not None or paras:
        yield heading, paras, labels, raw


def build(src, out):
    files = []
    for inc in INCLUDE:
        p = os.path.join(src, inc)
        if os.path.isdir(p):
            files += glob.glob(os.path.join(p, "**", "*.rst.txt"), recursive=True)
        elif os.path.isfile(p):
            files.append(p)
    files.sort()
    n_docs = 0
    with open(out, "w", encoding="utf-8") as f:
        for path in files:
            rel = os.path.relpath(path, src)[: -len(".rst.txt")]
            page_title = None
            for k, (heading, paras, _, _) in enumerate(sections(path, rel)):
                if page_title is None:
                    page_title = heading
                text = "\n\n".join(paras)
                if len(text.split()) < MIN_WORDS:
                    continue
                title = page_title or rel
                if heading and heading != page_title:
                    title = f"{page_title} — {heading}"
                doc = {"_id": f"{rel}#{k}", "title": title, "text": text}
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
                n_docs += 1
    print(f"wrote {n_docs} documents from {len(files)} pages to {out}", file=sys.stderr)


def with_sources(build_from):
    """Calls `build_from(sources_dir)` on the folder named on the command
    line, or on the sources of a freshly downloaded python3.11-doc package."""
    if len(sys.argv) > 1:
        build_from(sys.argv[1])
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", "python3.11-doc"], cwd=tmp, check=True)
        deb = glob.glob(os.path.join(tmp, "*.deb"))[0]
        subprocess.run(["dpkg-deb", "-x", deb, os.path.join(tmp, "x")], check=True)
        build_from(os.path.join(tmp, "x", "usr", "share", "doc", "python3.11", "html", "_sources"))


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "python-docs", "corpus.jsonl")
    with_sources(lambda src: build(src, out))


if __name__ == "__main__":
    main()
