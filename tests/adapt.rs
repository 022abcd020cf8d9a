//! Training that must leave a model better, never worse: evaluation during
//! training, the best checkpoint, the no-harm guard.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use common::{pretext, root, tiny_config, tiny_model};

fn eval_rows(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("eval").is_some())
        .collect()
}

/// The training loss of every step of the run in `run`.
fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64())
        .collect()
}

fn faq_eval(every: usize) -> String {
    format!(
        "[eval]\ndata = \"{}\"\nevery = {every}\nbatch_size = 128",
        root().join("corpora/python-faq").display()
    )
}

#[test]
fn evaluation_during_training_keeps_the_best_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), &faq_eval(2));
    pretext()
        .args(["train", "--quiet", "--steps", "4", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    let run = dir.path().join("run");
    let rows = eval_rows(&run);
    let steps: Vec<u64> = rows.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![0, 2, 4], "the initialisation, every 2 steps");
    for r in &rows {
        let v = r["eval"]["nDCG@10"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v));
        assert!(r["eval"]["R@100"].is_number());
    }
    let best: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("best/eval.json")).unwrap())
            .unwrap();
    let values: Vec<f64> = rows
        .iter()
        .map(|r| r["eval"]["nDCG@10"].as_f64().unwrap())
        .collect();
    let top = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(best["value"].as_f64().unwrap(), top);
    assert_eq!(best["init"].as_f64().unwrap(), values[0]);
    let out = dir.path().join("best-model");
    pretext()
        .args(["export", "--best", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    assert!(out.join("model.safetensors").exists());
    assert!(std::fs::read_to_string(run.join("curves.svg"))
        .unwrap()
        .contains("eval"));
}

fn load(p: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(p, &Device::Cpu).unwrap()
}

#[test]
fn a_run_that_only_harms_exports_the_initialisation_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let init = tiny_model(dir.path());
    let adapt = dir.path().join("adapt");
    std::fs::create_dir_all(&adapt).unwrap();
    let cfg = tiny_config(&adapt, &faq_eval(1));
    // A learning rate that wrecks the model: no step may beat the start.
    let out = pretext()
        .args([
            "train",
            "--quiet",
            "--steps",
            "3",
            "--lr",
            "3.0",
            "--set",
            "train.warmup_steps=0",
        ])
        .args(["--set", "train.clip_norm=0.0", "--init"])
        .arg(&init)
        .arg("--config")
        .arg(&cfg)
        .assert()
        .success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("no step beat the initialisation"), "{err}");
    let exported = dir.path().join("exported");
    pretext()
        .args(["export", "--best", "--run"])
        .arg(adapt.join("run"))
        .arg("--out")
        .arg(&exported)
        .assert()
        .success();
    let (a, b) = (
        load(&init.join("model.safetensors")),
        load(&exported.join("model.safetensors")),
    );
    assert_eq!(a.len(), b.len());
    for (k, t) in &a {
        let same = t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            == b[k].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(same, "{k} changed");
    }
}

#[test]
fn frozen_parts_keep_their_bits_and_the_rest_trains() {
    let dir = tempfile::tempdir().unwrap();
    let init = tiny_model(dir.path());
    let adapt = dir.path().join("adapt");
    std::fs::create_dir_all(&adapt).unwrap();
    let cfg = tiny_config(&adapt, "freeze = { embeddings = true, layers = 1 }");
    pretext()
        .args(["train", "--quiet", "--steps", "3", "--init"])
        .arg(&init)
        .arg("--config")
        .arg(&cfg)
        .assert()
        .success();
    let before = load(&init.join("model.safetensors"));
    let after = load(&adapt.join("run/checkpoints/step-00000003/model.safetensors"));
    let (mut frozen, mut moved) = (0, 0);
    for (k, t) in &after {
        let same = t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            == before[k].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        if k.starts_with("embeddings.") || k.starts_with("encoder.layer.0.") {
            assert!(same, "{k} is frozen but changed");
            frozen += 1;
        } else if !same {
            moved += 1;
        }
    }
    assert!(
        frozen > 10 && moved > 10,
        "{frozen} frozen, {moved} trained"
    );
    let cfg = tiny_config(&adapt, "freeze = { layers = 9 }");
    let err = common::failure_stderr(
        pretext()
            .args(["train", "--quiet", "--overwrite", "--init"])
            .arg(&init)
            .arg("--config")
            .arg(&cfg),
    );
    assert!(err.contains("train.freeze.layers = 9"), "{err}");
}

