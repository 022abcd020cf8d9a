//! Runs you can trust: a model is scored with the similarity it was
//! trained with, run folders lose nothing, checkpoints are complete,
//! resumes are exact, and a bad gradient never reaches the weights.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use common::{failure_stderr, gap, max_diff, pretext, root, tiny_config, tiny_model, weights};
use pretext::eval::beir::Beir;
use pretext::eval::embed_all;
use pretext::model::pretrained::Pretrained;

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = dot(v, v).sqrt().max(1e-12);
    v.iter().map(|x| x / n).collect()
}

/// The top `k` documents of each query by `score`, best first.
fn ranking(q: &[Vec<f32>], d: &[Vec<f32>], k: usize) -> Vec<Vec<usize>> {
    q.iter()
        .map(|q| {
            let mut idx: Vec<usize> = (0..d.len()).collect();
            idx.sort_by(|&a, &b| dot(q, &d[b]).total_cmp(&dot(q, &d[a])));
            idx.truncate(k);
            idx
        })
        .collect()
}

#[test]
fn a_cosine_model_is_evaluated_by_cosine() {
    let dir = tempfile::tempdir().unwrap();
    // The tiny config trains with similarity = "cosine", normalize = false.
    let model = tiny_model(dir.path());
    let modules = std::fs::read_to_string(model.join("modules.json")).unwrap();
    assert!(modules.contains("Normalize"), "{modules}");
    let st = std::fs::read_to_string(model.join("config_sentence_transformers.json")).unwrap();
    assert!(st.contains("\"cosine\""), "{st}");

    let data_dir = root().join("corpora/python-faq");
    let out = dir.path().join("eval");
    pretext()
        .args(["eval", "--quiet", "--k", "10", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data_dir)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let mut run: HashMap<String, Vec<String>> = HashMap::new();
    for line in std::fs::read_to_string(out.join("run.trec"))
        .unwrap()
        .lines()
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        run.entry(f[0].to_string())
            .or_default()
            .push(f[2].to_string());
    }

    // The raw embeddings, from a copy of the folder that declares no
    // normalisation, normalised here.
    let raw = dir.path().join("raw");
    std::fs::create_dir_all(raw.join("1_Pooling")).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "sentence_bert_config.json",
    ] {
        std::fs::copy(model.join(f), raw.join(f)).unwrap();
    }
    std::fs::copy(
        model.join("1_Pooling/config.json"),
        raw.join("1_Pooling/config.json"),
    )
    .unwrap();
    std::fs::write(
        raw.join("modules.json"),
        r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#,
    )
    .unwrap();
    std::fs::write(
        raw.join("config_sentence_transformers.json"),
        r#"{"similarity_fn_name": "dot"}"#,
    )
    .unwrap();
    let m = Pretrained::load(&raw, &Device::Cpu, None).unwrap();
    let data = Beir::load(&data_dir, "test").unwrap();
    let d = rows(
        &embed_all(
            &m,
            &data.corpus,
            pretext::tokenize::Side::Document,
            64,
            &mut |_| {},
        )
        .unwrap(),
    );
    let q = rows(
        &embed_all(
            &m,
            &data.queries,
            pretext::tokenize::Side::Query,
            64,
            &mut |_| {},
        )
        .unwrap(),
    );
    let (du, qu): (Vec<_>, Vec<_>) = (
        d.iter().map(|v| unit(v)).collect(),
        q.iter().map(|v| unit(v)).collect(),
    );
    let cosine = ranking(&qu, &du, 10);
    let by_dot = ranking(&q, &d, 10);
    assert!(
        cosine != by_dot,
        "the raw dot ranking must differ for this test to mean anything"
    );
    let mut checked = 0;
    for (qi, item) in data.queries.iter().enumerate() {
        let Some(got) = run.get(&item.id) else {
            continue;
        };
        for (pos, id) in got.iter().enumerate() {
            let want = cosine[qi][pos];
            let have = data.corpus.iter().position(|c| &c.id == id).unwrap();
            // Equal documents, or a tie to float precision.
            let gap = (dot(&qu[qi], &du[want]) - dot(&qu[qi], &du[have])).abs();
            assert!(
                want == have || gap < 1e-5,
                "query {}: rank {pos} is {id}, cosine says {}",
                item.id,
                data.corpus[want].id
            );
            checked += 1;
        }
    }
    assert!(checked >= 600, "{checked} ranks checked");
}

