//! A cross-encoder: BERT reads a query and a passage as one input (segments
//! 0 and 1), and a classifier on the pooled `[CLS]` state says how relevant
//! the passage is. The layout is Hugging Face's
//! `BertForSequenceClassification` (`bert.*`, `bert.pooler.dense.*`,
//! `classifier.*`), the one of the ms-marco cross-encoders
//! sentence-transformers ships, so their folders load as they are and
//! trained ones export the same way.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use serde_json::Value;

use super::layers::{linear, Mode};
use super::{Bert, BertConfig};
use crate::tokenize::TextTokenizer;

/// What the classifier's outputs mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// One logit: relevance itself (ms-marco cross-encoders).
    Logit,
    /// Two labels, not relevant and relevant: relevance is the difference
    /// of their logits, whose sigmoid is the softmax probability of label 1.
    TwoLabels,
}

impl Output {
    /// From a label count (`id2label`'s size).
    pub fn from_labels(labels: usize) -> Option<Output> {
        match labels {
            1 => Some(Output::Logit),
            2 => Some(Output::TwoLabels),
            _ => None,
        }
    }

    /// The classifier's width.
    pub fn labels(self) -> usize {
        match self {
            Output::Logit => 1,
            Output::TwoLabels => 2,
        }
    }
}

/// The network: BERT, the pooler (`tanh` of a dense layer on `[CLS]`), the
/// classifier.
#[derive(Debug, Clone)]
pub struct CrossEncoder {
    bert: Bert,
    pooler: Linear,
    classifier: Linear,
    output: Output,
    dropout: f64,
}

impl CrossEncoder {
    /// Builds it from `vb` with Hugging Face names (`bert.*`, `classifier.*`).
    pub fn new(config: &BertConfig, output: Output, vb: VarBuilder) -> candle_core::Result<Self> {
        let h = config.hidden_size;
        Ok(CrossEncoder {
            bert: Bert::new(config, vb.pp("bert"))?,
            pooler: linear(h, h, vb.pp("bert").pp("pooler").pp("dense"))?,
            classifier: linear(h, output.labels(), vb.pp("classifier"))?,
            output,
            dropout: config.hidden_dropout_prob,
        })
    }

    /// The BERT inside.
    pub fn bert(&self) -> &Bert {
        &self.bert
    }

    /// What the outputs mean.
    pub fn output(&self) -> Output {
        self.output
    }

    /// `(batch, seq)` ids, segment types and mask → `(batch, labels)` logits.
    pub fn logits(
        &self,
        ids: &Tensor,
        types: &Tensor,
        mask: &Tensor,
        mode: Mode,
    ) -> candle_core::Result<Tensor> {
        let states = self.bert.forward_segments(ids, Some(types), mask, mode)?;
        let cls = states.narrow(1, 0, 1)?.squeeze(1)?;
        let pooled = self.pooler.forward(&cls)?.tanh()?;
        let pooled = mode.dropout(&pooled, self.dropout)?;
        self.classifier.forward(&pooled)
    }

    /// `(batch,)` relevance: the logit, or label 1's minus label 0's.
    pub fn relevance(&self, logits: &Tensor) -> candle_core::Result<Tensor> {
        match self.output {
            Output::Logit => logits.squeeze(D::Minus1),
            Output::TwoLabels => {
                logits.narrow(1, 1, 1)?.squeeze(1)? - logits.narrow(1, 0, 1)?.squeeze(1)?
            }
        }
    }
}

/// The probability a relevance score stands for (`sigmoid`): what
/// RocketQA's thresholds (keep negatives below 0.1, positives above 0.9)
/// are written in.
pub fn probability(relevance: f32) -> f32 {
    1.0 / (1.0 + (-relevance).exp())
}

/// A cross-encoder folder loaded for scoring.
pub struct PretrainedCrossEncoder {
    /// The network.
    pub model: CrossEncoder,
    /// Its tokenizer, cutting each pair to the maximum length (longest
    /// text first, as `transformers` does with `truncation=True`).
    pub tokenizer: TextTokenizer,
    /// The device.
    pub device: Device,
}

