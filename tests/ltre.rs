//! LTRe (`train.mode = "ltre"`): the document index never changes and the
//! query encoder learns from its ranking.

mod common;

use candle_core::Device;
use common::{failure_stderr, pretext, root, tiny_model};
use pretext::model::pretrained::Pretrained;
use pretext::tokenize::Side;
use std::path::{Path, PathBuf};

/// An LTRe config over the first 300 documents of the shipped corpus (the
/// file `tiny_model` writes), from `init`.
fn ltre_config(dir: &Path, init: &Path, extra: &str) -> PathBuf {
    let cfg = dir.join("ltre.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
seed = 11
[corpus]
path = "{corpus}"
[task]
type = "pseudo-query"
[model]
init = "{init}"
max_len = 32
similarity = "cosine"
shared_towers = false
dropout = 0.0
[train]
mode = "ltre"
ltre = {{ top_n = 20 }}
out = "{out}"
steps = 40
batch_size = 16
lr = 3e-3
warmup_steps = 4
shuffle_buffer = 256
checkpoint_every = 0
{extra}
"#,
            corpus = dir.join("init/corpus.jsonl").display(),
            init = init.display(),
            out = dir.join("run").display(),
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn ltre_keeps_the_document_index_and_the_query_encoder_learns() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("init")).unwrap();
    let init = tiny_model(&dir.path().join("init"));
    let cfg = ltre_config(dir.path(), &init, "");
    pretext()
        .args(["train", "--quiet", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    let rows = common::metrics(&dir.path().join("run"));
    assert_eq!(rows.len(), 40);
    // The index is encoded once, before the first step, and never again.
    assert!(rows[0]["refresh_seconds"].as_f64().is_some());
    assert!(rows[1..].iter().all(|r| r.get("refresh_seconds").is_none()));
    // The query encoder learns the ranking: the loss falls and the
    // relevant document comes first more often.
    let mean = |rs: &[serde_json::Value], k: &str| {
        rs.iter().map(|r| r[k].as_f64().unwrap()).sum::<f64>() / rs.len() as f64
    };
    let (early, late) = (&rows[..10], &rows[30..]);
    assert!(
        mean(late, "loss") < 0.8 * mean(early, "loss"),
        "loss {} -> {}",
        mean(early, "loss"),
        mean(late, "loss")
    );
    assert!(mean(late, "accuracy") > mean(early, "accuracy"));

    // The document tower is the init's, bit for bit; the query tower moved.
    let init_w = common::weights(&dir.path().join("init/run"), 2);
    let w = common::weights(&dir.path().join("run"), 40);
    for (name, t) in &init_w {
        let doc = &w[&format!("doc.{name}")];
        assert_eq!(common::gap(t, doc), 0.0, "doc.{name} changed");
    }
    let moved = init_w
        .iter()
        .filter(|(n, t)| common::gap(t, &w[n.as_str()]) > 0.0)
        .count();
    assert!(moved > 0, "the query tower did not train");

    // Exported, documents embed as the init embeds them; queries do not.
    let out = dir.path().join("model");
    common::export(&dir.path().join("run"), &out);
    let adapted = Pretrained::load(&out, &Device::Cpu, None).unwrap();
    let start = Pretrained::load(&init, &Device::Cpu, None).unwrap();
    let text = ["Reading and writing files with the open function"];
    let vec = |m: &Pretrained, side| {
        m.embed_side(&text, side)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(vec(&adapted, Side::Document), vec(&start, Side::Document));
    assert_ne!(vec(&adapted, Side::Query), vec(&start, Side::Query));
}

#[test]
fn ltre_refuses_what_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let init = root().join("tests/fixtures/cross_encoder/one-logit");
    let cfg = ltre_config(
        dir.path(),
        &init,
        "hard_negatives = 2\n[negatives]\nsource = \"bm25\"",
    );
    let run = |set: &[&str]| {
        let mut c = pretext();
        c.args(["train", "--config"]).arg(&cfg);
        for s in set {
            c.args(["--set", s]);
        }
        failure_stderr(&mut c)
    };
    let err = run(&[]);
    assert!(
        err.contains("[negatives] source") && err.contains("train.hard_negatives"),
        "{err}"
    );
    let ok = ["train.hard_negatives=0", "negatives.source=none"];
    let err = run(&[ok[0], ok[1], "model.shared_towers=true"]);
    assert!(err.contains("model.shared_towers = false"), "{err}");
    let err = run(&[ok[0], ok[1], "train.ltre.top_n=0"]);
    assert!(err.contains("train.ltre.top_n = 0"), "{err}");
    let err = run(&[ok[0], ok[1], "model.kind=cross-encoder"]);
    assert!(err.contains("cross-encoder has none"), "{err}");
    let err = run(&[
        ok[0],
        ok[1],
        "train.ltre.teacher.weight=1",
        "train.ltre.teacher.lexical=0",
        "train.ltre.teacher.init=0",
    ]);
    assert!(err.contains("score every candidate the same"), "{err}");
    let err = run(&[ok[0], ok[1], "train.ltre.teacher.temperature=0"]);
    assert!(err.contains("train.ltre.teacher.temperature = 0"), "{err}");
    // Outside LTRe its settings are refused rather than ignored.
    let err = run(&[
        ok[0],
        ok[1],
        "train.mode=contrastive",
        "model.shared_towers=true",
        "train.ltre.teacher.weight=1",
    ]);
    assert!(
        err.contains("train.ltre is set but train.mode is not"),
        "{err}"
    );
}

#[test]
fn ltre_learns_with_a_fusion_teacher() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("init")).unwrap();
    let init = tiny_model(&dir.path().join("init"));
    let cfg = ltre_config(dir.path(), &init, "");
    let run = |out: &str, sets: &[&str]| {
        let mut c = pretext();
        c.args(["train", "--quiet", "--config"])
            .arg(&cfg)
            .args(["--steps", "20", "--out"])
            .arg(dir.path().join(out));
        for s in sets {
            c.args(["--set", s]);
        }
        c.assert().success();
        common::metrics(&dir.path().join(out))
    };
    let plain = run("plain", &[]);
    let taught = run(
        "taught",
        &[
            "train.ltre.teacher.weight=1.0",
            "train.ltre.teacher.filter=true",
        ],
    );
    assert_eq!(taught.len(), 20);
    // The same batches: the first step differs only by the teacher's term,
    // a KL divergence (>= 0), and the filter only removes pairs; the run
    // trains (the loss falls).
    let loss = |rows: &[serde_json::Value], i: usize| rows[i]["loss"].as_f64().unwrap();
    assert_ne!(
        loss(&plain, 0),
        loss(&taught, 0),
        "the teacher changed nothing"
    );
    assert!(loss(&taught, 19).is_finite());
    let mean = |rs: &[serde_json::Value]| {
        rs.iter().map(|r| r["loss"].as_f64().unwrap()).sum::<f64>() / rs.len() as f64
    };
    assert!(
        mean(&taught[15..]) < mean(&taught[..5]),
        "the taught run did not learn"
    );
}

