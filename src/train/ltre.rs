//! LTRe (Zhan et al., 2020, "Learning to Retrieve"): training without
//! negative sampling. The corpus is encoded once by the initial document
//! tower into an index that never changes; every step ranks the whole index
//! for each query of the batch and the query tower learns from that
//! ranking: the relevant document (the one the pretext pair came from) must
//! score above every document retrieved above it, by a pairwise logistic
//! loss weighted by what each swap would change in reciprocal rank.
//!
//! Against the ANCE refresh: the corpus is encoded once, not every
//! `refresh_every` steps, and a step encodes only its queries (no positive
//! or negative passages go through a tower), then scores the batch against
//! the index (one matrix product) and backpropagates through the query
//! tower alone. Only the query tower moves, so the index stays exact.

use std::sync::Arc;

use anyhow::Result;
use candle_core::{Device, Tensor};
use pretext_tasks::negatives::CorpusTexts;

use crate::config::{Ltre, LtreWeighting};
use crate::negatives::{top_k, Blocks, Embeddings};

/// The frozen index and what the loss could not use.
pub struct LtreIndex {
    texts: Arc<CorpusTexts>,
    /// `(documents, dim)` on the host, for search.
    index: Embeddings,
    /// The same rows on the training device, gathered for the loss.
    rows: Tensor,
    /// Seconds the one encoding of the corpus took.
    pub build_seconds: f64,
    /// Pairs whose source document is not in the index (left out).
    pub unplaced: usize,
}

/// One step's loss and how the relevant documents ranked.
pub struct LtreLoss {
    /// The weighted pairwise loss (a scalar with the query tower's graph).
    pub loss: Tensor,
    /// Share of placed queries whose relevant document ranks first.
    pub accuracy: f32,
}

impl LtreIndex {
    /// An index of `texts` from their embeddings `(documents, dim)`, already
    /// normalised when the model is cosine; `build_seconds` is what
    /// encoding them took.
    pub fn new(texts: Arc<CorpusTexts>, embeddings: &Tensor, build_seconds: f64) -> Result<Self> {
        anyhow::ensure!(
            embeddings.dim(0)? == texts.texts.len() && !texts.texts.is_empty(),
            "LTRe's index needs one embedding per corpus document ({} documents, {} rows)",
            texts.texts.len(),
            embeddings.dim(0)?
        );
        Ok(LtreIndex {
            index: Embeddings::from_tensor(&embeddings.to_device(&Device::Cpu)?)?,
            rows: embeddings.detach(),
            texts,
            build_seconds,
            unplaced: 0,
        })
    }

    /// Documents in the index.
    pub fn len(&self) -> usize {
        self.index.rows()
    }

    /// Whether the index is empty (never: [`LtreIndex::new`] refuses it).
    pub fn is_empty(&self) -> bool {
        self.index.rows() == 0
    }

