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
//!
//! With `train.ltre.teacher`, the loss also learns a fusion teacher's
//! softmax over the same candidates (BM25's and the initial model's
//! standardised scores): the pairwise loss says which document a
//! pseudo-query came from, the teacher how the rest should rank.

use std::sync::Arc;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use pretext_tasks::bm25::{Analyzer, Bm25Config, Bm25Index};
use pretext_tasks::negatives::CorpusTexts;
use rayon::prelude::*;

use crate::config::{Ltre, LtreWeighting};
use crate::negatives::{top_k, Blocks, Embeddings};
use crate::objective::{listwise_kl, present_kl, standardize};

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
    /// BM25 over the same documents, numbered as the index's rows, for the
    /// teacher's lexical half (built by [`LtreIndex::with_lexical`]).
    lexical: Option<(Bm25Index, Analyzer)>,
}

/// What the fusion teacher (`train.ltre.teacher`) reads of a batch.
pub struct TeacherInputs<'a> {
    /// The queries' texts, which BM25 scores.
    pub texts: &'a [String],
    /// The initial model's embeddings of the queries `(batch, dim)`,
    /// scored against the index as the trained ones are (normalised when
    /// cosine); `None` when the teacher gives the init no weight.
    pub init: Option<&'a Tensor>,
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
            lexical: None,
        })
    }

    /// Adds BM25 over the index's documents (Anserini's defaults), which
    /// the fusion teacher's lexical half needs.
    pub fn with_lexical(mut self) -> Self {
        let docs: Vec<(String, String)> = self
            .texts
            .ids
            .iter()
            .cloned()
            .zip(self.texts.texts.iter().cloned())
            .collect();
        let config = Bm25Config::default();
        self.lexical = Some((Bm25Index::build(&docs, config), Analyzer::new(config)));
        self
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
    /// was built), `sources` each pair's document; `teacher` is read when
    /// `settings.teacher.weight > 0`.
    pub fn loss(
        &mut self,
        queries: &Tensor,
        sources: &[Option<u64>],
        teacher: Option<TeacherInputs<'_>>,
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
        let mut weights: Vec<f32> = Vec::with_capacity(sources.len() * n);
        // 1 where a retrieved document fills the slot (the teacher's mask).
        let mut present = Vec::with_capacity(sources.len() * n);
        let (mut placed, mut first) = (0usize, 0usize);
        for (i, source) in sources.iter().enumerate() {
            let Some(rel) = source.and_then(|o| self.texts.item_of(o)) else {
                self.unplaced += 1;
                gather.extend(std::iter::repeat_n(0u32, width));
                weights.extend(std::iter::repeat_n(0f32, n));
                present.extend(std::iter::repeat_n(0u32, n));
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
            present.extend((0..n).map(|j| (j < row_weights.len()) as u32));
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
        let mask = Tensor::from_slice(&present, (b, n), &device)?;
        let teacher = match teacher.filter(|_| settings.teacher.active()) {
            Some(inputs) => Some(self.teacher_logits(&docs, &gather, &mask, inputs, settings)?),
            None => None,
        };
        if let Some(logits) = teacher.as_ref().filter(|_| settings.teacher.filter) {
            // A retrieved document the teacher ranks at or above the
            // relevant one is likely relevant too: no pair pushes it down.
            for (i, row) in logits
                .to_device(&Device::Cpu)?
                .to_vec2::<f32>()?
                .iter()
                .enumerate()
            {
                for j in 0..n {
                    if present[i * n + j] == 1 && row[1 + j] > row[0] {
                        weights[i * n + j] = 0.0;
                    }
                }
            }
        }
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
        let t = settings.teacher;
        let loss = match teacher.filter(|_| t.weight > 0.0) {
            Some(logits) => {
                let kl = match t.relevant {
                    true => listwise_kl(&scores, &logits, &mask, 1.0, t.temperature)?,
                    // The pairwise loss already places the relevant
                    // document; the teacher orders the rest.
                    false => present_kl(
                        &scores.narrow(1, 1, n)?,
                        &logits.narrow(1, 1, n)?,
                        &mask,
                        1.0,
                        t.temperature,
                    )?,
                };
                (loss + (kl * t.weight)?)?
            }
            None => loss,
        };
        Ok(LtreLoss {
            loss,
            accuracy: match placed {
                0 => 0.0,
                p => first as f32 / p as f32,
            },
        })
    }

    /// The fusion teacher's logits `(batch, 1 + n)` over each query's
    /// candidates: `docs` are their rows `(batch, 1 + n, dim)`, `gather`
    /// their document numbers, `mask` `(batch, n)` which retrieved slots
    /// exist.
    fn teacher_logits(
        &self,
        docs: &Tensor,
        gather: &[u32],
        mask: &Tensor,
        inputs: TeacherInputs<'_>,
        settings: &Ltre,
    ) -> Result<Tensor> {
        let t = settings.teacher;
        let (b, width, _) = docs.dims3()?;
        let device = docs.device();
        let mut logits = Tensor::zeros((b, width), DType::F32, device)?;
        if t.lexical > 0.0 {
            let Some((index, analyzer)) = &self.lexical else {
                anyhow::bail!("LTRe's teacher needs BM25 over the index: build it with_lexical");
            };
            anyhow::ensure!(
                inputs.texts.len() == b,
                "LTRe's teacher got {} query texts for a batch of {b}",
                inputs.texts.len()
            );
            let bm25: Vec<f32> = gather
                .par_chunks(width)
                .zip(inputs.texts.par_iter())
                .flat_map_iter(|(docs, q)| index.score_docs(analyzer, q, docs))
                .collect();
            let bm25 = Tensor::from_vec(bm25, (b, width), device)?;
            logits = (logits + (standardize(&bm25, mask)? * t.lexical)?)?;
        }
        if t.init > 0.0 {
            let Some(init) = inputs.init else {
                anyhow::bail!("LTRe's teacher gives the init a weight but got no init embeddings");
            };
            let own = docs.matmul(&init.detach().unsqueeze(2)?)?.squeeze(2)?;
            logits = (logits + (standardize(&own, mask)? * t.init)?)?;
        }
        Ok(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LtreTeacher;

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
            ..Ltre::default()
        };
        let out = index.loss(&q, &[Some(0), None], None, &settings).unwrap();
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
            .loss(&q.narrow(0, 1, 1).unwrap(), &[Some(0)], None, &settings)
            .unwrap();
        let want = softplus(0.8 - 1.0);
        let got = out.loss.to_scalar::<f32>().unwrap();
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        assert_eq!(out.accuracy, 1.0);
    }

    #[test]
    fn the_teacher_filters_pairs_and_adds_its_kl() {
        // BM25 matches the query "gamma" in d1 only: the teacher puts d1
        // first, where the model ranks the relevant d0 third (scores 0.6,
        // 0.96 for d1, 0.8 for d2).
        let mut texts = CorpusTexts::default();
        for (i, t) in ["alpha", "gamma", "delta"].iter().enumerate() {
            texts.ids.push(format!("d{i}"));
            texts.titles.push(String::new());
            texts.bodies.push(t.to_string());
            texts.texts.push(t.to_string());
            texts.ordinals.push(i as u64);
        }
        let docs = Tensor::new(&[[1.0f32, 0.0], [0.8, 0.6], [0.0, 1.0]], &Device::Cpu).unwrap();
        let mut index = LtreIndex::new(Arc::new(texts), &docs, 0.0)
            .unwrap()
            .with_lexical();
        let q = Tensor::new(&[[0.6f32, 0.8]], &Device::Cpu).unwrap();
        let queries = ["gamma".to_string()];
        let inputs = || TeacherInputs {
            texts: &queries,
            init: None,
        };
        let lexical = LtreTeacher {
            init: 0.0,
            ..LtreTeacher::default()
        };
        let base = Ltre {
            top_n: 2,
            weighting: LtreWeighting::None,
            temperature: 1.0,
            teacher: lexical,
        };
        let loss = |index: &mut LtreIndex, settings: &Ltre| {
            let out = index
                .loss(&q, &[Some(0)], Some(inputs()), settings)
                .unwrap();
            out.loss.to_scalar::<f32>().unwrap()
        };
        let plain = loss(&mut index, &base);
        let want = (softplus(0.96 - 0.6) + softplus(0.8 - 0.6)) / 2.0;
        assert!(
            (plain - want).abs() < 1e-6,
            "teacher off: {plain} vs {want}"
        );

        // The filter drops the pair with d1, which the teacher ranks above
        // d0; d2 (tied with d0 for the teacher) keeps its pair.
        let filtered = Ltre {
            teacher: LtreTeacher {
                filter: true,
                ..lexical
            },
            ..base
        };
        let got = loss(&mut index, &filtered);
        let want = softplus(0.8 - 0.6);
        assert!((got - want).abs() < 1e-6, "filtered: {got} vs {want}");

        // The KL term: teacher logits z(BM25) = (-1/√2, √2, -1/√2).
        let kl = Ltre {
            teacher: LtreTeacher {
                weight: 2.0,
                ..lexical
            },
            ..base
        };
        let got = loss(&mut index, &kl);
        let softmax = |x: [f32; 3]| {
            let z: f32 = x.iter().map(|v| v.exp()).sum();
            x.map(|v| v.exp() / z)
        };
        let r = std::f32::consts::FRAC_1_SQRT_2;
        let t = softmax([-r, 2.0 * r, -r]);
        let s = softmax([0.6, 0.96, 0.8]);
        let want_kl: f32 = (0..3).map(|i| t[i] * (t[i] / s[i]).ln()).sum();
        let want = plain + 2.0 * want_kl;
        assert!((got - want).abs() < 1e-5, "with KL: {got} vs {want}");

        // Without the relevant document, the KL spans d1 and d2 alone.
        let others = Ltre {
            teacher: LtreTeacher {
                relevant: false,
                ..kl.teacher
            },
            ..base
        };
        let got = loss(&mut index, &others);
        let pair = |x: [f32; 2]| {
            let z: f32 = x.iter().map(|v| v.exp()).sum();
            x.map(|v| v.exp() / z)
        };
        let t = pair([2.0 * r, -r]);
        let s = pair([0.96, 0.8]);
        let want_kl: f32 = (0..2).map(|i| t[i] * (t[i] / s[i]).ln()).sum();
        let want = plain + 2.0 * want_kl;
        assert!((got - want).abs() < 1e-5, "others only: {got} vs {want}");
    }

    #[test]
    fn the_gradient_reaches_the_queries_only() {
        let docs = Tensor::new(&[[1.0f32, 0.0], [0.0, 1.0]], &Device::Cpu).unwrap();
        let mut index = LtreIndex::new(corpus(2), &docs, 0.0).unwrap();
        let q = candle_core::Var::new(&[[0.0f32, 1.0]], &Device::Cpu).unwrap();
        let out = index
            .loss(q.as_tensor(), &[Some(0)], None, &Ltre::default())
            .unwrap();
        let grads = out.loss.backward().unwrap();
        let g = grads.get(q.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        // The relevant d0 = (1, 0) should score higher, d1 = (0, 1) lower.
        assert!(g[0][0] < 0.0 && g[0][1] > 0.0, "{g:?}");
    }
}
