//! Training objectives: InfoNCE against in-batch, per-query hard and queued
//! negatives, and the triplet margin loss.

use candle_core::{DType, Result, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::model::l2_normalize;
use crate::model::Similarity;

/// The loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Loss {
    /// InfoNCE (contrastive cross-entropy).
    Infonce {
        /// Temperature τ of the logits (Contriever: 0.05).
        #[serde(default = "temperature")]
        temperature: f64,
        /// Also score positives against queries (in-batch only).
        #[serde(default)]
        symmetric: bool,
        /// Use the other positives of the batch as negatives.
        #[serde(default = "yes")]
        in_batch: bool,
        /// Score every query against every hard negative of the batch
        /// (default: each query against its own only).
        #[serde(default)]
        share_hard: bool,
        /// Weight each pair's loss (`"self"`: by the model's own detached
        /// belief that the positive is right, ReContriever's weighting of
        /// noisy pseudo-pairs; `"none"`: all alike).
        #[serde(default)]
        pair_weighting: PairWeighting,
    },
    /// Triplet margin loss on distances.
    Triplet {
        /// The margin.
        #[serde(default = "margin")]
        margin: f64,
        /// `l2` (Euclidean) or `cosine` (1 − cos) distance.
        #[serde(default)]
        distance: Distance,
    },
}

fn temperature() -> f64 {
    0.05
}
fn yes() -> bool {
    true
}
fn margin() -> f64 {
    0.2
}

impl Default for Loss {
    fn default() -> Self {
        Loss::Infonce {
            temperature: temperature(),
            symmetric: false,
            in_batch: true,
            share_hard: false,
            pair_weighting: PairWeighting::None,
        }
    }
}

/// How pairs are weighted in the InfoNCE loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairWeighting {
    /// Every pair counts the same.
    #[default]
    None,
    /// Each pair's loss times the model's detached probability of its
    /// positive, the weights scaled to mean 1 (ReContriever, Fan et al.,
    /// 2023): pseudo-pairs the model finds implausible count less.
    #[serde(rename = "self")]
    SelfBelief,
}

/// Distance of the triplet loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distance {
    /// Euclidean.
    #[default]
    L2,
    /// One minus cosine similarity.
    Cosine,
}

/// The embeddings of one step.
pub struct StepEmbeddings<'t> {
    /// Queries, `(batch, dim)`.
    pub queries: &'t Tensor,
    /// Their positives, `(batch, dim)`.
    pub positives: &'t Tensor,
    /// Per-query hard negatives, `(batch, n, dim)`, and a `(batch, n)` 0/1
    /// mask of which exist.
    pub hard: Option<(&'t Tensor, &'t Tensor)>,
    /// Queued keys (MoCo queue or memory bank), `(k, dim)`.
    pub queue: Option<&'t Tensor>,
}

/// What a step's loss computed.
pub struct LossOutput {
    /// The scalar loss.
    pub loss: Tensor,
    /// Share of queries whose positive scores above every negative.
    pub accuracy: f32,
}

impl Loss {
    /// Computes the loss and pretext accuracy.
    pub fn compute(&self, e: &StepEmbeddings, similarity: Similarity) -> Result<LossOutput> {
        let (q, p) = match similarity {
            Similarity::Dot => (e.queries.clone(), e.positives.clone()),
            Similarity::Cosine => (l2_normalize(e.queries)?, l2_normalize(e.positives)?),
        };
        let hard = match (similarity, e.hard) {
            (Similarity::Cosine, Some((h, m))) => Some((l2_normalize(h)?, m.clone())),
            (_, h) => h.map(|(h, m)| (h.clone(), m.clone())),
        };
        let queue = match (similarity, e.queue) {
            (Similarity::Cosine, Some(k)) => Some(l2_normalize(k)?),
            (_, k) => k.cloned(),
        };
        match *self {
            Loss::Infonce {
                temperature,
                symmetric,
                in_batch,
                share_hard,
                pair_weighting,
            } => infonce(
                &q,
                &p,
                hard.as_ref(),
                queue.as_ref(),
                temperature,
                symmetric,
                in_batch,
                share_hard,
                pair_weighting,
            ),
            Loss::Triplet { margin, distance } => triplet(&q, &p, hard.as_ref(), margin, distance),
        }
    }
}

/// Scores of each query against its own hard negatives: `(batch, n)`,
/// masked-out slots at −1e9.
fn hard_scores(q: &Tensor, hard: &(Tensor, Tensor)) -> Result<Tensor> {
    let (h, mask) = hard;
    let s = h.broadcast_mul(&q.unsqueeze(1)?)?.sum(D::Minus1)?;
    let penalty = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?;
    s + penalty
}