/// The label count of a Hugging Face `config.json`: `id2label`'s size,
/// else `num_labels`, else transformers' default, 2.
fn label_count(config: &Value) -> usize {
    config["id2label"]
        .as_object()
        .map(|m| m.len())
        .or_else(|| config["num_labels"].as_u64().map(|n| n as usize))
        .unwrap_or(2)
}

fn read_json(p: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

/// The longest input a folder declares: `max_length` of
/// `config_sentence_transformers.json` or `model_max_length` of
/// `tokenizer_config.json` (transformers writes a huge number when there is
/// none), else 512.
fn declared_max_len(dir: &Path) -> Result<usize> {
    for (file, key) in [
        ("config_sentence_transformers.json", "max_length"),
        ("tokenizer_config.json", "model_max_length"),
    ] {
        let p = dir.join(file);
        if p.exists() {
            if let Some(n) = read_json(&p)?[key].as_u64().filter(|&n| n < 1 << 20) {
                return Ok(n as usize);
            }
        }
    }
    Ok(512)
}

impl PretrainedCrossEncoder {
    /// Loads `dir`; `max_len` caps each pair (default: the folder's).
    pub fn load(dir: &Path, device: &Device, max_len: Option<usize>) -> Result<Self> {
        let config_path = dir.join("config.json");
        let raw = read_json(&config_path)?;
        if let Some(archs) = raw["architectures"].as_array() {
            if !archs
                .iter()
                .any(|a| a.as_str() == Some("BertForSequenceClassification"))
            {
                bail!(
                    "{}: a cross-encoder is a BertForSequenceClassification, this folder holds {}",
                    config_path.display(),
                    Value::Array(archs.clone())
                );
            }
        }
        let labels = label_count(&raw);
        let output = Output::from_labels(labels).ok_or_else(|| {
            anyhow!(
                "{}: {labels} labels; a cross-encoder here has one logit or two labels",
                config_path.display()
            )
        })?;
        let config: BertConfig = serde_json::from_value(raw)
            .with_context(|| format!("{}: not a BERT config", config_path.display()))?;
        let max_len = match max_len {
            Some(n) => n,
            None => declared_max_len(dir)?,
        }
        .min(config.max_position_embeddings);
        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            bail!("{}: no such file", weights.display());
        }
        // SAFETY: the checkpoint is a read-only input not modified while loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, device)? };
        if !vb.contains_tensor("classifier.weight") {
            bail!(
                "{}: no `classifier.weight`; is this a cross-encoder?",
                dir.join("model.safetensors").display()
            );
        }
        let model = CrossEncoder::new(&config, output, vb)
            .with_context(|| format!("loading weights from {}", dir.display()))?;
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"), max_len)?;
        Ok(PretrainedCrossEncoder {
            model,
            tokenizer,
            device: device.clone(),
        })
    }

    /// The logits of each (query, passage) pair, `(pairs, labels)`.
    pub fn logits(&self, pairs: &[(&str, &str)]) -> Result<Tensor> {
        let (b, types) = self.tokenizer.encode_pairs(pairs)?;
        let shape = (b.rows, b.seq);
        let ids = Tensor::from_slice(&b.ids, shape, &self.device)?;
        let types = Tensor::from_slice(&types, shape, &self.device)?;
        let mask = Tensor::from_slice(&b.mask, shape, &self.device)?;
        Ok(self.model.logits(&ids, &types, &mask, Mode::Eval)?)
    }

    /// The relevance of each pair, in the given order, scored
    /// `batch_size` pairs at a time. Pairs are batched by length, so a
    /// batch pads its short pairs to a near length rather than to the
    /// longest of the whole list.
    pub fn score(&self, pairs: &[(&str, &str)], batch_size: usize) -> Result<Vec<f32>> {
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order.sort_by_key(|&i| pairs[i].0.len() + pairs[i].1.len());
        let mut out = vec![0f32; pairs.len()];
        for chunk in order.chunks(batch_size.max(1)) {
            let batch: Vec<(&str, &str)> = chunk.iter().map(|&i| pairs[i]).collect();
            let logits = self.logits(&batch)?;
            let scores = self.model.relevance(&logits)?.to_vec1::<f32>()?;
            for (&i, s) in chunk.iter().zip(scores) {
                out[i] = s;
            }
        }
        Ok(out)
    }
}
