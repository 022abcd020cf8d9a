//! Cross-encoders: Hugging Face `BertForSequenceClassification` folders
//! load and score as `transformers` does. The fixtures (two tiny random
//! models, one logit and two labels, and transformers' logits for a few
//! pairs, some cut at the maximum length) are made by
//! `tests/fixtures/cross_encoder/make_expected.py`.

mod common;

use candle_core::Device;
use common::root;
use pretext::model::cross::{probability, Output, PretrainedCrossEncoder};
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

/// 40 passages and 10 queries in the fixtures' vocabulary, as a corpus
/// (JSONL, no titles) and a sentence-transformers pair file.
fn mining_set(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let subjects = ["wing", "plate", "cylinder", "shock wave", "boundary layer"];
    let things = ["lift", "drag", "heat transfer", "pressure"];
    let text = |i: usize| {
        format!(
            "the {} of a {} at mach {} in the theory of flow",
            things[i % 4],
            subjects[i % 5],
            i % 9
        )
    };
    let docs: Vec<String> = (0..40)
        .map(|i| serde_json::json!({"_id": format!("d{i}"), "text": text(i)}).to_string())
        .collect();
    let corpus = dir.join("corpus.jsonl");
    std::fs::write(&corpus, docs.join("\n") + "\n").unwrap();
    let lines: Vec<String> = (0..10)
        .map(|q| {
            let d = 4 * q + 1;
            // The mach number tells the positive from its nearest twins.
            let anchor = format!(
                "what is the {} of a {} at mach {}",
                things[d % 4],
                subjects[d % 5],
                d % 9
            );
            serde_json::json!({"anchor": anchor, "positive": text(d)}).to_string()
        })
        .collect();
    let queries = dir.join("queries.jsonl");
    std::fs::write(&queries, lines.join("\n") + "\n").unwrap();
    (corpus, queries)
}

fn jsonl(p: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `q` quantile of the cross-encoder's probabilities over every
/// (query, passage) of a [`mining_set`]: thresholds that split this random
/// model's judgements.
fn quantile(
    ce: &PretrainedCrossEncoder,
    queries: &std::path::Path,
    corpus: &std::path::Path,
    q: f64,
) -> f32 {
    let texts: Vec<String> = jsonl(corpus)
        .iter()
        .map(|d| d["text"].as_str().unwrap().to_string())
        .collect();
    let mut all = Vec::new();
    for l in &jsonl(queries) {
        let a = l["anchor"].as_str().unwrap();
        let pairs: Vec<(&str, &str)> = texts.iter().map(|t| (a, t.as_str())).collect();
        all.extend(ce.score(&pairs, 16).unwrap().into_iter().map(probability));
    }
    all.sort_by(f32::total_cmp);
    all[((all.len() - 1) as f64 * q) as usize]
}

#[test]
fn mine_rescore_ce_drops_what_the_cross_encoder_calls_relevant() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, queries) = mining_set(dir.path());
    let model = root().join("tests/fixtures/cross_encoder/two-labels");
    let ce = PretrainedCrossEncoder::load(&model, &Device::Cpu, None).unwrap();
    // The threshold: the median probability over every (query, passage),
    // so about half of the candidates are above it.
    let threshold = quantile(&ce, &queries, &corpus, 0.5);
    let mine = |name: &str, max: f32| -> (Vec<Value>, Value) {
        let out = dir.path().join(format!("{name}.jsonl"));
        let stats = dir.path().join(format!("{name}.json"));
        common::pretext()
            .args([
                "mine",
                "--quiet",
                "--retriever",
                "bm25",
                "--num-negatives",
                "3",
            ])
            .args(["--range-max", "30", "--rescore-ce"])
            .arg(&model)
            .args(["--ce-max-score", &max.to_string(), "--queries"])
            .arg(&queries)
            .arg("--corpus")
            .arg(&corpus)
            .arg("--stats")
            .arg(&stats)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let s: Value = serde_json::from_str(&std::fs::read_to_string(stats).unwrap()).unwrap();
        (jsonl(&out), s)
    };
    let (kept, stats) = mine("denoised", threshold);
    let dropped = stats["filtered"]["cross-encoder"].as_u64().unwrap();
    assert!(dropped > 0, "{stats}");
    let mut negatives = 0;
    for l in &kept {
        let a = l["anchor"].as_str().unwrap();
        for (k, v) in l.as_object().unwrap() {
            if k.starts_with("negative") {
                let p = probability(ce.score(&[(a, v.as_str().unwrap())], 1).unwrap()[0]);
                assert!(p <= threshold + 1e-5, "{a} / {v}: {p} > {threshold}");
                negatives += 1;
            }
        }
    }
    assert!(negatives > 0);
    // At probability 1 nothing is dropped by the cross-encoder.
    let (_, open) = mine("open", 1.0);
    assert_eq!(open["filtered"]["cross-encoder"], 0);
}