#[test]
fn an_export_carries_the_pooler_and_is_readable_by_others() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let out = dir.path().join("shared");
    // Under a strict umask the files would come out 0600.
    let bin = assert_cmd::cargo::cargo_bin("pretext");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 077 && exec '{}' export --run '{}' --out '{}'",
            bin.display(),
            dir.path().join("run").display(),
            out.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let t = candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    let hidden = t["embeddings.word_embeddings.weight"].dims()[1];
    assert_eq!(t["pooler.dense.weight"].dims(), [hidden, hidden]);
    assert_eq!(t["pooler.dense.bias"].dims(), [hidden]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [
            "model.safetensors",
            "tokenizer.json",
            "modules.json",
            "1_Pooling/config.json",
        ] {
            let mode = std::fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "{f}: {mode:o}");
        }
    }
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "leftovers: {left:?}");
}

fn train(cfg: &Path, args: &[&str]) -> assert_cmd::Command {
    let mut c = pretext();
    c.args(["train", "--quiet"])
        .args(args)
        .arg("--config")
        .arg(cfg);
    c
}

#[test]
fn a_run_folder_is_never_silently_reused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "");
    let err = failure_stderr(&mut train(&cfg, &["--resume", "--steps", "2"]));
    assert!(err.contains("no checkpoint to resume"), "{err}");
    train(&cfg, &["--steps", "2"]).assert().success();
    let before = weights(&dir.path().join("run"), 2);
    // A fresh run over it is refused (it would prune the old checkpoints
    // and `export --run` would pick the wrong model).
    let err = failure_stderr(&mut train(&cfg, &["--steps", "3"]));
    assert!(
        err.contains("--resume") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(max_diff(&before, &weights(&dir.path().join("run"), 2)), 0.0);
    // A resume may run longer, not change the model.
    let err = failure_stderr(&mut train(
        &cfg,
        &[
            "--resume",
            "--steps",
            "3",
            "--set",
            "model.pooling=\"cls\"",
            "--set",
            "train.lr=0.5",
        ],
    ));
    assert!(
        err.contains("model.pooling: was")
            && err.contains("train.lr: was")
            && !err.contains("train.steps: was"),
        "{err}"
    );
    train(&cfg, &["--resume", "--steps", "3"])
        .assert()
        .success();
    assert!(dir.path().join("run/checkpoints/step-00000003").exists());
    // --overwrite starts again.
    train(&cfg, &["--overwrite", "--steps", "1"])
        .assert()
        .success();
    let ckpts: Vec<_> = std::fs::read_dir(dir.path().join("run/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ckpts, vec!["step-00000001".to_string()]);
    let metrics = std::fs::read_to_string(dir.path().join("run/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 1, "{metrics}");
}

#[test]
fn incomplete_checkpoints_are_neither_exported_nor_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "");
    train(&cfg, &["--steps", "4"]).assert().success();
    let ckpt = dir.path().join("run/checkpoints/step-00000004");
    let queue = ckpt.join("queue.safetensors");
    let saved = std::fs::read(&queue).unwrap();
    std::fs::remove_file(&queue).unwrap();
    let err = failure_stderr(&mut train(&cfg, &["--resume", "--steps", "6"]));
    assert!(
        err.contains("queue.safetensors") && err.contains("step-00000004"),
        "{err}"
    );
    std::fs::write(&queue, saved).unwrap();
    std::fs::remove_file(ckpt.join("key.safetensors")).unwrap();
    let err = failure_stderr(&mut train(&cfg, &["--resume", "--steps", "6"]));
    assert!(err.contains("key.safetensors"), "{err}");
    std::fs::remove_file(ckpt.join("model.safetensors")).unwrap();
    let out = dir.path().join("model");
    let err = failure_stderr(
        pretext()
            .args(["export", "--run"])
            .arg(dir.path().join("run"))
            .arg("--out")
            .arg(&out),
    );
    assert!(
        err.contains("model.safetensors") && err.contains("incomplete"),
        "{err}"
    );
    assert!(!out.exists(), "no partial export");
}

/// Trains `steps` unbroken and, in another folder, killed after `abort`
/// and resumed; returns the largest weight difference at the end.
fn resume_gap(extra: &str, steps: usize, abort: usize) -> f32 {
    let a = tempfile::tempdir().unwrap();
    let steps_s = steps.to_string();
    train(&tiny_config(a.path(), extra), &["--steps", &steps_s])
        .assert()
        .success();
    let unbroken = weights(&a.path().join("run"), steps);
    let b = tempfile::tempdir().unwrap();
    let cfg = tiny_config(b.path(), extra);
    train(&cfg, &["--steps", &steps_s])
        .env("PRETEXT_ABORT_AFTER_STEP", abort.to_string())
        .assert()
        .failure();
    train(&cfg, &["--resume", "--steps", &steps_s])
        .assert()
        .success();
    max_diff(&unbroken, &weights(&b.path().join("run"), steps))
}

#[test]
fn resume_is_exact_with_a_dense_refresh() {
    // Refreshes before steps 0, 3, 6; the checkpoint at 4 holds the index
    // of step 3, which the resumed run must use until step 6.
    let gap = resume_gap(
        "memory = \"none\"\n[negatives]\nsource = \"dense\"\ncount = 2\nrange_min = 0\nrange_max = 20\nrefresh_every = 3",
        8,
        5,
    );
    assert!(gap == 0.0, "resumed weights differ by {gap}");
}

#[test]
fn resume_is_exact_at_the_mini_preset() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("preset = \"tiny\"", "preset = \"mini\"");
    let mini = dir.path().join("mini.toml");
    std::fs::write(&mini, text).unwrap();
    let gap = resume_gap_with(&mini, 6, 5);
    assert!(gap == 0.0, "mini: resumed weights differ by {gap}");
}

/// A run that starts from LSA embeddings and idf pooling weights and
/// distils against that start resumes to the same weights: the resumed run's
/// teacher is the same start, not the random one.
#[test]
fn resume_is_exact_with_lsa_embeddings_and_self_distillation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(
        dir.path(),
        "memory = \"none\"\ndistill = { weight = 1.0, temperature = 0.05 }",
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[model]\n",
        "[model]\nembeddings = \"lsa\"\npooling = \"weighted\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let gap = resume_gap_with(&cfg, 6, 5);
    assert!(gap == 0.0, "resumed weights differ by {gap}");
}

/// [`resume_gap`] for a config file of its own (written in one folder,
/// trained in two).
fn resume_gap_with(cfg: &Path, steps: usize, abort: usize) -> f32 {
    let text = std::fs::read_to_string(cfg).unwrap();
    let run = |name: &str| -> PathBuf { cfg.parent().unwrap().join(name) };
    let steps_s = steps.to_string();
    let with_out = |name: &str| {
        let p = run(&format!("{name}.toml"));
        std::fs::write(
            &p,
            text.replace(
                &format!("out = \"{}\"", run("run").display()),
                &format!("out = \"{}\"", run(name).display()),
            ),
        )
        .unwrap();
        p
    };
    let (a, b) = (with_out("unbroken"), with_out("resumed"));
    train(&a, &["--steps", &steps_s]).assert().success();
    train(&b, &["--steps", &steps_s])
        .env("PRETEXT_ABORT_AFTER_STEP", abort.to_string())
        .assert()
        .failure();
    train(&b, &["--resume", "--steps", &steps_s])
        .assert()
        .success();
    max_diff(
        &weights(&run("unbroken"), steps),
        &weights(&run("resumed"), steps),
    )
}

#[test]
fn separate_towers_train_with_a_moco_queue() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[model]\n",
        "[model]\nshared_towers = false\nquery_max_len = 12\n",
    );
    std::fs::write(&cfg, text).unwrap();
    train(&cfg, &["--steps", "4"]).assert().success();
    let w = weights(&dir.path().join("run"), 4);
    let q = &w["embeddings.word_embeddings.weight"];
    let d = &w["doc.embeddings.word_embeddings.weight"];
    let apart = gap(q, d);
    assert!(apart > 0.0, "both towers trained, apart");
    let key = candle_core::safetensors::load(
        dir.path()
            .join("run/checkpoints/step-00000004/key.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let k = &key["embeddings.word_embeddings.weight"];
    let to_doc = gap(k, d);
    let to_query = gap(k, q);
    assert!(
        to_doc < to_query,
        "the key encoder follows the document tower"
    );
    let out = dir.path().join("model");
    common::export(&dir.path().join("run"), &out);
    assert!(out.join("doc/model.safetensors").exists());
    // Loaded for eval, documents go through the document tower and
    // queries through the query tower, as in training.
    use pretext::model::pretrained::Pretrained;
    use pretext::tokenize::Side;
    let model = Pretrained::load(&out, &Device::Cpu, None).unwrap();
    let doc = Pretrained::load(&out.join("doc"), &Device::Cpu, None).unwrap();
    let text = ["the quick brown fox jumps over the lazy dog"];
    let vec = |t: candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let as_doc = vec(model.embed_side(&text, Side::Document).unwrap());
    let as_query = vec(model.embed_side(&text, Side::Query).unwrap());
    assert_eq!(as_doc, vec(doc.embed(&text).unwrap()));
    assert_eq!(as_query, vec(model.embed(&text).unwrap()));
    assert_ne!(as_doc, as_query, "two towers, two embeddings");
    // Each tower declares, and is read at, the length it was trained at:
    // queries 12 tokens, documents the config's 32.
    let declared = |dir: &std::path::Path| {
        let text = std::fs::read_to_string(dir.join("sentence_bert_config.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["max_seq_length"].clone()
    };
    assert_eq!(declared(&out), 12);
    assert_eq!(declared(&out.join("doc")), 32);
    let long = "word ".repeat(100);
    let seq = |t: &pretext::tokenize::TextTokenizer| t.encode(&[long.as_str()]).unwrap().seq;
    assert_eq!(seq(&model.tokenizer), 12);
    assert_eq!(seq(model.doc_tokenizer.as_ref().unwrap()), 32);
}

#[test]
fn a_non_finite_gradient_stops_the_step_before_the_update() {
    use pretext::train::{Start, Trainer};
    let dir = tempfile::tempdir().unwrap();
    let tok = common::shipped_tokenizer(24);
    let mut t = Trainer::new(common::toy_config(&dir.path().join("run"), 4), Start::Fresh).unwrap();
    let batch = common::toy_batch(&tok, 0..4);
    let before = t.weights().unwrap();
    let mut f = t.forward_backward(&batch).unwrap();
    assert!(f.loss.is_finite());
    // A finite loss whose gradient overflowed somewhere.
    let (name, var) = t.variables().into_iter().next().unwrap();
    let g = f.grads.get(var.as_tensor()).unwrap().clone();
    let poisoned = g.affine(0.0, f64::NAN).unwrap();
    f.grads.insert(var.as_tensor(), poisoned);
    let err = t
        .apply(f, &batch, std::time::Instant::now())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gradient norm is NaN")
            && err.contains("weights unchanged")
            && err.contains("Last good checkpoint"),
        "{err}"
    );
    assert_eq!(t.step(), 0);
    for ((n, a), (_, b)) in before.iter().zip(t.weights().unwrap()) {
        let same = a.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            == b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(same, "{n} changed ({name} was poisoned)");
    }
    // The same step with its real gradient moves the weights.
    t.train_step(&batch).unwrap();
    assert_eq!(t.step(), 1);
}

/// `model.pooling = "weighted"`: the weights start as the corpus's token
/// idf (`[CLS]`, in every text, near zero; rare tokens above common ones),
/// export as a WordWeights module before Pooling, and load back so that
/// the folder pools with them (a copy without the module embeds
/// otherwise).
#[test]
fn weighted_pooling_starts_from_idf_and_exports_as_word_weights() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::tiny_config(dir.path(), "");
    // A run's pooling weights after its second step.
    let pooling_weights = |run: &Path| -> Vec<f32> {
        weights(run, 2)["pooling.log_weights"]
            .exp()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    train(&cfg, &["--steps", "2", "--set", "model.pooling=weighted"])
        .assert()
        .success();
    let w = pooling_weights(&dir.path().join("run"));
    let tok = tokenizers::Tokenizer::from_file(dir.path().join("run/tokenizer.json")).unwrap();
    let id = |t: &str| tok.token_to_id(t).unwrap() as usize;
    assert!(w[id("[CLS]")] < 0.05, "{}", w[id("[CLS]")]);
    assert!(
        w[id("the")] < w[id("function")],
        "{} {}",
        w[id("the")],
        w[id("function")]
    );

    let model = dir.path().join("model");
    pretext()
        .args(["export", "--run"])
        .arg(dir.path().join("run"))
        .arg("--out")
        .arg(&model)
        .assert()
        .success();
    let modules = std::fs::read_to_string(model.join("modules.json")).unwrap();
    let (ww, pool) = (
        modules.find("WordWeights").unwrap(),
        modules.find("models.Pooling").unwrap(),
    );
    assert!(ww < pool, "{modules}");
    let exported = pretext::model::word_weights::read(&model.join("1_WordWeights")).unwrap();
    assert_eq!(exported.len(), w.len());
    assert!(exported
        .iter()
        .zip(&w)
        .all(|(a, b)| (a - b).abs() <= 1e-6 * b.max(1.0)));

    let texts = ["how do I read a file", "the the the of list comprehension"];
    let m = Pretrained::load(&model, &Device::Cpu, None).unwrap();
    let ours = m.embed(&texts).unwrap();
    let write_modules = |list: &[serde_json::Value]| {
        std::fs::write(
            model.join("modules.json"),
            serde_json::to_string(list).unwrap(),
        )
        .unwrap()
    };
    let mut list: Vec<serde_json::Value> = serde_json::from_str(&modules).unwrap();
    list.retain(|m| m["type"] != "sentence_transformers.models.WordWeights");
    write_modules(&list);
    let plain = Pretrained::load(&model, &Device::Cpu, None)
        .unwrap()
        .embed(&texts)
        .unwrap();
    assert!(
        gap(&ours, &plain) > 1e-3,
        "the weights must change the pooling"
    );
    // A module pretext cannot read is refused, not skipped.
    list.push(serde_json::json!({"idx": 9, "name": "9", "path": "9_LSTM",
                                 "type": "sentence_transformers.models.LSTM"}));
    write_modules(&list);
    let err = Pretrained::load(&model, &Device::Cpu, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("modules.json") && err.contains("LSTM"),
        "{err}"
    );

    // Trained on from that folder, the model starts from its weights (set
    // to 2 here), not the corpus's idf.
    std::fs::write(model.join("modules.json"), &modules).unwrap();
    let n = exported.len();
    pretext::model::word_weights::write(
        &model.join("1_WordWeights"),
        &model.join("tokenizer.json"),
        &vec![2.0; n],
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("again")).unwrap();
    let again = common::tiny_config(&dir.path().join("again"), "");
    let init = model.to_str().unwrap();
    train(
        &again,
        &[
            "--steps",
            "2",
            "--set",
            "model.pooling=weighted",
            "--init",
            init,
        ],
    )
    .assert()
    .success();
    let w2 = pooling_weights(&dir.path().join("again/run"));
    assert!(w2.iter().all(|w| (w - 2.0).abs() < 0.02), "{:?}", &w2[..8]);
}
