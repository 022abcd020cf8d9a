//! The `[bench]` section: which tasks and variants `pretext bench` trains,
//! on which eval set, and where it writes.

use std::path::PathBuf;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::Config;
use crate::tasks_by_name;

/// The `[bench]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BenchSection {
    /// Tasks to compare, by name (each with its default parameters; `mix`
    /// is the even mixture).
    pub tasks: Vec<String>,
    /// The BEIR-format eval set; its corpus is also the training corpus.
    pub data: PathBuf,
    /// Judgements to use.
    pub split: String,
    /// Where runs, the table, the CSV and the chart go.
    pub out: PathBuf,
    /// Add the untrained initialisation as a row.
    pub init_row: bool,
    /// Add BM25 as a row.
    pub bm25_row: bool,
    /// Texts per encoding batch in evaluation.
    pub eval_batch_size: usize,
    /// Further rows: a task trained with settings changed (e.g. negative
    /// strategies), each `{ name, task, set = ["key=value", ...] }`.
    pub variants: Vec<Variant>,
}

/// A row trained with overrides of the base configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// The row's name (also its run directory, made file-safe).
    pub name: String,
    /// The pretext task, by name.
    pub task: String,
    /// Overrides, as `--set` takes them.
    #[serde(default)]
    pub set: Vec<String>,
}

impl Variant {
    /// The run directory name: the row name with anything but letters,
    /// digits and `-` turned into `-`.
    pub fn dir_name(&self) -> String {
        let s: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        s.split('-')
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("-")
    }

    /// `base` with the task and the overrides applied (checked as a file is).
    pub fn apply(&self, base: &Config) -> Result<Config> {
        let mut b = crate::config::ConfigBuilder::from_config(
            base,
            &format!("bench variant `{}`", self.name),
        )?;
        b.set_value("task", toml::Value::try_from(tasks_by_name(&self.task)?)?);
        for kv in &self.set {
            b.set_pair(kv)?;
        }
        Ok(b.build()?)
    }
}

impl Default for BenchSection {
    fn default() -> Self {
        BenchSection {
            tasks: ["crop", "ict", "spans", "neighbors", "pseudo-query", "mix"]
                .map(String::from)
                .to_vec(),
            data: PathBuf::from("corpora/python-faq"),
            split: "test".into(),
            out: PathBuf::from("runs/bench"),
            init_row: true,
            bm25_row: true,
            eval_batch_size: 64,
            variants: Vec::new(),
        }
    }
}