#[test]
fn encode_writes_ids_and_vectors_as_the_model_embeds_them() {
    use pretext::model::pretrained::Pretrained;
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let corpus = dir.path().join("corpus.jsonl");
    let out = dir.path().join("emb");
    pretext()
        .args(["encode", "--quiet", "--npy", "--model"])
        .arg(&model)
        .arg("--corpus")
        .arg(&corpus)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let (ids, e) = pretext::encode::read_back(&out).unwrap();
    let text = std::fs::read_to_string(&corpus).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: Vec<String> = lines
        .iter()
        .map(|v| v["_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, want);
    let (rows, dim) = e.dims2().unwrap();
    assert_eq!(rows, want.len());
    let m = Pretrained::load(&model, &Device::Cpu, None).unwrap();
    let docs: Vec<String> = lines[..3]
        .iter()
        .map(|v| {
            let t = v["title"].as_str().unwrap_or("");
            let b = v["text"].as_str().unwrap();
            if t.trim().is_empty() {
                b.to_string()
            } else {
                format!("{t} {b}")
            }
        })
        .collect();
    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let direct = m.embed(&refs).unwrap().to_vec2::<f32>().unwrap();
    let got = e.narrow(0, 0, 3).unwrap().to_vec2::<f32>().unwrap();
    for (a, b) in direct.iter().zip(&got) {
        let gap = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(gap < 1e-4, "{gap}");
    }
    let npy = std::fs::read(dir.path().join("emb.npy")).unwrap();
    assert!(npy.starts_with(b"\x93NUMPY"));
    assert_eq!(npy.len() % 4, 0);
    assert!(npy.len() >= rows * dim * 4);
}

/// `encode --int8` embeds as the model quantised in the library does, and
/// close to (not exactly as) the f32 model.
#[test]
fn encode_int8_quantises_the_dense_layers() {
    use pretext::model::pretrained::Pretrained;
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let corpus = dir.path().join("corpus.jsonl");
    let run = |name: &str, int8: bool| {
        let out = dir.path().join(name);
        let mut cmd = pretext();
        cmd.args(["encode", "--quiet", "--model"])
            .arg(&model)
            .arg("--corpus")
            .arg(&corpus)
            .arg("--out")
            .arg(&out);
        if int8 {
            cmd.arg("--int8");
        }
        cmd.assert().success();
        pretext::encode::read_back(&out).unwrap().1
    };
    let (full, int8) = (run("f32", false), run("int8", true));
    let text = std::fs::read_to_string(&corpus).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let doc = format!(
        "{} {}",
        first["title"].as_str().unwrap_or(""),
        first["text"].as_str().unwrap()
    );
    let mut m = Pretrained::load(&model, &Device::Cpu, None).unwrap();
    m.quantize().unwrap();
    let direct = m.embed(&[doc.trim()]).unwrap().to_vec2::<f32>().unwrap();
    let got = int8.narrow(0, 0, 1).unwrap().to_vec2::<f32>().unwrap();
    let gap = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    assert!(gap(&direct[0], &got[0]) < 1e-4);
    let (full, int8) = (
        full.to_vec2::<f32>().unwrap(),
        int8.to_vec2::<f32>().unwrap(),
    );
    let cos = |a: &[f32], b: &[f32]| {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    };
    assert!(
        full.iter().zip(&int8).any(|(a, b)| gap(a, b) > 0.0),
        "int8 gave the f32 bits"
    );
    for (a, b) in full.iter().zip(&int8) {
        assert!(cos(a, b) > 0.99, "cosine {}", cos(a, b));
    }
}

#[test]
fn self_distillation_and_pair_weighting_change_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let init = tiny_model(dir.path());
    let losses = |name: &str, extra: &str| -> Vec<f64> {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let cfg = tiny_config(&d, extra);
        pretext()
            .args([
                "train",
                "--quiet",
                "--steps",
                "3",
                "--set",
                "model.dropout=0.0",
                "--init",
            ])
            .arg(&init)
            .arg("--config")
            .arg(&cfg)
            .assert()
            .success();
        losses(&d.join("run"))
    };
    let plain = losses("plain", "");
    let distilled = losses("distilled", "distill = { weight = 5.0 }");
    // At step 1 the model is its teacher (no dropout: KL 0); after an
    // update it is not.
    assert!(
        (plain[0] - distilled[0]).abs() < 1e-4,
        "{plain:?} vs {distilled:?}"
    );
    assert!(distilled[2] > plain[2], "{distilled:?} vs {plain:?}");
    let weighted = losses(
        "weighted",
        "loss = { type = \"infonce\", temperature = 0.05, pair_weighting = \"self\" }",
    );
    assert_ne!(weighted[0], plain[0]);
}

#[test]
fn consistency_filtering_keeps_the_pairs_the_model_ranks_high() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let corpus = dir.path().join("corpus.jsonl");
    let pairs = |name: &str, extra: &[&str]| -> (Vec<String>, String) {
        let out = dir.path().join(name);
        let run = pretext()
            .args(["pairs", "--task", "crop", "--corpus"])
            .arg(&corpus)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .assert()
            .success();
        let err = String::from_utf8_lossy(&run.get_output().stderr).to_string();
        let lines = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        (lines, err)
    };
    let (all, _) = pairs("all.jsonl", &[]);
    let m = model.display().to_string();
    let (strict, err) = pairs(
        "strict.jsonl",
        &["--filter", "consistency", "--model", &m, "--top-k", "1"],
    );
    assert!(
        err.contains(&format!(
            "kept {} pairs, dropped {}",
            strict.len(),
            all.len() - strict.len()
        )),
        "{err}"
    );
    assert!(
        !strict.is_empty() && strict.len() < all.len(),
        "{} of {}",
        strict.len(),
        all.len()
    );
    assert!(
        strict.iter().all(|l| all.contains(l)),
        "kept lines are unchanged lines"
    );
    let (loose, _) = pairs(
        "loose.jsonl",
        &[
            "--filter",
            "consistency",
            "--model",
            &m,
            "--top-k",
            "100000",
        ],
    );
    assert_eq!(loose, all);
    assert!(!dir.path().join("strict.unfiltered.jsonl").exists());
}

