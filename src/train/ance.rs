//! ANCE-style dense hard negatives during training: every `refresh_every`
//! steps the corpus is re-encoded with the current document tower (or the
//! momentum encoder) into an in-memory index; each step searches it with
//! the step's own query embeddings and draws negatives through the shared
//! window, mix and false-negative rules.
//!
//! The refresh runs on the training device between two steps. It costs what
//! encoding the corpus costs (logged as `refresh_seconds`) and nothing more:
//! the search of each step is one blocked matrix product. With
//! `negatives.index = "ann"` the refresh also links an HNSW graph over the
//! new embeddings (in memory; counted in `refresh_seconds`), and each step
//! searches the graph instead: for corpora whose exact search would cost
//! more than the step.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use pretext_tasks::negatives::{
    AnnConfig, CorpusTexts, Kind, Miner, MiningStats, NegativesConfig, Query, Raters,
};
use pretext_tasks::pipeline::doc_rng;

use crate::eval::embed_texts;
use crate::model::pretrained::Pretrained;
use crate::model::{l2_normalize, Similarity, Tower};
use crate::negatives::{top_k, AnnIndex, Blocks, Embeddings};
use crate::tokenize::{PairTokenizer, Side};

/// The refreshed index and what mining saw.
pub struct Ance {
    texts: Arc<CorpusTexts>,
    index: Option<Embeddings>,
    /// The graph over `index`, when search is approximate.
    ann: Option<(AnnConfig, Option<AnnIndex>)>,
    refreshed_at: Option<usize>,
    /// Counts and scores of the negatives drawn so far.
    pub stats: MiningStats,
}

/// The corpus's documents embedded by `tower` as the document side is
/// (its prompt, no dropout), normalised when the model is cosine:
/// `(documents, dim)` on `device`.
pub(super) fn encode_corpus(
    tower: &Tower,
    tokenizer: &PairTokenizer,
    device: &Device,
    similarity: Similarity,
    texts: &CorpusTexts,
    batch: usize,
) -> Result<Tensor> {
    let model = Pretrained {
        tower: tower.clone(),
        doc_tower: None,
        tokenizer: tokenizer.doc.clone(),
        doc_tokenizer: None,
        device: device.clone(),
        similarity,
        prompts: tokenizer.prompts.clone(),
    };
    let refs: Vec<&str> = texts.texts.iter().map(String::as_str).collect();
    let e = embed_texts(&model, &refs, Side::Document, batch, &mut |_| {})?.detach();
    Ok(match similarity {
        Similarity::Cosine => l2_normalize(&e)?,
        Similarity::Dot => e,
    })
}

/// Salt of the negative draws of a step.
const SALT: u64 = 0xa11c_e5ee_d000_0000;

impl Ance {
    /// An index over `texts`, empty until the first refresh; `ann` makes
    /// its search approximate.
    pub fn new(texts: Arc<CorpusTexts>, ann: Option<AnnConfig>) -> Ance {
        Ance {
            texts,
            index: None,
            ann: ann.map(|c| (c, None)),
            refreshed_at: None,
            stats: MiningStats::default(),
        }
    }

    /// Whether step `step` (0-based, about to run) starts with a refresh:
    /// the first step of a run (or of a resumed one), then every `every`.
    pub fn due(&self, step: usize, every: usize) -> bool {
        self.index.is_none()
            || (every > 0 && step.is_multiple_of(every) && self.refreshed_at != Some(step))
    }

    /// The current index and the step whose weights encoded it, for a
    /// checkpoint.
    pub fn index_tensor(&self) -> Option<(Tensor, usize)> {
        let (index, at) = (self.index.as_ref()?, self.refreshed_at?);
        let t = Tensor::from_slice(index.as_slice(), (index.rows(), index.dim()), &Device::Cpu);
        t.ok().map(|t| (t, at))
    }

    /// Puts back an index saved by [`Ance::index_tensor`]: a resumed run
    /// then draws what the unbroken run drew, instead of re-encoding the
    /// corpus with later weights.
    pub fn restore(&mut self, index: &Tensor, refreshed_at: usize) -> Result<()> {
        if index.dim(0)? != self.texts.texts.len() {
            anyhow::bail!(
                "the checkpoint's dense index holds {} documents, the corpus {}",
                index.dim(0)?,
                self.texts.texts.len()
            );
        }
        self.set_index(Embeddings::from_tensor(index)?)?;
        self.refreshed_at = Some(refreshed_at);
        Ok(())
    }

    /// Installs new embeddings, and the graph over them when search is
    /// approximate.
    fn set_index(&mut self, index: Embeddings) -> Result<()> {
        if let Some((config, graph)) = &mut self.ann {
            *graph = Some(AnnIndex::build(&index, config, &mut |_| {})?);
        }
        self.index = Some(index);
        Ok(())
    }

    /// Re-encodes the corpus with `tower`; returns the seconds it took.
    #[allow(clippy::too_many_arguments)]
    pub fn refresh(
        &mut self,
        tower: &Tower,
        tokenizer: &PairTokenizer,
        device: &Device,
        similarity: Similarity,
        batch: usize,
        step: usize,
    ) -> Result<f64> {
        let started = Instant::now();
        let e = encode_corpus(tower, tokenizer, device, similarity, &self.texts, batch)?;
        self.set_index(Embeddings::from_tensor(&e)?)?;
        self.refreshed_at = Some(step);
        Ok(started.elapsed().as_secs_f64())
    }

    /// Negatives (texts) for each query of a step. `queries` and
    /// `positives` are the step's embeddings (scored as the loss scores
    /// them); `sources` are the pairs' documents, never their own negatives.
    #[allow(clippy::too_many_arguments)]
    pub fn negatives(
        &mut self,
        config: &NegativesConfig,
        queries: &Tensor,
        positives: &Tensor,
        positive_texts: &[String],
        sources: &[Option<u64>],
        similarity: Similarity,
        seed: u64,
        step: usize,
    ) -> Result<Vec<Vec<String>>> {
        let Some(index) = &self.index else {
            anyhow::bail!("dense negatives asked for before the first refresh");
        };
        let (q, p) = match similarity {
            Similarity::Dot => (queries.detach(), positives.detach()),
            Similarity::Cosine => (
                l2_normalize(&queries.detach())?,
                l2_normalize(&positives.detach())?,
            ),
        };
        let pos = q
            .mul(&p)?
            .sum(1)?
            .to_device(&Device::Cpu)?
            .to_vec1::<f32>()?;
        let device = q.device().clone();
        let ranked = match &self.ann {
            Some((ann, Some(graph))) => graph.top_k(&q, index, config.range_max, ann)?,
            _ => top_k(&q, index, config.range_max, Blocks::default(), &device)?,
        };
        let miner = Miner::new(config);
        let texts: &CorpusTexts = &self.texts;
        let mut out = Vec::with_capacity(ranked.len());
        for (i, cands) in ranked.iter().enumerate() {
            let mut rng = doc_rng(seed ^ SALT ^ step as u64, i as u64);
            let query = Query {
                positive: &positive_texts[i],
                positive_score: Some(pos[i]),
                answers: &[],
                exclude: sources[i].and_then(|o| texts.item_of(o)),
            };
            let picks = miner.mine(
                &query,
                cands,
                texts,
                (texts, Kind::Random),
                Raters::default(),
                &mut rng,
                &mut self.stats,
            );
            out.push(
                picks
                    .into_iter()
                    .map(|p| texts.texts[p.item as usize].clone())
                    .collect(),
            );
        }
        Ok(out)
    }
}
