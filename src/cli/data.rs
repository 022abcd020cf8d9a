//! Flags shared by every subcommand that reads a corpus through a task.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use pretext::config::{Config, ConfigBuilder};
use pretext::pretext_tasks::augment::Augmentation;

/// Corpus, task and augmentation flags. Each overrides the config file.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// TOML configuration file (see configs/); flags override its fields.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Pretext task: crop, ict, spans, neighbors, pseudo-query, spar or mix.
    #[arg(long)]
    pub task: Option<String>,
    /// Corpus file or folder.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Corpus file format: auto, text or jsonl.
    #[arg(long, value_name = "FORMAT")]
    pub input_format: Option<String>,
    /// Plain-text document separator: line or blank.
    #[arg(long)]
    pub doc_sep: Option<String>,
    /// JSONL id field [default: _id].
    #[arg(long)]
    pub id_field: Option<String>,
    /// JSONL title field [default: title].
    #[arg(long)]
    pub title_field: Option<String>,
    /// JSONL text field [default: text].
    #[arg(long)]
    pub text_field: Option<String>,
    /// Read shard i of n (records k with k mod n = i), e.g. 0/4.
    #[arg(long)]
    pub shard: Option<String>,
    /// Skip bad records (malformed, invalid UTF-8, empty) and report them.
    #[arg(long)]
    pub skip_bad: bool,
    /// Seed of every random choice.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker threads (0: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Augmentation, repeatable, applied in order: delete:P, replace:P,
    /// mask:P[:TOKEN], salient-mask:P[:TOKEN], shuffle:P[:WINDOW]. Replaces
    /// the config's list.
    #[arg(long = "augment", value_name = "AUG")]
    pub augment: Vec<String>,
    /// Side the augmentations rewrite: query, positive or both.
    #[arg(long, value_name = "SIDE")]
    pub augment_on: Option<String>,
    /// Negatives added to each pair: none, random, gold, bm25 (or dense, in
    /// `train`); `--set negatives.count=N` and the other `negatives.*` fields tune them.
    #[arg(long, value_name = "SOURCE")]
    pub negatives: Option<String>,
    /// Negatives per pair (negatives.count).
    #[arg(long, value_name = "N")]
    pub num_negatives: Option<usize>,
    /// Set any config field, repeatable: --set task.window=128.
    #[arg(long = "set", short = 's', value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl DataArgs {
    /// Reads the config file and applies the flags.
    pub fn builder(&self) -> Result<ConfigBuilder> {
        let mut b = ConfigBuilder::new(self.config.as_deref())?;
        if let Some(t) = &self.task {
            b.task(t)?;
        }
        let strings = [
            (
                "corpus.path",
                self.corpus.as_ref().map(|p| p.display().to_string()),
            ),
            ("corpus.format", self.input_format.clone()),
            ("corpus.doc_sep", self.doc_sep.clone()),
            ("corpus.fields.id", self.id_field.clone()),
            ("corpus.fields.title", self.title_field.clone()),
            ("corpus.fields.text", self.text_field.clone()),
            ("corpus.shard", self.shard.clone()),
            ("augment.apply_to", self.augment_on.clone()),
            ("negatives.source", self.negatives.clone()),
        ];
        for (key, value) in strings {
            if let Some(v) = value {
                b.set_value(key, toml::Value::String(v));
            }
        }
        if self.skip_bad {
            b.set_value("corpus.skip_bad", toml::Value::Boolean(true));
        }
        if let Some(s) = self.seed {
            b.set_value("seed", toml::Value::Integer(s as i64));
        }
        if let Some(n) = self.num_negatives {
            b.set_value("negatives.count", toml::Value::Integer(n as i64));
        }
        if let Some(t) = self.threads {
            b.set_value("threads", toml::Value::Integer(t as i64));
        }
        if !self.augment.is_empty() {
            let ops = self
                .augment
                .iter()
                .map(|a| {
                    let op: Augmentation = a.parse()?;
                    Ok(toml::Value::try_from(op)?)
                })
                .collect::<Result<Vec<_>>>()
                .context("--augment")?;
            b.set_value("augment.ops", toml::Value::Array(ops));
        }
        for kv in &self.set {
            b.set_pair(kv)?;
        }
        Ok(b)
    }
}

/// Checks the configuration and sets up the thread pool it asks for.
pub fn finish(b: &ConfigBuilder) -> Result<Config> {
    let config = b.build()?;
    if config.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .build_global()
            .context("setting up the thread pool")?;
    }
    Ok(config)
}

/// How a model folder is run to embed text (`eval`, `encode`).
#[derive(Debug, Args)]
pub struct ModelOptions {
    /// Texts per encoding batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Longest input in tokens (default: the model's max_seq_length).
    #[arg(long)]
    pub max_len: Option<usize>,
    /// cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Run the dense layers as int8 products (CPU only): about twice as
    /// fast, at a small cost in retrieval quality (docs/performance.md).
    #[arg(long)]
    pub int8: bool,
}

impl ModelOptions {
    /// Loads the model folder `dir` on the chosen device.
    pub fn load(&self, dir: &std::path::Path) -> Result<pretext::model::pretrained::Pretrained> {
        let device = pretext::train::device(&self.device)?;
        let mut model = pretext::model::pretrained::Pretrained::load(dir, &device, self.max_len)?;
        if self.int8 {
            model.quantize()?;
        }
        Ok(model)
    }
}