/// Scores of every query against every hard negative of the batch:
/// `(batch, batch·n)`, masked-out slots at −1e9.
fn shared_hard_scores(q: &Tensor, hard: &(Tensor, Tensor)) -> Result<Tensor> {
    let (h, mask) = hard;
    let (b, n, d) = h.dims3()?;
    let s = q.matmul(&h.reshape((b * n, d))?.t()?)?;
    let penalty = ((mask.to_dtype(DType::F32)?.reshape((1, b * n))? - 1.0)? * 1e9)?;
    s.broadcast_add(&penalty)
}

#[allow(clippy::too_many_arguments)]
fn infonce(
    q: &Tensor,
    p: &Tensor,
    hard: Option<&(Tensor, Tensor)>,
    queue: Option<&Tensor>,
    temperature: f64,
    symmetric: bool,
    in_batch: bool,
    share_hard: bool,
    weighting: PairWeighting,
) -> Result<LossOutput> {
    let b = q.dim(0)?;
    let device = q.device();
    // Columns: the positives (all of the batch, or only each query's own),
    // then hard negatives, then the queue. The label is the positive's column.
    let (mut parts, labels) = if in_batch {
        (
            vec![q.matmul(&p.t()?)?],
            Tensor::arange(0u32, b as u32, device)?,
        )
    } else {
        (
            vec![q.mul(p)?.sum_keepdim(1)?],
            Tensor::zeros(b, DType::U32, device)?,
        )
    };
    if let Some(h) = hard {
        parts.push(if share_hard {
            shared_hard_scores(q, h)?
        } else {
            hard_scores(q, h)?
        });
    }
    if let Some(k) = queue {
        if k.dim(0)? > 0 {
            parts.push(q.matmul(&k.t()?)?);
        }
    }
    let logits = (Tensor::cat(&parts, 1)? / temperature)?;
    let mut loss = match weighting {
        PairWeighting::None => candle_nn::loss::cross_entropy(&logits, &labels)?,
        PairWeighting::SelfBelief => {
            let log_p = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let picked = log_p.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?;
            let belief = picked.detach().exp()?;
            let weights = belief.broadcast_div(&belief.mean_all()?.clamp(1e-12, f64::MAX)?)?;
            (picked.neg()? * weights)?.mean_all()?
        }
    };
    let predicted = logits.argmax(D::Minus1)?;
    let accuracy = predicted
        .eq(&labels)?
        .to_dtype(DType::F32)?
        .mean_all()?
        .to_scalar::<f32>()?;
    if symmetric {
        let back = (p.matmul(&q.t()?)? / temperature)?;
        let labels = Tensor::arange(0u32, b as u32, device)?;
        loss = ((loss + candle_nn::loss::cross_entropy(&back, &labels)?)? * 0.5)?;
    }
    Ok(LossOutput { loss, accuracy })
}

/// `log(1 + e^x)`, stable for large `|x|`: the logistic loss of a margin
/// (binary cross-entropy, RankNet).
pub fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// Each query's score against its positive and its hard negatives,
/// `(rows, 1 + n)`: the model's side of score distillation.
pub fn pair_scores(q: &Tensor, p: &Tensor, hard: &Tensor) -> Result<Tensor> {
    let pos = q.mul(p)?.sum_keepdim(1)?;
    let neg = hard.broadcast_mul(&q.unsqueeze(1)?)?.sum(D::Minus1)?;
    Tensor::cat(&[&pos, &neg], 1)
}

/// MarginMSE (Hofstätter et al., 2020): the mean squared difference of the
/// model's and the teacher's margins `s(q, p) − s(q, n_i)` over present
/// negatives (`mask` is `(rows, n)` of 0/1). Scores are `(rows, 1 + n)`.
pub fn margin_mse(student: &Tensor, teacher: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let n = student.dim(1)? - 1;
    let margins =
        |s: &Tensor| -> Result<Tensor> { s.narrow(1, 0, 1)?.broadcast_sub(&s.narrow(1, 1, n)?) };
    let mask = mask.to_dtype(DType::F32)?;
    let d = (margins(student)? - margins(&teacher.detach())?)?.sqr()?;
    let total = (d * &mask)?.sum_all()?;
    total.broadcast_div(&mask.sum_all()?.clamp(1.0, f64::MAX)?)
}