#[test]
fn init_document_length_is_the_inits_and_is_saved_as_a_number() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("init")).unwrap();
    let init = tiny_model(&dir.path().join("init"));
    let cfg = ltre_config(dir.path(), &init, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("max_len = 32\n", "max_len = 16\ndoc_max_len = \"init\"\n")
        .replace("steps = 40", "steps = 2");
    std::fs::write(&cfg, text).unwrap();
    pretext()
        .args(["train", "--quiet", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    let sbert = |dir: &Path| -> u64 {
        let text = std::fs::read_to_string(dir.join("sentence_bert_config.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["max_seq_length"]
            .as_u64()
            .unwrap()
    };
    let own = sbert(&init);
    assert_ne!(
        own, 16,
        "the init's length must differ from max_len to tell them apart"
    );
    let saved = std::fs::read_to_string(dir.path().join("run/run.toml")).unwrap();
    assert!(saved.contains(&format!("doc_max_len = {own}\n")), "{saved}");
    // The export's document tower reads as the init does, its query tower
    // at the query length it was trained at (`max_len`); and the run
    // resumes with "init" in its configuration.
    let out = dir.path().join("model");
    common::export(&dir.path().join("run"), &out);
    assert_eq!(sbert(&out.join("doc")), own);
    assert_eq!(sbert(&out), 16);
    pretext()
        .args(["train", "--quiet", "--resume", "--steps", "3", "--config"])
        .arg(&cfg)
        .assert()
        .success();
}
