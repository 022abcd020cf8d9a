//! Checkpoints: everything a run needs to continue exactly where it was,
//! written to a temporary folder and renamed into place, so a run killed
//! mid-write leaves the previous checkpoint intact. `state.json` lists the
//! tensor files it was written with, and a checkpoint missing one of them
//! is an error naming the folder and the file, never a model exported from
//! nothing or a queue resumed empty.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::run_dir::RunDir;

/// The scalar state of a checkpoint (`state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Steps completed.
    pub step: usize,
    /// Queue write position.
    pub queue_next: usize,
    /// Keys held in the queue.
    pub queue_filled: usize,
    /// The run's configuration, as TOML: a resumed run is compared with it.
    pub config: String,
    /// The tensor files written with this state (`model`, `key`, ...).
    #[serde(default)]
    pub files: Vec<String>,
    /// The step whose weights encoded the dense (ANCE) index saved in
    /// `ance.safetensors`, if the run refreshes one.
    #[serde(default)]
    pub ance_refreshed_at: Option<usize>,
}

/// Tensors of a checkpoint, grouped by file.
#[derive(Default)]
pub struct Tensors {
    /// Trained model variables (HF names; `doc.` for a separate tower).
    pub model: HashMap<String, Tensor>,
    /// Key encoder (MoCo), if any.
    pub key: HashMap<String, Tensor>,
    /// Optimizer moments.
    pub optimizer: HashMap<String, Tensor>,
    /// The queue's keys (`keys`), if any.
    pub queue: HashMap<String, Tensor>,
    /// The dense negatives' corpus index (`index`), if any.
    pub ance: HashMap<String, Tensor>,
}

impl Tensors {
    fn files(&self) -> [(&'static str, &HashMap<String, Tensor>); 5] {
        [
            ("model", &self.model),
            ("key", &self.key),
            ("optimizer", &self.optimizer),
            ("queue", &self.queue),
            ("ance", &self.ance),
        ]
    }
}

/// Writes a checkpoint atomically and prunes old ones, keeping `keep`. A
/// failed write (a full disk) removes its partial folder and names the file.
pub fn save(run: &RunDir, state: &State, tensors: &Tensors, keep: usize) -> Result<PathBuf> {
    let final_dir = run.checkpoint(state.step);
    write(&final_dir, state, tensors)?;
    let mut all = run.list()?;
    while all.len() > keep.max(1) {
        let old = all.remove(0);
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(final_dir)
}

/// Writes a checkpoint folder at `final_dir` atomically (built beside it,
/// renamed into place; removed if writing fails).
pub fn write(final_dir: &Path, state: &State, tensors: &Tensors) -> Result<()> {
    let mut state = state.clone();
    state.files = tensors
        .files()
        .iter()
        .filter(|(_, m)| !m.is_empty())
        .map(|(n, _)| n.to_string())
        .collect();
    crate::atomic::write_dir(final_dir, |tmp| {
        for (name, map) in tensors.files() {
            if !map.is_empty() {
                let p = tmp.join(format!("{name}.safetensors"));
                candle_core::safetensors::save(map, &p).with_context(|| {
                    format!(
                        "writing {}",
                        final_dir.join(format!("{name}.safetensors")).display()
                    )
                })?;
            }
        }
        std::fs::write(
            tmp.join("state.json"),
            serde_json::to_string_pretty(&state)?,
        )
        .with_context(|| format!("writing {}", final_dir.join("state.json").display()))?;
        Ok(())
    })
}

/// Reads a checkpoint's `state.json`, and checks that every tensor file it
/// lists (and the model, always) is there.
pub fn read_state(dir: &Path) -> Result<(State, Vec<PathBuf>)> {
    let p = dir.join("state.json");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    let state: State =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
    let mut names = state.files.clone();
    if !names.iter().any(|n| n == "model") {
        names.insert(0, "model".into());
    }
    let mut files = Vec::new();
    for n in names {
        let f = dir.join(format!("{n}.safetensors"));
        if !f.exists() {
            bail!(
                "checkpoint {} is incomplete: {} is missing",
                dir.display(),
                f.file_name().unwrap_or_default().to_string_lossy()
            );
        }
        files.push(f);
    }
    Ok((state, files))
}

/// Reads a checkpoint (every file it lists must be there).
pub fn load(dir: &Path) -> Result<(State, Tensors)> {
    let (state, _) = read_state(dir)?;
    let read = |name: &str| -> Result<HashMap<String, Tensor>> {
        let p = dir.join(format!("{name}.safetensors"));
        if p.exists() {
            Ok(candle_core::safetensors::load(&p, &Device::Cpu)
                .with_context(|| format!("reading {}", p.display()))?)
        } else {
            Ok(HashMap::new())
        }
    };
    let tensors = Tensors {
        model: read("model")?,
        key: read("key")?,
        optimizer: read("optimizer")?,
        queue: read("queue")?,
        ance: read("ance")?,
    };
    Ok((state, tensors))
}
