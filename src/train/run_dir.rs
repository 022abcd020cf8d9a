//! The run folder: the one type that knows where a run keeps what, and
//! decides whether a new run may start in a folder.
//!
//! ```text
//! RUN/
//!   config.json        the BERT configuration (what export needs)
//!   tokenizer.json     the run's tokenizer
//!   run.toml           the configuration the run started with
//!   metrics.jsonl      one line per step (metrics.rankN.jsonl for other ranks)
//!   curves.svg         loss and accuracy
//!   negatives.json     what negative mining saw
//!   checkpoints/step-N/  state.json + model, key, optimizer, queue, ance tensors
//!   best/              the best checkpoint by the eval metric
//! ```
//!
//! A fresh run never lands on top of another's checkpoints (the old ones
//! would be pruned at once and `export --run` would pick the wrong model):
//! it needs `--resume` or `--overwrite`. A resumed run must have something to
//! resume and the same settings, bar those that only say how long or where.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::config::Config;

/// How a run treats what its folder already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A new run: refused if the folder holds checkpoints.
    Fresh,
    /// Continue from the latest checkpoint: refused if there is none or if
    /// the configuration changed in a field that must not.
    Resume,
    /// Remove the folder's previous results and start again.
    Overwrite,
    /// Resume when there is a checkpoint, else start fresh (`pretext bench`
    /// continuing an interrupted table).
    ResumeIfAny,
}

/// Fields a resumed run may change: how long it runs, how often it saves,
/// where it runs and what it reports. Everything else decides the weights.
const MAY_CHANGE: [&str; 9] = [
    "train.steps",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.device",
    "train.out",
    "threads",
    "bench.",
    "pairs.",
    "eval.",
];

/// A run folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run folder at `root` (not created yet).
    pub fn new(root: impl Into<PathBuf>) -> RunDir {
        RunDir { root: root.into() }
    }

    /// The run folder a checkpoint folder (`RUN/checkpoints/step-N` or
    /// `RUN/best`) belongs to.
    pub fn of_checkpoint(ckpt: &Path) -> Result<RunDir> {
        if ckpt.file_name().is_some_and(|n| n == "best") {
            if let Some(run) = ckpt.parent() {
                return Ok(RunDir::new(run));
            }
        }
        ckpt.parent()
            .filter(|p| p.file_name().is_some_and(|n| n == "checkpoints"))
            .and_then(Path::parent)
            .map(RunDir::new)
            .ok_or_else(|| {
                anyhow!(
                    "{}: not a checkpoint inside a run folder (RUN/checkpoints/step-N)",
                    ckpt.display()
                )
            })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The BERT configuration of the run's model.
    pub fn model_config(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// The run's tokenizer.
    pub fn tokenizer(&self) -> PathBuf {
        self.root.join("tokenizer.json")
    }

    /// The configuration the run started with.
    pub fn saved_config(&self) -> PathBuf {
        self.root.join("run.toml")
    }

    /// The metrics file of `rank` (rank 0: `metrics.jsonl`).
    pub fn metrics(&self, rank: usize) -> PathBuf {
        match rank {
            0 => self.root.join("metrics.jsonl"),
            r => self.root.join(format!("metrics.rank{r}.jsonl")),
        }
    }

    /// The loss and accuracy chart.
    pub fn curves(&self) -> PathBuf {
        self.root.join("curves.svg")
    }

    /// What negative mining saw.
    pub fn negatives_report(&self) -> PathBuf {
        self.root.join("negatives.json")
    }

    /// The folder of checkpoints.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// The checkpoint of `step`.
    pub fn checkpoint(&self, step: usize) -> PathBuf {
        self.checkpoints().join(format!("step-{step:08}"))
    }

    /// The best checkpoint by the eval metric.
    pub fn best(&self) -> PathBuf {
        self.root.join("best")
    }

    /// What picked the best checkpoint (`best/eval.json`).
    pub fn best_report(&self) -> PathBuf {
        self.best().join("eval.json")
    }

    /// Finished checkpoints, oldest first.
    pub fn list(&self) -> Result<Vec<PathBuf>> {
        let root = self.checkpoints();
        if !root.exists() {
            return Ok(Vec::new());
        }
        let mut out: Vec<PathBuf> = std::fs::read_dir(&root)
            .with_context(|| format!("reading {}", root.display()))?
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

    /// The newest checkpoint.
    pub fn latest(&self) -> Result<Option<PathBuf>> {
        Ok(self.list()?.pop())
    }

    /// Readies the folder for a run of `config` as `start` says, and
    /// returns the checkpoint to resume from (none for a fresh start).
    pub fn prepare(&self, start: Start, config: &Config) -> Result<Option<PathBuf>> {
        let latest = self.latest()?;
        let resume = match (start, &latest) {
            (Start::Fresh, Some(ckpt)) => bail!(
                "{} already holds a run (latest checkpoint {}): pass --resume to continue it, --overwrite to start again, or another --out",
                self.root.display(),
                ckpt.file_name().unwrap_or_default().to_string_lossy()
            ),
            (Start::Fresh, None) if self.best().exists() => bail!(
                "{} already holds a run's best model ({}): pass --overwrite to start again, or another --out",
                self.root.display(),
                self.best().display()
            ),
            (Start::Resume, None) => bail!(
                "--resume: {} holds no checkpoint to resume ({}); start without --resume",
                self.root.display(),
                if self.root.exists() { "no finished checkpoint" } else { "no such folder" }
            ),
            (Start::Overwrite, _) => {
                self.clear()?;
                None
            }
            (Start::Resume | Start::ResumeIfAny, Some(ckpt)) => {
                let (state, _) = super::checkpoint::read_state(ckpt)?;
                let saved: Config = toml::from_str(&state.config).with_context(|| {
                    format!("{}: the checkpoint's configuration", ckpt.display())
                })?;
                let changed = changed_fields(&saved, config)?;
                if !changed.is_empty() {
                    bail!(
                        "--resume: the configuration differs from the one {} was trained with, in fields a resumed run may not change:\n  - {}\n(only {} may change; start a new run with another --out, or --overwrite)",
                        ckpt.display(),
                        changed.join("\n  - "),
                        MAY_CHANGE.join(", ")
                    );
                }
                Some(ckpt.clone())
            }
            (Start::Fresh | Start::ResumeIfAny, None) => None,
        };
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("creating run directory {}", self.root.display()))?;
        if resume.is_none() {
            crate::atomic::write(&self.saved_config(), toml::to_string(config)?)?;
        }
        Ok(resume)
    }

    /// Removes a previous run's results (`--overwrite`), leaving anything
    /// else in the folder alone.
    fn clear(&self) -> Result<()> {
        for dir in [self.checkpoints(), self.best()] {
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
        }
        let mut files = vec![
            self.model_config(),
            self.tokenizer(),
            self.saved_config(),
            self.curves(),
            self.negatives_report(),
        ];
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            files.extend(
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("metrics") && n.ends_with(".jsonl"))
                    }),
            );
        }
        for f in files {
            if f.exists() {
                std::fs::remove_file(&f).with_context(|| format!("removing {}", f.display()))?;
            }
        }
        Ok(())
    }
}