/// Each row of `scores` `(rows, 1 + n)` standardised (mean 0, unit
/// spread) over its positive and its present negatives (`mask` `(rows,
/// n)`), so scores of different scales (BM25's tens, cosines below 1) can
/// be added. Absent entries come out 0 (the loss masks them anyway).
pub fn standardize(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let rows = scores.dim(0)?;
    let present = Tensor::cat(
        &[
            &Tensor::ones((rows, 1), DType::F32, scores.device())?,
            &mask.to_dtype(DType::F32)?,
        ],
        1,
    )?;
    let count = present.sum_keepdim(1)?;
    let mean = (scores * &present)?.sum_keepdim(1)?.broadcast_div(&count)?;
    let centred = scores.broadcast_sub(&mean)?.mul(&present)?;
    let std = centred
        .sqr()?
        .sum_keepdim(1)?
        .broadcast_div(&count)?
        .sqrt()?
        .clamp(1e-6, f64::MAX)?;
    centred.broadcast_div(&std)
}

/// Listwise KL between the teacher's softmax over `[positive, negatives]`
/// (at `teacher_t`) and the model's (at `student_t`), absent negatives
/// masked out; averaged over rows.
pub fn listwise_kl(
    student: &Tensor,
    teacher: &Tensor,
    mask: &Tensor,
    student_t: f64,
    teacher_t: f64,
) -> Result<Tensor> {
    let rows = student.dim(0)?;
    let present = Tensor::cat(
        &[
            &Tensor::ones((rows, 1), DType::F32, student.device())?,
            &mask.to_dtype(DType::F32)?,
        ],
        1,
    )?;
    present_kl(student, teacher, &present, student_t, teacher_t)
}

/// [`listwise_kl`] over the columns `present` (1) marks, every one of them
/// maskable: a row with none present contributes 0.
pub fn present_kl(
    student: &Tensor,
    teacher: &Tensor,
    present: &Tensor,
    student_t: f64,
    teacher_t: f64,
) -> Result<Tensor> {
    let present = present.to_dtype(DType::F32)?;
    let penalty = ((&present - 1.0)? * 1e9)?;
    let s = ((student / student_t)? + &penalty)?;
    let t = ((teacher.detach() / teacher_t)? + &penalty)?;
    let log_s = candle_nn::ops::log_softmax(&s, D::Minus1)?;
    let log_t = candle_nn::ops::log_softmax(&t, D::Minus1)?;
    (log_t.exp()? * (log_t - log_s)? * present)?
        .sum(D::Minus1)?
        .mean_all()
}

/// Listwise distillation: `KL(teacher ‖ student)` between the in-batch
/// score distributions of each query (its row of `q·pᵀ / τ`), averaged over
/// queries. With the frozen initial model as teacher this holds an adapted
/// model near what it knew (self-distillation against forgetting).
pub fn distill_kl(
    student: (&Tensor, &Tensor),
    teacher: (&Tensor, &Tensor),
    temperature: f64,
) -> Result<Tensor> {
    let s = (student.0.matmul(&student.1.t()?)? / temperature)?;
    let t = (teacher.0.matmul(&teacher.1.t()?)? / temperature)?.detach();
    let log_s = candle_nn::ops::log_softmax(&s, D::Minus1)?;
    let log_t = candle_nn::ops::log_softmax(&t, D::Minus1)?;
    let p_t = log_t.exp()?;
    (p_t * (log_t - log_s)?)?.sum(D::Minus1)?.mean_all()
}

fn distance(a: &Tensor, b: &Tensor, kind: Distance) -> Result<Tensor> {
    match kind {
        Distance::L2 => (a - b)?
            .sqr()?
            .sum(D::Minus1)?
            .clamp(1e-12, f64::MAX)?
            .sqrt(),
        Distance::Cosine => {
            let cos = l2_normalize(a)?.mul(&l2_normalize(b)?)?.sum(D::Minus1)?;
            cos.affine(-1.0, 1.0)
        }
    }
}