#[test]
fn mine_writes_the_cross_encoder_s_scores_for_distillation() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, queries) = mining_set(dir.path());
    let model = root().join("tests/fixtures/cross_encoder/one-logit");
    let out = dir.path().join("scored.jsonl");
    common::pretext()
        .args([
            "mine",
            "--quiet",
            "--retriever",
            "bm25",
            "--num-negatives",
            "2",
        ])
        .args(["--teacher-scores", "cross-encoder", "--teacher-model"])
        .arg(&model)
        .arg("--queries")
        .arg(&queries)
        .arg("--corpus")
        .arg(&corpus)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let ce = PretrainedCrossEncoder::load(&model, &Device::Cpu, None).unwrap();
    let lines = jsonl(&out);
    assert_eq!(lines.len(), 10);
    for l in &lines {
        let a = l["anchor"].as_str().unwrap();
        let texts = [&l["positive"], &l["negative_1"], &l["negative_2"]];
        let scores = l["scores"].as_array().unwrap();
        assert_eq!(scores.len(), 3, "{l}");
        for (t, s) in texts.iter().zip(scores) {
            let want = ce.score(&[(a, t.as_str().unwrap())], 1).unwrap()[0];
            assert!((s.as_f64().unwrap() as f32 - want).abs() < 1e-4, "{l}");
        }
    }
    // The teacher's model without the teacher is a mistake, said so.
    let err = common::failure_stderr(
        common::pretext()
            .args(["mine", "--quiet", "--teacher-model"])
            .arg(&model)
            .arg("--queries")
            .arg(&queries)
            .arg("--corpus")
            .arg(&corpus)
            .arg("--out")
            .arg(dir.path().join("x.jsonl")),
    );
    assert!(err.contains("--teacher-scores cross-encoder"), "{err}");
}

#[test]
fn training_refuses_raters_it_would_ignore() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[negatives]\nsource = \"random\"\nrescore_ce = \"{}\"\n",
        root()
            .join("tests/fixtures/cross_encoder/one-logit")
            .display()
    );
    let cfg = common::tiny_config(dir.path(), &extra);
    let err = common::failure_stderr(
        common::pretext()
            .args(["train", "--quiet", "--config"])
            .arg(&cfg),
    );
    assert!(
        err.contains("negatives.rescore_ce") && err.contains("pretext mine"),
        "{err}"
    );
}

