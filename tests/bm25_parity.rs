//! pretext's default BM25 against pyserini's, run for run: the top 100 of
//! every query of the FAQ set and of Cranfield, committed as fixtures by
//! `tests/fixtures/bm25/make_pyserini_runs.py` (pyserini 0.24.0, its default
//! analyzer, k1 0.9, b 0.4, title and text in one field).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{pretext, root};
use serde_json::Value;

/// A run: per query, (document, score) best first.
type Run = BTreeMap<String, Vec<(String, f32)>>;

fn read_run(path: &Path) -> Run {
    let mut run = Run::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        run.entry(f[0].to_string())
            .or_default()
            .push((f[2].to_string(), f[4].parse().unwrap()));
    }
    run
}

/// Indexes `data`'s corpus and searches its queries as a user would.
fn pretext_run(data: &Path, index_args: &[&str], dir: &Path, name: &str) -> std::path::PathBuf {
    common::bm25_run(
        &data.join("corpus.jsonl"),
        &data.join("queries.jsonl"),
        index_args,
        dir,
        name,
    )
}

/// `pretext eval --run`'s nDCG@10 and R@100 of a run file.
fn metrics(run: &Path, data: &Path, dir: &Path) -> (f64, f64) {
    let out = dir.join(run.file_stem().unwrap());
    pretext()
        .args(["eval", "--quiet", "--run"])
        .arg(run)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let get = |k: &str| m["metrics"][k].as_f64().unwrap();
    (get("nDCG@10"), get("R@100"))
}

fn matches_pyserini(name: &str, data: &Path) {
    let fixture = root().join(format!("tests/fixtures/bm25/pyserini-{name}.trec"));
    let dir = tempfile::tempdir().unwrap();
    let ours_path = pretext_run(data, &[], dir.path(), "pretext");
    // Skipping what cannot reach the top 100 changes nothing: the run of
    // scoring every posting is the same, byte for byte.
    let exhaustive = pretext()
        .args(["bm25", "search", "--exhaustive", "-k", "100", "--index"])
        .arg(dir.path().join("pretext.bm25"))
        .arg("--queries")
        .arg(data.join("queries.jsonl"))
        .assert()
        .success();
    assert!(
        exhaustive.get_output().stdout == std::fs::read(&ours_path).unwrap(),
        "{name}: the pruned search ranks differently from exhaustive scoring"
    );
    let (ours, theirs) = (read_run(&ours_path), read_run(&fixture));
    assert!(!theirs.is_empty());
    let mut same = 0;
    for (q, hits) in &theirs {
        let mine = ours.get(q).map(Vec::as_slice).unwrap_or_default();
        let ids = |h: &[(String, f32)]| h.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>();
        if ids(mine) == ids(hits) {
            same += 1;
            // pyserini rounds scores to 1e-4 and lowers each tie by 1e-6
            // per place; the float scores themselves must agree.
            for (i, ((_, a), (_, b))) in mine.iter().zip(hits).enumerate() {
                let tol = 5e-5 + 1e-6 * (i as f32 + 1.0) + 1e-6 * a.abs();
                assert!(
                    (a - b).abs() <= tol,
                    "{name} {q} rank {}: {a} vs {b}",
                    i + 1
                );
            }
        } else {
            eprintln!("{name}: query {q} ranks differently from pyserini");
        }
    }
    let share = same as f64 / theirs.len() as f64;
    assert!(
        share >= 0.99,
        "{name}: {same} of {} queries rank as pyserini does",
        theirs.len()
    );
    let (a, b) = (
        metrics(&ours_path, data, dir.path()),
        metrics(&fixture, data, dir.path()),
    );
    let four = |x: f64| (x * 1e4).round() as i64;
    assert_eq!(
        (four(a.0), four(a.1)),
        (four(b.0), four(b.1)),
        "{name}: nDCG@10 and R@100 of pretext {a:?} vs pyserini {b:?}"
    );
}

#[test]
fn bm25_ranks_the_faq_set_as_pyserini_does() {
    matches_pyserini("python-faq", &root().join("corpora/python-faq"));
}

#[test]
fn bm25_ranks_cranfield_as_pyserini_does() {
    let data = root().join("../shared/data/cranfield");
    if !data.join("corpus.jsonl").exists() {
        eprintln!("SKIPPED: ../shared/data/cranfield not found (the BM25 parity test needs it)");
        return;
    }
    matches_pyserini("cranfield", &data);
}

/// The NLTK analyzer (pretext's first) is a different ranking: the option
/// is real, and it is what `--analyzer nltk` asks for.
#[test]
fn the_nltk_analyzer_ranks_differently() {
    let data = root().join("corpora/python-faq");
    let dir = tempfile::tempdir().unwrap();
    let path = pretext_run(&data, &["--analyzer", "nltk"], dir.path(), "nltk");
    let (ours, theirs) = (
        read_run(&path),
        read_run(&root().join("tests/fixtures/bm25/pyserini-python-faq.trec")),
    );
    let differ = theirs
        .iter()
        .filter(|(q, hits)| {
            let mine = &ours[*q];
            mine.iter().map(|h| &h.0).ne(hits.iter().map(|h| &h.0))
        })
        .count();
    assert!(differ > 35, "only {differ} of 70 queries differ");
}