#[test]
fn prompts_and_lengths_train_export_and_load_back() {
    use pretext::model::pretrained::Pretrained;
    use pretext::tokenize::{PairTokenizer, Prompts, Side};
    let tok = common::shipped_tokenizer(64);
    let sides = PairTokenizer::new(
        &tok,
        8,
        20,
        Prompts {
            query: "query: ".into(),
            document: "passage: ".into(),
        },
    )
    .unwrap();
    let long = "open a file and read every line of it until the end of the file ".repeat(3);
    let q = sides.encode(Side::Query, &[long.as_str()]).unwrap();
    let d = sides.encode(Side::Document, &[long.as_str()]).unwrap();
    assert_eq!((q.seq, d.seq), (8, 20));
    let plain = tok.encode(&[long.as_str()]).unwrap();
    assert_ne!(q.ids[1], plain.ids[1], "the prompt comes first");

    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[model]\n",
        "[model]\nquery_prefix = \"query: \"\ndoc_prefix = \"passage: \"\nquery_max_len = 16\ndoc_max_len = 24\n",
    );
    std::fs::write(&cfg, text).unwrap();
    pretext()
        .args(["train", "--quiet", "--steps", "2", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    let out = dir.path().join("model");
    pretext()
        .args(["export", "--run"])
        .arg(dir.path().join("run"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("config_sentence_transformers.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(st["prompts"]["query"], "query: ");
    assert_eq!(st["prompts"]["document"], "passage: ");
    let sb: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("sentence_bert_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sb["max_seq_length"], 24);
    let m = Pretrained::load(&out, &Device::Cpu, None).unwrap();
    assert_eq!(m.prompts.query, "query: ");
    let a = m.embed_side(&["read a file"], Side::Query).unwrap();
    let b = m.embed(&["query: read a file"]).unwrap();
    assert!(common::gap(&a, &b) < 1e-6);
}

#[test]
fn bm25_teacher_scores_are_mined_read_and_distilled() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "");
    let corpus = dir.path().join("corpus.jsonl");
    let pairs = dir.path().join("pairs.jsonl");
    pretext()
        .args(["pairs", "--quiet", "--task", "crop", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&pairs)
        .assert()
        .success();
    for format in ["st", "flag", "tevatron"] {
        let mined = dir.path().join(format!("mined-{format}.jsonl"));
        pretext()
            .args([
                "mine",
                "--quiet",
                "--retriever",
                "bm25",
                "--teacher-scores",
                "bm25",
                "--queries",
            ])
            .arg(&pairs)
            .arg("--corpus")
            .arg(&corpus)
            .args([
                "--num-negatives",
                "2",
                "--range-min",
                "3",
                "--range-max",
                "30",
                "--format",
                format,
            ])
            .arg("--out")
            .arg(&mined)
            .assert()
            .success();
        let first = std::fs::read_to_string(&mined).unwrap();
        let line = first.lines().next().unwrap();
        let pair = &pretext::pretext_tasks::formats::parse_pair_line(line).unwrap()[0];
        let scores = pair
            .scores
            .as_ref()
            .unwrap_or_else(|| panic!("{format}: no scores in {line}"));
        assert_eq!(scores.len(), 1 + pair.negatives.len(), "{format}");
        assert!(scores.iter().all(|s| s.is_finite()), "{format}: {scores:?}");
    }
    // The negatives' teacher scores are BM25's own scores of them, as the
    // `ids` layout reports the retriever's scores.
    let ids = dir.path().join("ids.jsonl");
    pretext()
        .args(["mine", "--quiet", "--retriever", "bm25", "--queries"])
        .arg(&pairs)
        .arg("--corpus")
        .arg(&corpus)
        .args([
            "--num-negatives",
            "2",
            "--range-min",
            "3",
            "--range-max",
            "30",
            "--format",
            "ids",
        ])
        .arg("--out")
        .arg(&ids)
        .assert()
        .success();
    let st = std::fs::read_to_string(dir.path().join("mined-st.jsonl")).unwrap();
    let ids = std::fs::read_to_string(&ids).unwrap();
    for (a, b) in st.lines().zip(ids.lines()).take(20) {
        let teacher = pretext::pretext_tasks::formats::parse_pair_line(a).unwrap()[0]
            .scores
            .clone()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(b).unwrap();
        for (j, n) in v["negatives"].as_array().unwrap().iter().enumerate() {
            let r = n["score"].as_f64().unwrap() as f32;
            assert!(
                (teacher[j + 1] - r).abs() <= 1e-3 * r.abs().max(1.0),
                "{teacher:?} vs {v}"
            );
        }
    }
    let mined = dir.path().join("mined-st.jsonl");
    let train = |name: &str, sets: &[&str]| -> Vec<f64> {
        let mut c = pretext();
        c.args([
            "train",
            "--quiet",
            "--steps",
            "2",
            "--set",
            "train.hard_negatives=1",
            "--set",
            "model.dropout=0.0",
        ])
        .arg("--pairs")
        .arg(&mined)
        .arg("--config")
        .arg(&cfg)
        .arg("--out")
        .arg(dir.path().join(name));
        for s in sets {
            c.args(["--set", s]);
        }
        c.assert().success();
        losses(&dir.path().join(name))
    };
    let plain = train("plain", &[]);
    let mse = train("mse", &["train.teacher.weight=1.0"]);
    let kl = train(
        "kl",
        &[
            "train.teacher.weight=1.0",
            "train.teacher.loss=\"kl\"",
            "train.teacher.temperature=5.0",
        ],
    );
    assert!(
        mse[0] > plain[0] && kl[0] > plain[0],
        "{plain:?} {mse:?} {kl:?}"
    );
    // Pairs without scores: an error that says what is missing.
    let err = common::failure_stderr(
        pretext()
            .args([
                "train",
                "--quiet",
                "--steps",
                "1",
                "--set",
                "train.hard_negatives=1",
                "--set",
                "train.teacher.weight=1.0",
            ])
            .arg("--pairs")
            .arg(
                dir.path()
                    .join("mined-flag.jsonl")
                    .with_file_name("pairs.jsonl"),
            )
            .arg("--config")
            .arg(&cfg)
            .arg("--out")
            .arg(dir.path().join("none")),
    );
    assert!(err.contains("teacher scores"), "{err}");
}

/// `tiny_config` with the `spar` task (BM25's top 3 per pseudo-query).
fn spar_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let cfg = tiny_config(dir, extra);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("type = \"crop\"\nwindow = 48", "type = \"spar\"\ntop_k = 3");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

#[test]
fn spar_pairs_are_bm25s_top_k_with_its_scores_in_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = spar_config(dir.path(), "");
    let corpus = dir.path().join("corpus.jsonl");
    let ids: Vec<String> = std::fs::read_to_string(&corpus)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["_id"].to_string())
        .collect();
    for format in ["st", "flag", "tevatron"] {
        let out = dir.path().join(format!("spar-{format}.jsonl"));
        pretext()
            .args(["pairs", "--quiet", "--config"])
            .arg(&cfg)
            .args(["--format", format, "--out"])
            .arg(&out)
            .assert()
            .success();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.lines().count() > 100, "{format}: few pairs");
        for line in text.lines() {
            let pair = &pretext::pretext_tasks::formats::parse_pair_line(line).unwrap()[0];
            let s = pair.scores.as_ref().expect("spar pairs carry BM25 scores");
            assert_eq!(s.len(), 1 + pair.negatives.len(), "{format}: {line}");
            assert!((2..=3).contains(&s.len()), "{format}: top_k = 3: {line}");
            assert!(s.windows(2).all(|w| w[0] >= w[1]), "best first: {s:?}");
            assert!(!pair.negatives.contains(&pair.positive));
        }
        if format == "tevatron" {
            // Retrieved passages name the documents they are, not the
            // document the query came from.
            let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
            for p in v["negative_passages"].as_array().unwrap() {
                assert!(ids.contains(&p["docid"].to_string()), "{p}");
                assert!(p["score"].is_number());
            }
        }
    }
}

#[test]
fn spar_trains_with_bm25_and_hybrid_teachers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = spar_config(dir.path(), "");
    let train = |name: &str, sets: &[&str]| -> Vec<f64> {
        let mut c = pretext();
        c.args([
            "train",
            "--quiet",
            "--steps",
            "2",
            "--set",
            "train.hard_negatives=2",
            "--set",
            "model.dropout=0.0",
            "--config",
        ])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.path().join(name));
        for s in sets {
            c.args(["--set", s]);
        }
        c.assert().success();
        losses(&dir.path().join(name))
    };
    let kl = ["train.teacher.weight=1.0", "train.teacher.loss=\"kl\""];
    let plain = train("plain", &[]);
    let bm25 = train("bm25", &kl);
    let hybrid = train("hybrid", &[kl[0], kl[1], "train.teacher.blend_init=1.0"]);
    assert!(bm25[0] > plain[0], "{plain:?} {bm25:?}");
    assert!(
        hybrid.iter().all(|l| l.is_finite()) && (hybrid[0] - bm25[0]).abs() > 1e-6,
        "the initial model's scores change the teacher: {bm25:?} {hybrid:?}"
    );
    // GPL's way: the candidates count only through the teacher, so the
    // contrastive term loses their denominators and the first loss drops.
    let alone = train("alone", &[kl[0], kl[1], "train.teacher.contrast=false"]);
    assert!(alone[0] < bm25[0] - 1e-4, "{bm25:?} {alone:?}");
}

