//! Evaluation during training: the `[eval]` set scored with the towers
//! being trained (queries by the query tower, documents by the document
//! tower, by the training similarity), at step 0 (the initialisation),
//! every `eval.every` steps and at the end. The best checkpoint is kept in
//! `RUN/best/`, so `export --best` never ships a model worse than the start.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::config::EvalSection;
use crate::eval::beir::Beir;
use crate::eval::metrics::{evaluate, Measure};
use crate::eval::{embed_all, search};
use crate::model::pretrained::Pretrained;
use crate::model::{l2_normalize, Similarity, Tower};
use crate::tokenize::{PairTokenizer, Prompts, Side, TextTokenizer};

/// The best evaluation of a run (`RUN/best/eval.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// The metric.
    pub metric: String,
    /// The step of the best checkpoint (0: the initialisation).
    pub step: usize,
    /// Its value.
    pub value: f64,
    /// The initialisation's value.
    pub init: f64,
    /// The best value of a trained step, if any step was evaluated.
    pub best_trained: Option<f64>,
}

/// The eval set and the state of model selection.
pub struct Evaluator {
    data: Beir,
    /// Queries and documents cut at the lengths the model reads them at,
    /// with their prompts.
    tokenizer: PairTokenizer,
    section: EvalSection,
    /// The best so far (restored from `best/eval.json` on resume).
    pub best: Option<Best>,
    /// Evaluations since the best one.
    since_best: usize,
}

impl Evaluator {
    /// The evaluator of `[eval]` over `data` (its BEIR set, or the
    /// self-supervised dev set of [`super::dev`]), if there is one; texts
    /// are cut at `eval.max_len`, else queries at `lengths.0` and documents
    /// at `lengths.1` (`model.query_max_len`, `model.doc_max_len`): the
    /// lengths training reads them at and the export declares, so the
    /// scores that choose the best step are those the model will get.
    pub fn new(
        section: &EvalSection,
        data: Option<Beir>,
        tokenizer: &std::path::Path,
        lengths: (usize, usize),
        prompts: Prompts,
    ) -> Result<Option<Evaluator>> {
        let Some(data) = data else {
            return Ok(None);
        };
        for w in &data.warnings {
            eprintln!("warning: {w}");
        }
        Ok(Some(Evaluator {
            data,
            tokenizer: {
                let (query, doc) = section.max_len.map_or(lengths, |n| (n, n));
                let base = TextTokenizer::from_file(tokenizer, query)?;
                PairTokenizer::new(&base, query, doc, prompts)?
            },
            section: section.clone(),
            best: None,
            since_best: 0,
        }))
    }

    /// The BEIR set `[eval]` names, if any.
    pub fn load_data(section: &EvalSection) -> Result<Option<Beir>> {
        let Some(dir) = &section.data else {
            return Ok(None);
        };
        Beir::load(dir, &section.split)
            .with_context(|| format!("eval.data = {}", dir.display()))
            .map(Some)
    }

    /// Whether step `step` (completed) is due for an evaluation.
    pub fn due(&self, step: usize) -> bool {
        self.section.every > 0 && step.is_multiple_of(self.section.every)
    }

    /// The metric that selects the best checkpoint.
    pub fn metric(&self) -> &str {
        &self.section.metric
    }

    /// Mean metrics of the towers on the eval set.
    pub fn score(
        &self,
        query: &Tower,
        doc: &Tower,
        device: &Device,
        similarity: Similarity,
    ) -> Result<BTreeMap<String, f64>> {
        let encode = |tower: &Tower, items: &[crate::eval::beir::Item], side: Side| {
            let model = Pretrained {
                tower: tower.clone(),
                doc_tower: None,
                tokenizer: self.tokenizer.query.clone(),
                doc_tokenizer: Some(self.tokenizer.doc.clone()),
                device: device.clone(),
                similarity,
                prompts: self.tokenizer.prompts.clone(),
            };
            let e = embed_all(&model, items, side, self.section.batch_size, &mut |_| {})?;
            match similarity {
                Similarity::Cosine => Ok::<_, anyhow::Error>(l2_normalize(&e)?),
                Similarity::Dot => Ok(e),
            }
        };
        let docs = encode(doc, &self.data.corpus, Side::Document)?;
        let queries = encode(query, &self.data.queries, Side::Query)?;
        let run = search(
            &queries,
            &self.data.queries,
            &docs,
            &self.data.corpus,
            1000,
            256,
            None,
        )?;
        Ok(evaluate(&self.data.qrels, &run, &Measure::DEFAULT).0)
    }

    /// Records the evaluation of `step`; true when it is a new best (the
    /// initialisation is the first best; later steps must beat it).
    pub fn record(&mut self, step: usize, value: f64) -> bool {
        let metric = self.section.metric.clone();
        let best = self.best.get_or_insert(Best {
            metric,
            step,
            value: f64::NEG_INFINITY,
            init: value,
            best_trained: None,
        });
        if step > 0 {
            best.best_trained = Some(best.best_trained.map_or(value, |b| b.max(value)));
        }
        if value > best.value {
            best.step = step;
            best.value = value;
            self.since_best = 0;
            true
        } else {
            self.since_best += 1;
            false
        }
    }

    /// Whether `eval.patience` evaluations passed without a new best.
    pub fn out_of_patience(&self) -> bool {
        self.section.patience > 0 && self.since_best >= self.section.patience
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluator(section: &EvalSection, lengths: (usize, usize)) -> Evaluator {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let data = Beir {
            corpus: Vec::new(),
            queries: Vec::new(),
            qrels: Default::default(),
            warnings: Vec::new(),
        };
        let tokenizer = root.join("corpora/python-docs.tokenizer.json");
        Evaluator::new(section, Some(data), &tokenizer, lengths, Prompts::default())
            .unwrap()
            .unwrap()
    }

    /// Queries and documents are read at the lengths the model is trained
    /// and exported with, unless `eval.max_len` sets one for both.
    #[test]
    fn queries_and_documents_are_cut_at_their_own_lengths() {
        let long = "word ".repeat(100);
        let seq = |t: &TextTokenizer| t.encode(&[long.as_str()]).unwrap().seq;
        let e = evaluator(&EvalSection::default(), (8, 24));
        assert_eq!((seq(&e.tokenizer.query), seq(&e.tokenizer.doc)), (8, 24));
        let both = EvalSection {
            max_len: Some(16),
            ..EvalSection::default()
        };
        let e = evaluator(&both, (8, 24));
        assert_eq!((seq(&e.tokenizer.query), seq(&e.tokenizer.doc)), (16, 16));
    }
}
