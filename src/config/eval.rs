//! The `[eval]` section: a BEIR set scored during training, so a run keeps
//! its best checkpoint and never ships a model worse than its start
//! without saying so.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The `[eval]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// A BEIR folder (`corpus.jsonl`, `queries.jsonl`, `qrels/SPLIT.tsv`);
    /// none: no evaluation during training.
    pub data: Option<PathBuf>,
    /// Judgements to use.
    pub split: String,
    /// Evaluate every this many steps (0: at the start and the end only).
    /// Step 0, the initialisation, is always evaluated.
    pub every: usize,
    /// The metric that picks the best checkpoint (an ir-measures name:
    /// nDCG@10, R@100, R@1000, RR@10, AP@100).
    pub metric: String,
    /// Longest input in tokens, queries and documents alike (default:
    /// `model.query_max_len` for queries, `model.doc_max_len` for
    /// documents, as the model is trained and exported).
    pub max_len: Option<usize>,
    /// Texts per encoding batch.
    pub batch_size: usize,
    /// Stop after this many evaluations without a new best (0: never).
    pub patience: usize,
    /// Without `data`: hold out this fraction of the corpus's documents
    /// from training and score retrieval of their pretext pairs' positives
    /// (a self-supervised dev set; 0: none).
    pub held_out: f64,
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection {
            data: None,
            split: "test".into(),
            every: 0,
            metric: "nDCG@10".into(),
            max_len: None,
            batch_size: 64,
            patience: 0,
            held_out: 0.0,
        }
    }
}

impl EvalSection {
    /// The metrics an evaluation reports (the chosen one among them).
    pub const METRICS: [&'static str; 5] = ["nDCG@10", "R@100", "R@1000", "RR@10", "AP@100"];

    /// Whether the run evaluates at all (a BEIR set or held-out documents).
    pub fn enabled(&self) -> bool {
        self.data.is_some() || self.held_out > 0.0
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !Self::METRICS.contains(&self.metric.as_str()) {
            return Err(format!(
                "eval.metric = \"{}\" is not one of {}",
                self.metric,
                Self::METRICS.join(", ")
            ));
        }
        if !(self.held_out.is_finite() && (0.0..=0.5).contains(&self.held_out)) {
            return Err(format!(
                "eval.held_out = {} must be a fraction of the documents in [0, 0.5]",
                self.held_out
            ));
        }
        if self.data.is_some() && self.held_out > 0.0 {
            return Err("eval.data and eval.held_out are two dev sets: give one".into());
        }
        if !self.enabled() && (self.every > 0 || self.patience > 0) {
            return Err("eval.every and eval.patience need eval.data (a BEIR folder) or eval.held_out (a self-supervised dev set)".into());
        }
        if self.batch_size == 0 {
            return Err("eval.batch_size must be at least 1".into());
        }
        Ok(())
    }
}