#[test]
fn adaptation_settings_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let crop = tiny_config(dir.path(), "");
    std::fs::create_dir_all(dir.path().join("s")).unwrap();
    let spar = spar_config(&dir.path().join("s"), "");
    let cases: [(&std::path::PathBuf, &[&str], &str); 6] = [
        (
            &crop,
            &["train.teacher.weight=1.0", "train.hard_negatives=1"],
            "task.type = \"spar\"",
        ),
        (
            &spar,
            &["train.teacher.weight=1.0", "train.hard_negatives=3"],
            "top_k - 1 = 2",
        ),
        (
            &spar,
            &[
                "train.teacher.weight=1.0",
                "train.hard_negatives=1",
                "train.teacher.blend_init=1.0",
            ],
            "blend_init",
        ),
        (
            &crop,
            &["eval.held_out=0.1", "eval.data=\"corpora/python-faq\""],
            "two dev sets",
        ),
        (&crop, &["train.filter.top_k=2"], "train.filter.model"),
        (
            &spar,
            &[
                "train.teacher.weight=1.0",
                "train.hard_negatives=1",
                "train.teacher.contrast=false",
                "train.loss.in_batch=false",
                "train.memory=\"none\"",
            ],
            "contrast = false",
        ),
    ];
    for (cfg, sets, want) in cases {
        let mut c = pretext();
        c.args(["train", "--quiet", "--steps", "1", "--config"])
            .arg(cfg);
        for s in sets {
            c.args(["--set", s]);
        }
        let err = common::failure_stderr(&mut c);
        assert!(err.contains(want), "{sets:?}: {err}");
    }
}