    /// The loss of a batch: `queries` are the query tower's embeddings
    /// `(batch, dim)` (normalised when cosine, so they score as the index
    /// was built), `sources` each pair's document.
    pub fn loss(
        &mut self,
        queries: &Tensor,
        sources: &[Option<u64>],
        settings: &Ltre,
    ) -> Result<LtreLoss> {
        let device = queries.device().clone();
        let n = settings.top_n.min(self.len().saturating_sub(1)).max(1);
        let ranked = top_k(
            &queries.detach(),
            &self.index,
            n,
            Blocks::default(),
            &device,
        )?;
        let host = queries.detach().to_device(&Device::Cpu)?.to_vec2::<f32>()?;
        let dim = self.index.dim();
        let width = 1 + n;
        // Per query: the relevant row then the retrieved ones; the weight of
        // each retrieved one (0 for padding and for the relevant itself).
        let mut gather = Vec::with_capacity(sources.len() * width);
        let mut weights = Vec::with_capacity(sources.len() * n);
        let (mut placed, mut first) = (0usize, 0usize);
        for (i, source) in sources.iter().enumerate() {
            let Some(rel) = source.and_then(|o| self.texts.item_of(o)) else {
                self.unplaced += 1;
                gather.extend(std::iter::repeat_n(0u32, width));
                weights.extend(std::iter::repeat_n(0f32, n));
                continue;
            };
            placed += 1;
            let row = &self.index.as_slice()[rel as usize * dim..(rel as usize + 1) * dim];
            let s_rel: f32 = host[i].iter().zip(row).map(|(a, b)| a * b).sum();
            // The relevant document's rank: 1 + the retrieved ones above it
            // (past the list, n + 1: a lower bound, which only the weights
            // of swaps with it use).
            let above = ranked[i]
                .iter()
                .filter(|c| c.item != rel && c.score > s_rel)
                .count();
            let r_rel = 1 + above;
            first += (r_rel == 1) as usize;
            gather.push(rel);
            let mut rank = 0usize;
            let mut row_weights = Vec::with_capacity(n);
            for c in &ranked[i] {
                if c.item == rel {
                    continue;
                }
                rank += 1;
                // Its rank in a list that holds the relevant one too.
                let r = rank + (c.score <= s_rel) as usize;
                gather.push(c.item);
                row_weights.push(match settings.weighting {
                    LtreWeighting::DeltaMrr => (1.0 / r_rel as f32 - 1.0 / r as f32).abs(),
                    LtreWeighting::None => 1.0,
                });
            }
            row_weights.resize(n, 0.0);
            weights.extend(row_weights);
            gather.resize(gather.len().next_multiple_of(width), rel);
        }
        let b = sources.len();
        let idx = Tensor::from_slice(&gather, b * width, self.rows.device())?;
        let docs = self
            .rows
            .index_select(&idx, 0)?
            .reshape((b, width, dim))?
            .to_device(&device)?;
        let scores = (docs.matmul(&queries.unsqueeze(2)?)?.squeeze(2)? / settings.temperature)?;
        let rel = scores.narrow(1, 0, 1)?;
        let others = scores.narrow(1, 1, n)?;
        let w = Tensor::from_slice(&weights, (b, n), &device)?;
        let total: f32 = weights.iter().sum();
        let pairwise = crate::objective::softplus(&others.broadcast_sub(&rel)?)?;
        let loss = match total > 0.0 {
            true => ((pairwise * w)?.sum_all()? / total as f64)?,
            // Nothing to learn from this batch; the graph stays, the
            // gradient is zero.
            false => (queries.sum_all()? * 0.0)?,
        };
        Ok(LtreLoss {
            loss,
            accuracy: match placed {
                0 => 0.0,
                p => first as f32 / p as f32,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(n: u64) -> Arc<CorpusTexts> {
        let mut t = CorpusTexts::default();
        for i in 0..n {
            t.ids.push(format!("d{i}"));
            t.titles.push(String::new());
            t.bodies.push(format!("document {i}"));
            t.texts.push(format!("document {i}"));
            t.ordinals.push(i);
        }
        Arc::new(t)
    }

    fn softplus(x: f32) -> f32 {
        (1.0 + x.exp()).ln()
    }

    #[test]
    fn the_loss_weights_each_swap_by_its_reciprocal_rank_change() {
        let docs = Tensor::new(&[[1.0f32, 0.0], [0.8, 0.6], [0.0, 1.0]], &Device::Cpu).unwrap();
        let mut index = LtreIndex::new(corpus(3), &docs, 0.0).unwrap();
        // Scores 0.6 (the relevant d0), 0.96 (d1), 0.8 (d2): d0 ranks 3rd.
        let q = Tensor::new(&[[0.6f32, 0.8], [1.0, 0.0]], &Device::Cpu).unwrap();
        let settings = Ltre {
            top_n: 2,
            weighting: LtreWeighting::DeltaMrr,
            temperature: 1.0,
        };
        let out = index.loss(&q, &[Some(0), None], &settings).unwrap();
        let (w1, w2) = (1.0 - 1.0 / 3.0, 1.0 / 2.0 - 1.0 / 3.0);
        let want = (w1 * softplus(0.96 - 0.6) + w2 * softplus(0.8 - 0.6)) / (w1 + w2);
        let got = out.loss.to_scalar::<f32>().unwrap();
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        assert_eq!(out.accuracy, 0.0, "the relevant document is not first");
        assert_eq!(index.unplaced, 1, "the pair without a document is left out");

        // Unweighted, ranked first: the other retrieved one (d1; the top 2
        // hold d0 itself) counts too, below it.
        let settings = Ltre {
            weighting: LtreWeighting::None,
            ..settings
        };
        let out = index
            .loss(&q.narrow(0, 1, 1).unwrap(), &[Some(0)], &settings)
            .unwrap();
        let want = softplus(0.8 - 1.0);
        let got = out.loss.to_scalar::<f32>().unwrap();
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        assert_eq!(out.accuracy, 1.0);
    }

    #[test]
    fn the_gradient_reaches_the_queries_only() {
        let docs = Tensor::new(&[[1.0f32, 0.0], [0.0, 1.0]], &Device::Cpu).unwrap();
        let mut index = LtreIndex::new(corpus(2), &docs, 0.0).unwrap();
        let q = candle_core::Var::new(&[[0.0f32, 1.0]], &Device::Cpu).unwrap();
        let out = index
            .loss(q.as_tensor(), &[Some(0)], &Ltre::default())
            .unwrap();
        let grads = out.loss.backward().unwrap();
        let g = grads.get(q.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        // The relevant d0 = (1, 0) should score higher, d1 = (0, 1) lower.
        assert!(g[0][0] < 0.0 && g[0][1] > 0.0, "{g:?}");
    }
}
