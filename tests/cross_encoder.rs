//! Cross-encoders: Hugging Face `BertForSequenceClassification` folders
//! load and score as `transformers` does. The fixtures (two tiny random
//! models, one logit and two labels, and transformers' logits for a few
//! pairs, some cut at the maximum length) are made by
//! `tests/fixtures/cross_encoder/make_expected.py`.

mod common;

use candle_core::Device;
use common::root;
use pretext::model::cross::{Output, PretrainedCrossEncoder};
use serde_json::Value;

fn expected() -> Value {
    let p = root().join("tests/fixtures/cross_encoder/expected.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn pairs(e: &Value) -> Vec<(String, String)> {
    e["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
        .collect()
}

fn as_f32(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

#[test]
fn logits_match_transformers() {
    let e = expected();
    let max_len = e["max_length"].as_u64().unwrap() as usize;
    let owned = pairs(&e);
    let refs: Vec<(&str, &str)> = owned
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    for (name, output) in [
        ("one-logit", Output::Logit),
        ("two-labels", Output::TwoLabels),
    ] {
        let dir = root().join("tests/fixtures/cross_encoder").join(name);
        // The folder's own maximum (tokenizer_config.json) is the one the
        // fixture was cut at.
        let ce = PretrainedCrossEncoder::load(&dir, &Device::Cpu, None).unwrap();
        assert_eq!(ce.model.output(), output);
        let m = &e["models"][name];
        // Same tokens and segments as transformers' tokenizer.
        let (b, types) = ce.tokenizer.encode_pairs(&refs).unwrap();
        assert_eq!(b.seq, max_len);
        let want_ids: Vec<u32> = m["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
            })
            .collect();
        let want_types: Vec<u32> = m["token_type_ids"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
            })
            .collect();
        assert_eq!(b.ids, want_ids, "{name}: token ids");
        assert_eq!(types, want_types, "{name}: segment types");
        assert!(types.contains(&1));
        let got: Vec<Vec<f32>> = ce.logits(&refs).unwrap().to_vec2().unwrap();
        let want = as_f32(&m["logits"]);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.len(), w.len());
            for (a, b) in g.iter().zip(w) {
                assert!((a - b).abs() < 1e-5, "{name} pair {i}: {g:?} vs {w:?}");
            }
        }
        // Relevance: the logit, or label 1 minus label 0, in input order
        // whatever order the length batching scored them in.
        let scores = ce.score(&refs, 2).unwrap();
        for (s, w) in scores.iter().zip(&want) {
            let r = match output {
                Output::Logit => w[0],
                Output::TwoLabels => w[1] - w[0],
            };
            assert!((s - r).abs() < 1e-5, "{name}: {s} vs {r}");
        }
    }
}

#[test]
fn a_dual_encoder_folder_is_not_a_cross_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("tests/fixtures/cross_encoder/one-logit");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let cfg = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("BertForSequenceClassification", "BertModel"),
    )
    .unwrap();
    let err = PretrainedCrossEncoder::load(dir.path(), &Device::Cpu, None)
        .err()
        .unwrap();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("BertForSequenceClassification") && msg.contains("config.json"),
        "{msg}"
    );
}

/// A small BEIR set in `dir` (words of the fixtures' vocabulary) and a
/// first-stage run of every query over every document.
fn small_set(dir: &std::path::Path) -> std::path::PathBuf {
    let docs = [
        ("d1", "wing lift", "the lift of a wing depends on its speed"),
        (
            "d2",
            "",
            "heat transfer in the boundary layer of a flat plate",
        ),
        ("d3", "python", "a loop over a list in python"),
        ("d4", "shock", "a shock wave on a cylinder at mach 6"),
        ("d5", "", "drag and pressure on the surface"),
    ];
    let queries = [
        ("q1", "what is the lift of a wing"),
        ("q2", "heat transfer boundary layer"),
        ("q3", "python list loop"),
    ];
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("qrels")).unwrap();
    let corpus: Vec<String> = docs
        .iter()
        .map(|(id, t, x)| serde_json::json!({"_id": id, "title": t, "text": x}).to_string())
        .collect();
    std::fs::write(data.join("corpus.jsonl"), corpus.join("\n") + "\n").unwrap();
    let qs: Vec<String> = queries
        .iter()
        .map(|(id, x)| serde_json::json!({"_id": id, "text": x}).to_string())
        .collect();
    std::fs::write(data.join("queries.jsonl"), qs.join("\n") + "\n").unwrap();
    std::fs::write(
        data.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td3\t2\nq3\td5\t1\n",
    )
    .unwrap();
    let mut run = String::new();
    for (q, _) in &queries {
        for (r, (d, _, _)) in docs.iter().enumerate() {
            run += &format!("{q} Q0 {d} {} {} first\n", r + 1, 10 - r);
        }
    }
    std::fs::write(dir.join("first.trec"), run).unwrap();
    data
}