#[test]
fn a_self_supervised_dev_set_is_held_out_scored_and_selects() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(
        dir.path(),
        "[eval]\nheld_out = 0.2\nevery = 2\nbatch_size = 128",
    );
    pretext()
        .args(["train", "--quiet", "--steps", "4", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    let run = dir.path().join("run");
    let rows = eval_rows(&run);
    let steps: Vec<u64> = rows.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![0, 2, 4]);
    // One relevant passage per query: the metrics are those of a real
    // retrieval, not constants.
    let v: Vec<f64> = rows
        .iter()
        .map(|r| r["eval"]["nDCG@10"].as_f64().unwrap())
        .collect();
    assert!(v.iter().all(|x| (0.0..=1.0).contains(x)), "{v:?}");
    assert!(v.iter().any(|x| *x > 0.0 && *x < 1.0), "{v:?}");
    assert!(run.join("best/eval.json").exists());

    // The held-out documents never reach the training stream.
    let config = pretext::config::ConfigBuilder::new(Some(&cfg))
        .unwrap()
        .build()
        .unwrap();
    let held = pretext::train::dev::HeldOut::new(config.seed, 0.2).unwrap();
    let source = pretext::train::data::PairSource::Task {
        corpus: config.corpus.open().unwrap(),
        task: config.task.clone(),
        augment: Default::default(),
        read: Default::default(),
        held_out: Some(held),
        groups: Default::default(),
    };
    let base =
        pretext::tokenize::TextTokenizer::from_file(&run.join("tokenizer.json"), 32).unwrap();
    let tok = pretext::tokenize::PairTokenizer::new(&base, 32, 32, Default::default()).unwrap();
    let mut stream = pretext::train::data::BatchStream::start(
        source,
        tok,
        pretext::train::data::StreamConfig {
            seed: 1,
            batch_size: 50,
            shuffle_buffer: 1,
            hard_negatives: 0,
            own_negatives: 0,
            skip_batches: 0,
            rank: 0,
            world: 1,
            rules: Default::default(),
        },
        None,
        None,
    )
    .unwrap();
    let mut seen = 0;
    for _ in 0..10 {
        for s in stream.next_batch().unwrap().sources {
            let o = s.unwrap();
            assert!(!held.contains(o), "held-out document {o} in training");
            seen += 1;
        }
    }
    assert_eq!(seen, 500);
    let held_count = (0..300u64).filter(|&o| held.contains(o)).count();
    assert!(
        (20..100).contains(&held_count),
        "{held_count} of 300 held out"
    );
}