/// The dotted fields whose values differ between two configurations, with
/// both values, leaving out those a resumed run may change.
pub fn changed_fields(saved: &Config, now: &Config) -> Result<Vec<String>> {
    let (a, b) = (flatten(saved)?, flatten(now)?);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let none = "(unset)".to_string();
    Ok(keys
        .into_iter()
        .filter(|k| {
            !MAY_CHANGE
                .iter()
                .any(|m| k.as_str() == *m || (m.ends_with('.') && k.starts_with(m)))
        })
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            format!(
                "{k}: was {}, now {}",
                a.get(k).unwrap_or(&none),
                b.get(k).unwrap_or(&none)
            )
        })
        .collect())
}

/// A configuration as `dotted.key -> value` (arrays as one value).
pub fn flatten(config: &Config) -> Result<BTreeMap<String, String>> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", &toml::Value::try_from(config)?, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_length_and_place_may_change_on_resume() {
        let a = Config::default();
        let mut b = a.clone();
        b.train.steps += 10;
        b.train.out = "elsewhere".into();
        b.threads = 2;
        assert!(changed_fields(&a, &b).unwrap().is_empty());
        b.model.preset = "tiny".into();
        b.train.lr = 1.0;
        let changed = changed_fields(&a, &b).unwrap();
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert!(
            changed[0].starts_with("model.preset: was \"mini\", now \"tiny\""),
            "{changed:?}"
        );
        assert!(changed[1].starts_with("train.lr"), "{changed:?}");
    }

    #[test]
    fn a_fresh_run_is_refused_where_checkpoints_are_and_resume_needs_one() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path().join("run"));
        let config = Config::default();
        let err = run.prepare(Start::Resume, &config).unwrap_err().to_string();
        assert!(err.contains("no such folder"), "{err}");
        assert_eq!(run.prepare(Start::Fresh, &config).unwrap(), None);
        let err = run.prepare(Start::Resume, &config).unwrap_err().to_string();
        assert!(err.contains("no finished checkpoint"), "{err}");
        let ckpt = run.checkpoint(3);
        std::fs::create_dir_all(&ckpt).unwrap();
        let state = super::super::checkpoint::State {
            step: 3,
            queue_next: 0,
            queue_filled: 0,
            config: toml::to_string(&config).unwrap(),
            files: vec![],
            ance_refreshed_at: None,
        };
        std::fs::write(
            ckpt.join("state.json"),
            serde_json::to_string(&state).unwrap(),
        )
        .unwrap();
        let err = format!("{:#}", run.prepare(Start::Resume, &config).unwrap_err());
        assert!(
            err.contains("incomplete") && err.contains("model.safetensors"),
            "{err}"
        );
        std::fs::write(ckpt.join("model.safetensors"), b"").unwrap();
        let err = run.prepare(Start::Fresh, &config).unwrap_err().to_string();
        assert!(
            err.contains("--resume") && err.contains("--overwrite"),
            "{err}"
        );
        assert_eq!(
            run.prepare(Start::Resume, &config).unwrap(),
            Some(ckpt.clone())
        );
        let mut other = config.clone();
        other.model.pooling = crate::model::Pooling::Cls;
        let err = run.prepare(Start::Resume, &other).unwrap_err().to_string();
        assert!(err.contains("model.pooling"), "{err}");
        assert_eq!(run.prepare(Start::Overwrite, &config).unwrap(), None);
        assert!(!ckpt.exists(), "--overwrite removed the old checkpoints");
    }
}
