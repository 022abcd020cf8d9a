//! Checkpoints: everything a run needs to continue exactly where it was,
//! written to a temporary folder and renamed into place, so a run killed
//! mid-write leaves the previous checkpoint intact.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// The scalar state of a checkpoint (`state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Steps completed.
    pub step: usize,
    /// Queue write position.
    pub queue_next: usize,
    /// Keys held in the queue.
    pub queue_filled: usize,
    /// The run's configuration, as TOML, for the record.
    pub config: String,
}

/// Tensors of a checkpoint, grouped by file.
pub struct Tensors {
    /// Trained model variables (HF names; `doc.` for a separate tower).
    pub model: HashMap<String, Tensor>,
    /// Key encoder (MoCo), if any.
    pub key: HashMap<String, Tensor>,
    /// Optimizer moments.
    pub optimizer: HashMap<String, Tensor>,
    /// The queue's keys (`keys`), if any.
    pub queue: HashMap<String, Tensor>,
}

/// The checkpoint folder of `step` under `run`.
pub fn dir(run: &Path, step: usize) -> PathBuf {
    run.join("checkpoints").join(format!("step-{step:08}"))
}

/// Writes a checkpoint atomically and prunes old ones, keeping `keep`.
pub fn save(run: &Path, state: &State, tensors: &Tensors, keep: usize) -> Result<PathBuf> {
    let root = run.join("checkpoints");
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let final_dir = dir(run, state.step);
    let tmp = root.join(format!(".tmp-step-{:08}", state.step));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for (name, map) in [
        ("model", &tensors.model),
        ("key", &tensors.key),
        ("optimizer", &tensors.optimizer),
        ("queue", &tensors.queue),
    ] {
        if !map.is_empty() {
            candle_core::safetensors::save(map, tmp.join(format!("{name}.safetensors")))?;
        }
    }
    std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(state)?)?;
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp, &final_dir)
        .with_context(|| format!("renaming into {}", final_dir.display()))?;
    let mut all = list(run)?;
    while all.len() > keep.max(1) {
        let old = all.remove(0);
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(final_dir)
}

/// Finished checkpoints of a run, oldest first.
pub fn list(run: &Path) -> Result<Vec<PathBuf>> {
    let root = run.join("checkpoints");
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(&root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-"))
        })
        .filter(|p| p.join("state.json").exists())
        .collect();
    out.sort();
    Ok(out)
}

/// The newest checkpoint of a run.
pub fn latest(run: &Path) -> Result<Option<PathBuf>> {
    Ok(list(run)?.pop())
}

/// Reads a checkpoint.
pub fn load(dir: &Path) -> Result<(State, Tensors)> {
    let state: State = serde_json::from_str(
        &std::fs::read_to_string(dir.join("state.json"))
            .with_context(|| format!("reading {}", dir.display()))?,
    )
    .with_context(|| format!("parsing {}/state.json", dir.display()))?;
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
    };
    Ok((state, tensors))
}