#[test]
fn consistency_filtering_in_train_counts_what_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let cfg = tiny_config(dir.path(), "");
    let run = pretext()
        .args(["train", "--quiet", "--steps", "3", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.path().join("filtered"))
        .args([
            "--set",
            "train.filter.top_k=1",
            "--set",
            "train.filter.pool=64",
        ])
        .arg("--set")
        .arg(format!("train.filter.model=\"{}\"", model.display()))
        .assert()
        .success();
    let err = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    let counts: Vec<usize> = err
        .split("kept ")
        .nth(1)
        .unwrap_or_else(|| panic!("{err}"))
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(2)
        .map(|s| s.parse().unwrap())
        .collect();
    let (kept, dropped) = (counts[0], counts[1]);
    assert!(kept >= 3 * 8 && dropped > 0, "{err}");
}

/// `model.positions = false`: the position tables stay zero through
/// training, the exported model reads up to its table's size, embeds a text
/// and its words reversed alike, and an `--init` model keeps its positions.
#[test]
fn a_model_without_positions_is_blind_to_order_and_reads_any_length() {
    use pretext::model::pretrained::Pretrained;
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "");
    pretext()
        .args([
            "train",
            "--quiet",
            "--steps",
            "3",
            "--set",
            "model.positions=false",
            "--config",
        ])
        .arg(&cfg)
        .assert()
        .success();
    let run = dir.path().join("run");
    let w = common::weights(&run, 3);
    let table = &w["embeddings.position_embeddings.weight"];
    let words = &w["embeddings.word_embeddings.weight"];
    let abs_sum = |t: &Tensor| {
        t.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    assert_eq!(abs_sum(table), 0.0, "the position table trained");
    assert!(abs_sum(words) > 0.0);
    let model = dir.path().join("model");
    pretext()
        .args(["export", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&model)
        .assert()
        .success();
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model.join("sentence_bert_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        st["max_seq_length"], 512,
        "trained at 32, reads the table's 512"
    );
    let m = Pretrained::load(&model, &Device::Cpu, None).unwrap();
    let e = m
        .embed(&["read a file line by line", "line by line file a read"])
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let gap = e[0]
        .iter()
        .zip(&e[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(gap < 1e-5, "word order changed the embedding by {gap}");

    std::fs::create_dir_all(dir.path().join("init")).unwrap();
    let init = tiny_model(&dir.path().join("init"));
    let err = common::failure_stderr(
        pretext()
            .args([
                "train",
                "--quiet",
                "--overwrite",
                "--set",
                "model.positions=false",
                "--init",
            ])
            .arg(&init)
            .arg("--config")
            .arg(&cfg),
    );
    assert!(err.contains("model.positions = false"), "{err}");
}

/// `model.embeddings = "lsa"`: a model trained from scratch starts its word
/// embeddings from the corpus's LSA token vectors (the rows of the tokens
/// the corpus holds; the others keep their random start), and an `--init`
/// model, which brings its own, is refused.
#[test]
fn lsa_embeddings_start_from_the_corpus() {
    use pretext::model::lsa;
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "");
    let train = |extra: &[&str]| {
        let mut cmd = pretext();
        cmd.args(["train", "--quiet", "--steps", "1", "--lr", "1e-12"])
            .args(["--set", "train.warmup_steps=0"])
            .args(["--set", "model.embeddings=lsa", "--config"])
            .arg(&cfg)
            .args(extra);
        cmd
    };
    train(&[]).assert().success();
    let run = dir.path().join("run");
    let table = common::weights(&run, 1)["embeddings.word_embeddings.weight"]
        .to_vec2::<f32>()
        .unwrap();
    let tok = tokenizers::Tokenizer::from_file(run.join("tokenizer.json")).unwrap();
    let texts: Vec<String> = std::fs::read_to_string(dir.path().join("corpus.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_string()
        })
        .collect();
    let dim = table[0].len();
    // The run's seed (3) draws the same sketch.
    let want = lsa::token_vectors(&tok, &texts, table.len(), dim, 3).unwrap();
    let seen = want.seen.iter().filter(|&&s| s).count();
    assert!(seen > 100 && seen < table.len(), "{seen} tokens seen");
    for (t, row) in table.iter().enumerate() {
        if want.seen[t] {
            let gap = row
                .iter()
                .zip(&want.vectors[t * dim..(t + 1) * dim])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(gap < 1e-4, "token {t}: {gap}");
        } else {
            // BERT's N(0, 0.02): far below the LSA rows' unit scale.
            assert!(row.iter().all(|x| x.abs() < 0.2), "token {t}");
        }
    }

    std::fs::create_dir_all(dir.path().join("init")).unwrap();
    let init = tiny_model(&dir.path().join("init"));
    let err = common::failure_stderr(train(&["--overwrite", "--init"]).arg(&init));
    assert!(err.contains("model.embeddings"), "{err}");
}