#[test]
fn label_keeps_the_confident_ends_with_their_scores() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, queries) = mining_set(dir.path());
    let model = root().join("tests/fixtures/cross_encoder/one-logit");
    let ce = PretrainedCrossEncoder::load(&model, &Device::Cpu, None).unwrap();
    // Thresholds inside this random model's range of probabilities.
    let (pos, neg) = (
        quantile(&ce, &queries, &corpus, 0.7),
        quantile(&ce, &queries, &corpus, 0.3),
    );
    let label = |format: &str, queries: &std::path::Path, name: &str| -> (Vec<Value>, String) {
        let out = dir.path().join(name);
        let assert = common::pretext()
            .args([
                "label",
                "--depth",
                "20",
                "--max-positives",
                "2",
                "--max-negatives",
                "3",
            ])
            .args([
                "--positive",
                &pos.to_string(),
                "--negative",
                &neg.to_string(),
            ])
            .args(["--format", format, "--model"])
            .arg(&model)
            .arg("--queries")
            .arg(queries)
            .arg("--corpus")
            .arg(&corpus)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let err = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
        (jsonl(&out), err)
    };
    let (lines, report) = label("st", &queries, "st.jsonl");
    assert!(
        report.contains("pseudo-positive") && report.contains("uncertain"),
        "{report}"
    );
    assert!(!lines.is_empty() && lines.len() <= 20, "{}", lines.len());
    let prob = |a: &str, t: &str| probability(ce.score(&[(a, t)], 1).unwrap()[0]);
    let mut negatives = 0;
    for l in &lines {
        let a = l["anchor"].as_str().unwrap();
        let p = l["positive"].as_str().unwrap();
        assert!(prob(a, p) > pos - 1e-5, "{l}");
        let scores = l["scores"].as_array().unwrap();
        assert!(
            (scores[0].as_f64().unwrap() as f32 - ce.score(&[(a, p)], 1).unwrap()[0]).abs() < 1e-4
        );
        for j in 1..=3 {
            if let Some(n) = l[format!("negative_{j}")].as_str() {
                assert!(prob(a, n) < neg + 1e-5, "{l}");
                negatives += 1;
            }
        }
        assert_eq!(
            scores.len(),
            1 + (1..=3)
                .filter(|j| l[format!("negative_{j}")].is_string())
                .count()
        );
    }
    assert!(negatives > 0);
    // BEIR queries read as well, and FlagEmbedding lines carry pos_scores
    // and neg_scores.
    let beir = dir.path().join("beir-queries.jsonl");
    let rows: Vec<String> = jsonl(&queries)
        .iter()
        .enumerate()
        .map(|(i, l)| serde_json::json!({"_id": format!("q{i}"), "text": l["anchor"]}).to_string())
        .collect();
    std::fs::write(&beir, rows.join("\n") + "\n").unwrap();
    let (flag, _) = label("flag", &beir, "flag.jsonl");
    assert_eq!(flag.len(), lines.len());
    for (f, s) in flag.iter().zip(&lines) {
        assert_eq!(f["query"], s["anchor"]);
        assert_eq!(f["pos"][0], s["positive"]);
        assert_eq!(f["pos_scores"][0], s["scores"][0]);
        assert_eq!(
            f["neg_scores"].as_array().unwrap().len(),
            f["neg"].as_array().unwrap().len()
        );
    }
    // Thresholds that cross are refused.
    let err = common::failure_stderr(
        common::pretext()
            .args(["label", "--positive", "0.2", "--negative", "0.5", "--model"])
            .arg(&model)
            .arg("--queries")
            .arg(&queries)
            .arg("--corpus")
            .arg(&corpus),
    );
    assert!(
        err.contains("--negative 0.5 is above --positive 0.2"),
        "{err}"
    );
}

/// Share of a pair file's lines whose positive the cross-encoder scores
/// above every negative.
fn ranked_first(ce: &PretrainedCrossEncoder, lines: &[Value]) -> f64 {
    let mut first = 0;
    for l in lines {
        let a = l["anchor"].as_str().unwrap();
        let mut texts = vec![l["positive"].as_str().unwrap()];
        texts.extend((1..=3).filter_map(|j| l[format!("negative_{j}")].as_str()));
        let pairs: Vec<(&str, &str)> = texts.iter().map(|t| (a, *t)).collect();
        let s = ce.score(&pairs, 8).unwrap();
        first += usize::from(s[1..].iter().all(|&n| n < s[0]));
    }
    first as f64 / lines.len() as f64
}

#[test]
fn a_cross_encoder_trains_on_mined_negatives_and_exports_as_it_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, queries) = mining_set(dir.path());
    let pairs = dir.path().join("pairs.jsonl");
    common::pretext()
        .args([
            "mine",
            "--quiet",
            "--retriever",
            "bm25",
            "--num-negatives",
            "3",
            "--queries",
        ])
        .arg(&queries)
        .arg("--corpus")
        .arg(&corpus)
        .arg("--out")
        .arg(&pairs)
        .assert()
        .success();
    let init = root().join("tests/fixtures/cross_encoder/one-logit");
    let lines = jsonl(&pairs);
    let before = ranked_first(
        &PretrainedCrossEncoder::load(&init, &Device::Cpu, None).unwrap(),
        &lines,
    );
    for (loss, name) in [("listwise", "listwise"), ("bce", "bce")] {
        let cfg = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "seed = 5\n[model]\nkind = \"cross-encoder\"\ninit = \"{}\"\nmax_len = 48\ndropout = 0.0\n[cross_encoder]\nloss = \"{loss}\"\n[train]\nout = \"{}\"\npairs = \"{}\"\nsteps = 100\nbatch_size = 5\nlr = 3e-3\nwarmup_steps = 2\nhard_negatives = 3\ncheckpoint_every = 50\n",
                init.display(),
                dir.path().join(format!("run-{name}")).display(),
                pairs.display()
            ),
        )
        .unwrap();
        common::pretext()
            .args(["train", "--quiet", "--config"])
            .arg(&cfg)
            .assert()
            .success();
        let model = dir.path().join(format!("model-{name}"));
        common::pretext()
            .args(["export", "--run"])
            .arg(dir.path().join(format!("run-{name}")))
            .arg("--out")
            .arg(&model)
            .assert()
            .success();
        // The export is a cross-encoder folder, and it learned the pairs.
        let trained = PretrainedCrossEncoder::load(&model, &Device::Cpu, None).unwrap();
        assert_eq!(trained.model.output(), Output::Logit);
        let after = ranked_first(&trained, &lines);
        assert!(after >= before + 0.3, "{name}: {before} -> {after}");
        let metrics =
            std::fs::read_to_string(dir.path().join(format!("run-{name}/metrics.jsonl"))).unwrap();
        assert_eq!(metrics.lines().count(), 100);
    }
}