fn read_trec(path: &std::path::Path) -> Vec<(String, String, f32)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[2].to_string(), f[4].parse().unwrap())
        })
        .collect()
}

#[test]
fn rerank_orders_the_top_by_the_cross_encoder_and_keeps_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_set(dir.path());
    let model = root().join("tests/fixtures/cross_encoder/two-labels");
    let out = dir.path().join("reranked.trec");
    common::pretext()
        .args(["rerank", "--quiet", "--depth", "3", "--model"])
        .arg(&model)
        .arg("--queries")
        .arg(data.join("queries.jsonl"))
        .arg("--corpus")
        .arg(data.join("corpus.jsonl"))
        .arg("--run")
        .arg(dir.path().join("first.trec"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let got = read_trec(&out);
    assert_eq!(got.len(), 15);
    let ce = PretrainedCrossEncoder::load(&model, &Device::Cpu, None).unwrap();
    let texts = pretext::eval::beir::read_corpus(&data.join("corpus.jsonl")).unwrap();
    let text = |id: &str| texts.iter().find(|d| d.id == id).unwrap().text.clone();
    for (q, query) in [
        ("q1", "what is the lift of a wing"),
        ("q3", "python list loop"),
    ] {
        let rows: Vec<_> = got.iter().filter(|r| r.0 == q).collect();
        // The top 3 of the first stage (d1, d2, d3), by the cross-encoder's
        // own scores of title + text, best first.
        let mut want: Vec<(String, f32)> = ["d1", "d2", "d3"]
            .iter()
            .map(|d| {
                let t = text(d);
                (
                    d.to_string(),
                    ce.score(&[(query, t.as_str())], 1).unwrap()[0],
                )
            })
            .collect();
        want.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (row, (d, s)) in rows.iter().zip(&want) {
            assert_eq!(&row.1, d, "{q}: {rows:?}");
            assert!((row.2 - s).abs() < 1e-4, "{q}: {rows:?} vs {want:?}");
        }
        // The tail in the first stage's order, below the reranked hits.
        assert_eq!(rows[3].1, "d4");
        assert_eq!(rows[4].1, "d5");
        assert!(rows[3].2 < rows[2].2 && rows[4].2 < rows[3].2);
    }
}

#[test]
fn eval_rerank_reports_both_stages() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_set(dir.path());
    let model = root().join("tests/fixtures/cross_encoder/one-logit");
    let out = dir.path().join("eval");
    let assert = common::pretext()
        .args(["eval", "--quiet", "--rerank-depth", "4", "--rerank"])
        .arg(&model)
        .arg("--run")
        .arg(dir.path().join("first.trec"))
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
    assert!(
        stdout.contains("first stage") && stdout.contains("reranked"),
        "{stdout}"
    );
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["rerank"]["depth"], 4);
    // The first stage's figures are those of scoring its run alone, and the
    // reranked figures those of scoring the written run alone.
    let alone = |run: &std::path::Path, name: &str| -> Value {
        let o = dir.path().join(name);
        common::pretext()
            .args(["eval", "--run"])
            .arg(run)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&o)
            .assert()
            .success();
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(o.join("metrics.json")).unwrap())
                .unwrap();
        v["metrics"].clone()
    };
    assert_eq!(
        m["rerank"]["first_stage"],
        alone(&dir.path().join("first.trec"), "a")
    );
    assert_eq!(m["metrics"], alone(&out.join("run.trec"), "b"));
    assert_ne!(
        m["metrics"], m["rerank"]["first_stage"],
        "the rerank changed nothing"
    );
}

#[test]
fn rerank_names_a_document_the_corpus_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_set(dir.path());
    std::fs::write(dir.path().join("bad.trec"), "q1 Q0 d9 1 3.0 x\n").unwrap();
    let assert = common::pretext()
        .args(["rerank", "--quiet", "--model"])
        .arg(root().join("tests/fixtures/cross_encoder/one-logit"))
        .arg("--queries")
        .arg(data.join("queries.jsonl"))
        .arg("--corpus")
        .arg(data.join("corpus.jsonl"))
        .arg("--run")
        .arg(dir.path().join("bad.trec"))
        .arg("--out")
        .arg(dir.path().join("o.trec"))
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(err.contains("d9") && err.contains("bad.trec"), "{err}");
}