/// The negative of each query is its first hard negative when it has one,
/// else the next query's positive in the batch (a rolled batch).
fn triplet(
    q: &Tensor,
    p: &Tensor,
    hard: Option<&(Tensor, Tensor)>,
    margin: f64,
    kind: Distance,
) -> Result<LossOutput> {
    let b = q.dim(0)?;
    let rolled = Tensor::cat(&[p.narrow(0, 1, b - 1)?, p.narrow(0, 0, 1)?], 0)?;
    let negative = match hard {
        Some((h, mask)) => {
            let first = h.narrow(1, 0, 1)?.squeeze(1)?;
            let has = mask.narrow(1, 0, 1)?.to_dtype(DType::F32)?;
            (first.broadcast_mul(&has)? + rolled.broadcast_mul(&(has.affine(-1.0, 1.0))?)?)?
        }
        None => rolled,
    };
    let dp = distance(q, p, kind)?;
    let dn = distance(q, &negative, kind)?;
    let loss = ((&dp - &dn)? + margin)?.relu()?.mean_all()?;
    let accuracy = dp
        .lt(&dn)?
        .to_dtype(DType::F32)?
        .mean_all()?
        .to_scalar::<f32>()?;
    Ok(LossOutput { loss, accuracy })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[[f32; 2]]) -> Tensor {
        let flat: Vec<f32> = v.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (v.len(), 2), &Device::Cpu).unwrap()
    }

    #[test]
    fn standardize_centres_and_scales_present_scores_only() {
        let s = Tensor::from_vec(
            vec![10f32, 4.0, 1.0, 2.0, 0.5, 0.5, 99.0],
            (1, 7),
            &Device::Cpu,
        )
        .unwrap();
        // The last negative is absent: it must not move the mean or spread.
        let mask = Tensor::from_vec(vec![1u32, 1, 1, 1, 1, 0], (1, 6), &Device::Cpu).unwrap();
        let z: Vec<f32> = standardize(&s, &mask)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let present = &z[..6];
        let mean: f32 = present.iter().sum::<f32>() / 6.0;
        let var: f32 = present.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / 6.0;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4, "{z:?}");
        assert_eq!(z[6], 0.0);
        // Order within a row is kept.
        assert!(z[0] > z[1] && z[1] > z[3] && z[3] > z[2]);
    }

    #[test]
    fn infonce_matches_a_hand_computation() {
        let q = t(&[[1.0, 0.0], [0.0, 1.0]]);
        let p = t(&[[1.0, 0.0], [0.0, 1.0]]);
        let queue = t(&[[1.0, 1.0]]);
        let e = StepEmbeddings {
            queries: &q,
            positives: &p,
            hard: None,
            queue: Some(&queue),
        };
        let loss = Loss::Infonce {
            temperature: 1.0,
            symmetric: false,
            in_batch: true,
            share_hard: false,
            pair_weighting: PairWeighting::None,
        };
        let out = loss.compute(&e, Similarity::Dot).unwrap();
        // Row 0 logits [1, 0, 1], label 0: log(e + 1 + e) - 1.
        let expected = ((2.0 * 1f64.exp() + 1.0).ln() - 1.0) as f32;
        let got = out.loss.to_scalar::<f32>().unwrap();
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
        assert_eq!(out.accuracy, 1.0, "each positive is (tied) first");
    }

    #[test]
    fn hard_negatives_stay_with_their_query_and_masks_work() {
        let q = t(&[[1.0, 0.0], [0.0, 1.0]]);
        let p = t(&[[1.0, 0.0], [0.0, 1.0]]);
        let h = Tensor::new(&[[[5.0f32, 0.0]], [[5.0, 0.0]]], &Device::Cpu).unwrap();
        let none = Tensor::new(&[[1u32], [0]], &Device::Cpu).unwrap();
        let e = StepEmbeddings {
            queries: &q,
            positives: &p,
            hard: Some((&h, &none)),
            queue: None,
        };
        let loss = Loss::Infonce {
            temperature: 1.0,
            symmetric: false,
            in_batch: false,
            share_hard: false,
            pair_weighting: PairWeighting::None,
        };
        let out = loss.compute(&e, Similarity::Dot).unwrap();
        // Query 0: logits [1, 5] → loss ln(e + e^5) - 1; query 1: its negative is masked → loss 0.
        let expected = (((1f64.exp() + 5f64.exp()).ln() - 1.0) / 2.0) as f32;
        assert!((out.loss.to_scalar::<f32>().unwrap() - expected).abs() < 1e-4);
        assert_eq!(out.accuracy, 0.5);
        // Shared, query 1 also meets query 0's negative: logits [1, 0·5] for
        // query 1 ([0,1]·[5,0] = 0), query 0's masked one stays out.
        let shared = Loss::Infonce {
            temperature: 1.0,
            symmetric: false,
            in_batch: false,
            share_hard: true,
            pair_weighting: PairWeighting::None,
        };
        let out = shared.compute(&e, Similarity::Dot).unwrap();
        let q1 = ((1f64.exp() + 1.0).ln() - 1.0) as f32;
        let expected = (((1f64.exp() + 5f64.exp()).ln() - 1.0) as f32 + q1) / 2.0;
        assert!((out.loss.to_scalar::<f32>().unwrap() - expected).abs() < 1e-4);
    }

    #[test]
    fn self_weighting_counts_implausible_pairs_less() {
        // Query 0's positive ties with the other (1 and 1); query 1's is
        // implausible (-1 against 0).
        let q = t(&[[1.0, 0.0], [0.0, 1.0]]);
        let p = t(&[[1.0, 0.0], [1.0, -1.0]]);
        let e = StepEmbeddings {
            queries: &q,
            positives: &p,
            hard: None,
            queue: None,
        };
        let make = |w| Loss::Infonce {
            temperature: 1.0,
            symmetric: false,
            in_batch: true,
            share_hard: false,
            pair_weighting: w,
        };
        let plain = make(PairWeighting::None)
            .compute(&e, Similarity::Dot)
            .unwrap();
        let weighted = make(PairWeighting::SelfBelief)
            .compute(&e, Similarity::Dot)
            .unwrap();
        // By hand: rows' log-probabilities of their positive, weights
        // exp(logp) scaled to mean 1.
        let lp0 = -(2f64.ln());
        let lp1 = -1.0 - (1.0 + (-1f64).exp()).ln();
        let (w0, w1) = (lp0.exp(), lp1.exp());
        let mean = (w0 + w1) / 2.0;
        let want = (-(lp0 * w0 / mean) - (lp1 * w1 / mean)) / 2.0;
        let got = weighted.loss.to_scalar::<f32>().unwrap() as f64;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        assert!(got < plain.loss.to_scalar::<f32>().unwrap() as f64);
    }

    #[test]
    fn distillation_is_zero_against_itself_and_positive_otherwise() {
        let q = t(&[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]);
        let p = t(&[[0.9, 0.1], [0.2, 0.9], [0.5, 0.5]]);
        let same = distill_kl((&q, &p), (&q, &p), 0.1).unwrap();
        assert!(same.to_scalar::<f32>().unwrap().abs() < 1e-6);
        let other = t(&[[0.0, 1.0], [1.0, 0.0], [0.8, 0.6]]);
        let kl = distill_kl((&q, &p), (&other, &p), 0.1).unwrap();
        assert!(kl.to_scalar::<f32>().unwrap() > 0.1);
    }

    #[test]
    fn margin_mse_and_listwise_kl_by_hand() {
        let s = Tensor::new(&[[3.0f32, 1.0, 0.0], [2.0, 2.0, 5.0]], &Device::Cpu).unwrap();
        let t = Tensor::new(&[[4.0f32, 1.0, 1.0], [2.0, 0.0, 9.0]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1u32, 1], [1, 0]], &Device::Cpu).unwrap();
        // Margins: row 0 model (2, 3) teacher (3, 3); row 1 model (0, -) teacher (2, -).
        let want = ((2.0f32 - 3.0).powi(2) + 0.0 + (0.0f32 - 2.0).powi(2)) / 3.0;
        let got = margin_mse(&s, &t, &mask)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        assert!(
            listwise_kl(&t, &t, &mask, 1.0, 1.0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                .abs()
                < 1e-6
        );
        // Row 1's third column is masked: only columns 0 and 1 count.
        let s1 = Tensor::new(&[[0.0f32, 0.0, 0.0], [0.0, 0.0, 100.0]], &Device::Cpu).unwrap();
        let t1 = Tensor::new(&[[0.0f32, 0.0, 0.0], [0.0, 0.0, -100.0]], &Device::Cpu).unwrap();
        let kl = listwise_kl(&s1, &t1, &mask, 1.0, 1.0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(kl.abs() < 1e-5, "masked columns count: {kl}");
    }

    #[test]
    fn triplet_margin() {
        let q = t(&[[0.0, 0.0], [0.0, 0.0]]);
        let p = t(&[[1.0, 0.0], [3.0, 0.0]]);
        let e = StepEmbeddings {
            queries: &q,
            positives: &p,
            hard: None,
            queue: None,
        };
        let out = Loss::Triplet {
            margin: 0.5,
            distance: Distance::L2,
        }
        .compute(&e, Similarity::Dot)
        .unwrap();
        // Row 0: d+ = 1, d- = 3 → 0; row 1: d+ = 3, d- = 1 → 2.5. Mean 1.25.
        assert!((out.loss.to_scalar::<f32>().unwrap() - 1.25).abs() < 1e-5);
        assert_eq!(out.accuracy, 0.5);
    }
}