#[test]
fn a_cross_encoder_config_asks_only_for_what_it_uses() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ce.toml");
    let run = |body: &str| {
        std::fs::write(&cfg, format!("[model]\nkind = \"cross-encoder\"\n{body}")).unwrap();
        common::failure_stderr(
            common::pretext()
                .args(["train", "--quiet", "--config"])
                .arg(&cfg),
        )
    };
    let err = run("[train]\nhard_negatives = 1\n");
    assert!(err.contains("train.pairs"), "{err}");
    let err = run("[train]\npairs = \"p.jsonl\"\n");
    assert!(err.contains("train.hard_negatives >= 1"), "{err}");
    let err = run("normalize = true\n[train]\npairs = \"p.jsonl\"\nhard_negatives = 1\ndistill = { weight = 1.0 }\n");
    assert!(
        err.contains("does not use")
            && err.contains("train.distill")
            && err.contains("model.normalize"),
        "{err}"
    );
    let err =
        run("[cross_encoder]\nlabels = 3\n[train]\npairs = \"p.jsonl\"\nhard_negatives = 1\n");
    assert!(err.contains("cross_encoder.labels = 3"), "{err}");
}

#[test]
fn a_dual_encoder_distils_the_cross_encoder_s_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, queries) = mining_set(dir.path());
    let model = root().join("tests/fixtures/cross_encoder/one-logit");
    let ce = PretrainedCrossEncoder::load(&model, &Device::Cpu, None).unwrap();
    let (pos, neg) = (
        quantile(&ce, &queries, &corpus, 0.6),
        quantile(&ce, &queries, &corpus, 0.4),
    );
    let labelled = dir.path().join("labelled.jsonl");
    common::pretext()
        .args([
            "label",
            "--quiet",
            "--max-positives",
            "3",
            "--max-negatives",
            "2",
        ])
        .args([
            "--positive",
            &pos.to_string(),
            "--negative",
            &neg.to_string(),
            "--model",
        ])
        .arg(&model)
        .arg("--queries")
        .arg(&queries)
        .arg("--corpus")
        .arg(&corpus)
        .arg("--out")
        .arg(&labelled)
        .assert()
        .success();
    // The pairs carry the cross-encoder's scores, which MarginMSE and KL
    // learn from; without them the teacher's loss is refused.
    let train = |pairs: &std::path::Path, loss: &str, name: &str| {
        let cfg = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[model]\npreset = \"tiny\"\ntokenizer = \"{}\"\nmax_len = 32\n[train]\nout = \"{}\"\npairs = \"{}\"\nsteps = 3\nbatch_size = 4\nmemory = \"none\"\nhard_negatives = 1\nteacher = {{ loss = \"{loss}\", weight = 1.0 }}\n",
                model.join("tokenizer.json").display(),
                dir.path().join(name).display(),
                pairs.display()
            ),
        )
        .unwrap();
        common::pretext()
            .args(["train", "--quiet", "--config"])
            .arg(&cfg)
            .assert()
    };
    for loss in ["margin-mse", "kl"] {
        train(&labelled, loss, loss).success();
        let logged = std::fs::read_to_string(dir.path().join(loss).join("metrics.jsonl")).unwrap();
        assert_eq!(logged.lines().count(), 3);
    }
    let bare = dir.path().join("bare.jsonl");
    let lines: Vec<String> = jsonl(&labelled)
        .into_iter()
        .map(|mut l| {
            l.as_object_mut().unwrap().remove("scores");
            l.to_string()
        })
        .collect();
    std::fs::write(&bare, lines.join("\n") + "\n").unwrap();
    let out = train(&bare, "kl", "bare").failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("train.teacher needs teacher scores"), "{err}");
}
