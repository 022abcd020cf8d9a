//! One optimisation step: encode the batch (query tower, document tower or
//! the momentum encoder), add hard and dense negatives, gather across
//! ranks, compute the loss, backpropagate, all-reduce, check the gradient,
//! update the weights, the queue and the step counter.

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};

use super::data::Batch;
use super::grad_cache::{GradCache, Which};
use super::ltre;
use super::metrics::{self, StepLog};
use super::setup::sorted_vars;
use super::Trainer;
use crate::config::{ScoreLoss, TrainMode};
use crate::dist::gather_with_grad;
use crate::model::{l2_normalize, DropoutRng, Mode, Similarity};
use crate::objective::{
    distill_kl, listwise_kl, margin_mse, pair_scores, standardize, StepEmbeddings,
};
use crate::optim::{clip_scale, learning_rate};
use crate::tokenize::{Side, TokenBatch};

/// Tensors of a token batch on the device: ids and mask, `(rows, seq)`.
fn to_device(b: &TokenBatch, dev: &Device) -> Result<(Tensor, Tensor)> {
    Ok((
        Tensor::from_slice(&b.ids, (b.rows, b.seq), dev)?,
        Tensor::from_slice(&b.mask, (b.rows, b.seq), dev)?,
    ))
}

/// Seeds of step `step`: dropout draws from a generator that depends on the
/// run seed and the step only, so a resumed run repeats the same masks.
fn step_seed(seed: u64, step: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// What the forward and backward pass of a step computed.
pub struct Forward {
    /// The loss of the global batch.
    pub loss: f32,
    /// Pretext accuracy.
    pub accuracy: f32,
    /// Gradients of every trained variable (summed over ranks).
    pub grads: GradStore,
    queries: Tensor,
    /// Keys of the whole (global) batch, for the queue.
    keys: Tensor,
}

impl Trainer {
    /// The loss of a batch and the gradients of every variable, summed
    /// over the ranks of the group (what the optimizer would apply), without
    /// stepping. For tests and tools that check gradients.
    pub fn gradients(&mut self, batch: &Batch) -> Result<(f32, Vec<(String, Tensor)>)> {
        let f = self.forward_backward(batch)?;
        let vars = sorted_vars(&self.varmap);
        Ok((
            f.loss,
            vars.into_iter()
                .filter_map(|(n, v)| f.grads.get(v.as_tensor()).map(|g| (n, g.clone())))
                .collect(),
        ))
    }

    /// Encodes the batch, computes the loss of the global batch and its
    /// gradients (all-reduced across ranks).
    pub fn forward_backward(&mut self, batch: &Batch) -> Result<Forward> {
        if self.config.train.mode == TrainMode::Ltre {
            return self.ltre_forward_backward(batch);
        }
        let t = &self.config.train;
        let group = &*self.group;
        let world = group.world_size();
        // Ranks see different data; their dropout masks differ too.
        let seed = self.config.seed ^ (group.rank() as u64).wrapping_mul(0xA24B_AED4_963E_E407);
        let dropout = DropoutRng::new(step_seed(seed, self.step));
        let mode = Mode::Train(&dropout);
        let (q_ids, q_mask) = to_device(&batch.queries, &self.device)?;
        let (p_ids, p_mask) = to_device(&batch.positives, &self.device)?;
        // The trained towers' encodings, whole or through GradCache.
        let cache = (t.grad_cache > 0).then(|| GradCache::new(t.grad_cache));
        let model = &self.model;
        let encode = |which: Which, ids: &Tensor, mask: &Tensor| -> Result<Tensor> {
            match &cache {
                Some(c) => c.encode(model, which, ids, mask, &dropout),
                None => match which {
                    Which::Query => Ok(model.query().encode(ids, mask, mode)?),
                    Which::Doc => Ok(model.doc().encode(ids, mask, mode)?),
                },
            }
        };
        let queries = encode(Which::Query, &q_ids, &q_mask)?;
        if let Some(k) = &self.key {
            k.update(t.momentum)?;
        }
        // With one shared tower, MoCo's key encoder encodes the documents
        // (no gradient; Contriever). With separate towers the document tower
        // encodes them with gradient, and the key encoder only fills the queue.
        let key_encodes_docs = self.key.as_ref().filter(|k| !k.follows_separate_tower());
        let encode_doc = |ids: &Tensor, mask: &Tensor| -> Result<Tensor> {
            Ok(match key_encodes_docs {
                Some(k) => k.tower.encode(ids, mask, Mode::Eval)?.detach(),
                None => encode(Which::Doc, ids, mask)?,
            })
        };
        let positives = encode_doc(&p_ids, &p_mask)?;
        let rows = batch.queries.rows;
        let encode_hard = |tb: &TokenBatch, present: &[u32]| -> Result<(Tensor, Tensor)> {
            let (ids, mask) = to_device(tb, &self.device)?;
            let n = tb.rows / rows;
            let h = encode_doc(&ids, &mask)?;
            let dim = h.dim(1)?;
            let h = h.reshape((rows, n, dim))?;
            let present = Tensor::from_slice(present, (rows, n), &self.device)?;
            Ok((h, present))
        };
        let mut hard = match &batch.hard {
            Some((tb, present)) => Some(encode_hard(tb, present)?),
            None => None,
        };
        // The pair file's own negatives, before mined and dense ones: the
        // ones its teacher scores are about.
        let own_hard = match &hard {
            Some((h, m)) if t.teacher.weight > 0.0 => Some((
                h.narrow(1, 0, t.hard_negatives)?,
                m.narrow(1, 0, t.hard_negatives)?,
            )),
            _ => None,
        };
        if own_hard.is_some() && !t.teacher.contrast {
            // The teacher alone judges the pairs' own negatives.
            hard = None;
        }
        if let Some(a) = &mut self.ance {
            let neg = &self.config.negatives;
            let found = a.negatives(
                neg,
                &queries,
                &positives,
                &batch.positive_texts,
                &batch.sources,
                self.config.model.similarity,
                self.config.seed,
                self.step,
            )?;
            let (texts, present) = slots(&found, neg.count);
            let tb = self.tokenizer.encode(Side::Document, &texts)?;
            let dense = encode_hard(&tb, &present)?;
            hard = Some(match hard {
                Some((h, m)) => (
                    Tensor::cat(&[&h, &dense.0], 1)?,
                    Tensor::cat(&[&m, &dense.1], 1)?,
                ),
                None => dense,
            });
        }
        // Cross-device negatives: the whole batch, this rank's share live.
        let queries_all = gather_with_grad(group, &queries)?;
        let positives_all = gather_with_grad(group, &positives)?;
        let keys = match self.key.as_ref().filter(|k| k.follows_separate_tower()) {
            Some(k) => {
                let own = k.tower.encode(&p_ids, &p_mask, Mode::Eval)?.detach();
                group.all_gather(&own)?
            }
            None => positives_all.detach(),
        };
        let hard = match hard {
            Some((h, m)) if world > 1 => Some((
                gather_with_grad(group, &h)?,
                group.all_gather(&m.to_dtype(DType::F32)?)?,
            )),
            h => h,
        };
        let queue_keys = self.queue.as_ref().map(|q| q.keys()).transpose()?;
        let out = t.loss.compute(
            &StepEmbeddings {
                queries: &queries_all,
                positives: &positives_all,
                hard: hard.as_ref().map(|(h, m)| (h, m)),
                queue: queue_keys.as_ref(),
            },
            self.config.model.similarity,
        )?;
        let cosine = self.config.model.similarity == Similarity::Cosine;
        let unit = |x: &Tensor| -> Result<Tensor> {
            Ok(if cosine { l2_normalize(x)? } else { x.clone() })
        };
        // The frozen initial model's queries and positives, encoded once
        // for self-distillation and the hybrid teacher alike.
        let init = match &self.teacher {
            Some(init) => Some((
                init,
                unit(&init.tower.encode(&q_ids, &q_mask, Mode::Eval)?.detach())?,
                unit(&init.tower.encode(&p_ids, &p_mask, Mode::Eval)?.detach())?,
            )),
            None => None,
        };
        let total = match init.as_ref().filter(|_| t.distill.weight > 0.0) {
            Some((_, tq, tp)) => {
                let kl = distill_kl(
                    (&unit(&queries)?, &unit(&positives)?),
                    (tq, tp),
                    t.distill.temperature,
                )?;
                (out.loss + (kl * t.distill.weight)?)?
            }
            None => out.loss,
        };
        let total = match own_hard {
            Some((h, m)) => {
                let scores = batch.scores.as_ref().ok_or_else(|| {
                    anyhow::anyhow!(
                        "train.teacher needs teacher scores on every pair (scores, pos_scores/neg_scores or passage scores; `pretext mine --teacher-scores bm25` writes them), and a pair of step {} has none",
                        self.step + 1
                    )
                })?;
                let student = pair_scores(&unit(&queries)?, &unit(&positives)?, &unit(&h)?)?;
                let mut teacher =
                    Tensor::from_slice(&scores.values, (rows, t.hard_negatives + 1), &self.device)?;
                // Candidates the teacher did not score are left out, as
                // absent ones are.
                let known =
                    Tensor::from_slice(&scores.known, (rows, t.hard_negatives), &self.device)?;
                let m = (m * known)?;
                if let (Some((init, tq, tp)), Some((tb, _))) = (
                    init.as_ref().filter(|_| t.teacher.blend_init > 0.0),
                    &batch.hard,
                ) {
                    // The hybrid teacher: the frozen initial model scores
                    // the same candidates, fused with the file's scores.
                    let (ids, mask) = to_device(tb, &self.device)?;
                    let th = init.tower.encode(&ids, &mask, Mode::Eval)?.detach();
                    let dim = th.dim(1)?;
                    let th =
                        th.reshape((rows, tb.rows / rows, dim))?
                            .narrow(1, 0, t.hard_negatives)?;
                    let own = pair_scores(tq, tp, &unit(&th)?)?;
                    teacher = (standardize(&teacher, &m)?
                        + (standardize(&own, &m)? * t.teacher.blend_init)?)?;
                }
                let term = match t.teacher.loss {
                    ScoreLoss::MarginMse => margin_mse(&student, &teacher, &m)?,
                    ScoreLoss::Kl => {
                        let tau = match t.loss {
                            crate::objective::Loss::Infonce { temperature, .. } => temperature,
                            _ => 1.0,
                        };
                        listwise_kl(&student, &teacher, &m, tau, t.teacher.temperature)?
                    }
                };
                (total + (term * t.teacher.weight)?)?
            }
            None => total,
        };
        let loss = total.to_scalar::<f32>()?;
        if !loss.is_finite() {
            bail!(
                "the loss is {loss} at step {}; stopping. {}",
                self.step + 1,
                self.last_good()?
            );
        }
        let mut grads = total.backward()?;
        if let Some(c) = &cache {
            grads = c.backward(&self.model, grads, &sorted_vars(&self.varmap))?;
        }
        if world > 1 {
            // Every rank reduces the same variables in the same (sorted) order.
            for (_, v) in sorted_vars(&self.varmap) {
                if let Some(g) = grads.remove(v.as_tensor()) {
                    grads.insert(v.as_tensor(), group.all_reduce_sum(&g)?);
                }
            }
        }
        Ok(Forward {
            loss,
            accuracy: out.accuracy,
            grads,
            queries,
            keys,
        })
    }

    /// LTRe's step: only the queries go through a tower (the query
    /// tower, with dropout); the documents are the frozen index's rows.
    fn ltre_forward_backward(&mut self, batch: &Batch) -> Result<Forward> {
        let dropout = DropoutRng::new(step_seed(self.config.seed, self.step));
        let (q_ids, q_mask) = to_device(&batch.queries, &self.device)?;
        let queries = self
            .model
            .query()
            .encode(&q_ids, &q_mask, Mode::Train(&dropout))?;
        // Scored as the index was built: normalised when cosine.
        let cosine = self.config.model.similarity == Similarity::Cosine;
        let scored = |e: &Tensor| -> Result<Tensor> {
            Ok(if cosine { l2_normalize(e)? } else { e.clone() })
        };
        let unit = scored(&queries)?;
        let settings = self.config.train.ltre;
        // The teacher's dense half: the document tower is the init's
        // (LTRe never trains it), so it encodes the queries as the initial
        // model did.
        let init = match settings.teacher.needs_init() {
            true => Some(scored(
                &self
                    .model
                    .doc()
                    .encode(&q_ids, &q_mask, Mode::Eval)?
                    .detach(),
            )?),
            false => None,
        };
        let inputs = ltre::TeacherInputs {
            texts: &batch.query_texts,
            init: init.as_ref(),
        };
        let Some(index) = self.ltre.as_mut() else {
            bail!("LTRe's index is built before the first step");
        };
        let out = index.loss(&unit, &batch.sources, Some(inputs), &settings)?;
        let loss = out.loss.to_scalar::<f32>()?;
        if !loss.is_finite() {
            bail!(
                "the loss is {loss} at step {}; stopping. {}",
                self.step + 1,
                self.last_good()?
            );
        }
        let grads = out.loss.backward()?;
        let queries = queries.detach();
        Ok(Forward {
            loss,
            accuracy: out.accuracy,
            grads,
            keys: queries.clone(),
            queries,
        })
    }

    /// "Last good checkpoint: ..." for an error that stops the run.
    fn last_good(&self) -> Result<String> {
        let last = self.run_dir.latest()?;
        Ok(format!(
            "Last good checkpoint: {}",
            last.map_or("none".into(), |p| p.display().to_string())
        ))
    }

    /// Applies a step's gradients: the weights, the queue and the step
    /// counter move only if the global gradient norm is finite (a finite
    /// loss can still have an infinite or NaN gradient, and one such update
    /// would poison every weight).
    pub fn apply(&mut self, f: Forward, batch: &Batch, started: Instant) -> Result<StepLog> {
        let t = &self.config.train;
        let norm = self.optimizer.grad_norm(&f.grads)?;
        if !norm.is_finite() {
            bail!(
                "the gradient norm is {norm} at step {} (loss {}); stopping before the update, weights unchanged. {}",
                self.step + 1,
                f.loss,
                self.last_good()?
            );
        }
        let lr = learning_rate(self.step + 1, t.lr, t.warmup_steps, t.steps);
        let clip = (t.clip_norm > 0.0).then_some(t.clip_norm);
        self.optimizer.step(&f.grads, lr, clip_scale(norm, clip))?;
        if let Some(q) = &mut self.queue {
            q.enqueue(&f.keys)?;
        }
        self.step += 1;
        let (q_norm, q_std) = metrics::norm_and_std(&f.queries)?;
        Ok(StepLog {
            step: self.step,
            loss: f.loss,
            accuracy: f.accuracy,
            lr,
            grad_norm: norm,
            embedding_norm: q_norm,
            embedding_std: q_std,
            queue_fill: self.queue.as_ref().map_or(0.0, |q| q.fill_ratio()),
            tokens: batch.queries.tokens() + batch.positives.tokens(),
            seconds: started.elapsed().as_secs_f64(),
            refresh_seconds: None,
        })
    }

    /// One optimisation step on a batch.
    pub fn train_step(&mut self, batch: &Batch) -> Result<StepLog> {
        let started = Instant::now();
        let f = self.forward_backward(batch)?;
        self.apply(f, batch, started)
    }

    /// The trained variables by name, sorted (tests poison their gradients).
    pub fn variables(&self) -> Vec<(String, candle_core::Var)> {
        sorted_vars(&self.varmap)
    }

    /// A copy of the trained variables by name, for tests that compare
    /// weights.
    pub fn weights(&self) -> Result<Vec<(String, Tensor)>> {
        sorted_vars(&self.varmap)
            .into_iter()
            .map(|(n, v)| Ok((n, v.as_tensor().copy()?)))
            .collect()
    }
}

/// Negatives per query as `rows × n` texts (empty where missing) and the
/// 0/1 mask of which exist.
fn slots(found: &[Vec<String>], n: usize) -> (Vec<&str>, Vec<u32>) {
    let mut texts = Vec::with_capacity(found.len() * n);
    let mut present = Vec::with_capacity(found.len() * n);
    for f in found {
        for i in 0..n {
            let t = f.get(i);
            texts.push(t.map_or("", String::as_str));
            present.push(t.is_some() as u32);
        }
    }
    (texts, present)
}
