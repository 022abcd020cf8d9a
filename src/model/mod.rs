//! The dual encoder: BERT towers (shared or separate), pooling, an optional
//! projection head and L2 normalisation, built from a `VarBuilder` so the
//! same code trains from a `VarMap` or serves a memory-mapped checkpoint.

pub mod bert;
pub mod config;
pub mod cross;
pub mod kernels;
pub mod layers;
pub mod lsa;
pub mod pretrained;
pub mod weights;
pub mod word_weights;

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

pub use bert::{mean_pool, Bert, Freeze};
pub use config::BertConfig;
pub use layers::{DropoutRng, Mode};

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over real tokens (Contriever, sentence-transformers).
    #[default]
    Mean,
    /// The first token's state (`[CLS]`, DPR).
    Cls,
    /// A mean weighted by a learned weight per vocabulary entry, started
    /// from the training corpus's idf (sentence-transformers' `WordWeights`
    /// module before mean pooling, as exported). Once every token's state
    /// has the same norm (BERT's layer norms), a plain mean gives `the` as
    /// much say as a rare term, and a small model trained from scratch has
    /// to learn to point frequent tokens away; the weight lets it discount
    /// them from the first step.
    Weighted,
}

/// How two vectors are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Similarity {
    /// Dot product (Contriever).
    #[default]
    Dot,
    /// Cosine: dot product of L2-normalised vectors.
    Cosine,
}

/// A tower's `Pooling::Weighted` weights (their logarithms) in its
/// variables and checkpoints; `pretext export` writes them as a WordWeights
/// module instead.
pub const LOG_WEIGHTS: &str = "pooling.log_weights";

/// What sits on top of BERT in one tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Pooling.
    pub pooling: Pooling,
    /// Output width of a projection head (none if `None`).
    pub projection: Option<usize>,
    /// L2-normalise the output.
    pub normalize: bool,
}

/// One tower: BERT, pooling, projection, normalisation.
#[derive(Debug, Clone)]
pub struct Tower {
    bert: Bert,
    pool: Pool,
    /// The projection head and its output width.
    projection: Option<(usize, Linear)>,
    normalize: bool,
}

/// How a tower pools, with what it needs: weighted pooling carries its
/// weights, so a tower cannot be asked to weight without them.
#[derive(Debug, Clone)]
enum Pool {
    Mean,
    Cls,
    /// Per-token weights as logarithms (so they stay positive however they
    /// are trained): `(vocab,)`, named [`LOG_WEIGHTS`].
    Weighted(Tensor),
}

impl Pool {
    fn kind(&self) -> Pooling {
        match self {
            Pool::Mean => Pooling::Mean,
            Pool::Cls => Pooling::Cls,
            Pool::Weighted(_) => Pooling::Weighted,
        }
    }
}

impl Tower {
    /// Builds a tower; the projection head's weights are `head.dense.*`.
    pub fn new(config: &BertConfig, head: Head, vb: VarBuilder) -> Result<Tower> {
        let projection = head
            .projection
            .map(|out| {
                let dense = layers::linear(config.hidden_size, out, vb.pp("head").pp("dense"))?;
                Ok::<_, candle_core::Error>((out, dense))
            })
            .transpose()?;
        let pool = match head.pooling {
            // Zero: every weight 1, a plain mean, until the caller sets them.
            Pooling::Weighted => Pool::Weighted(vb.get_with_hints(
                config.vocab_size,
                LOG_WEIGHTS,
                candle_nn::Init::Const(0.0),
            )?),
            Pooling::Mean => Pool::Mean,
            Pooling::Cls => Pool::Cls,
        };
        Ok(Tower {
            bert: Bert::new(config, vb)?,
            pool,
            projection,
            normalize: head.normalize,
        })
    }

    /// The tower with weighted pooling by `weights` (`(vocab,)`, each
    /// positive), as a loaded `WordWeights` module gives them.
    pub fn with_token_weights(mut self, weights: &Tensor) -> Result<Tower> {
        self.pool = Pool::Weighted(weights.log()?);
        Ok(self)
    }

    /// The BERT inside.
    pub fn bert(&self) -> &Bert {
        &self.bert
    }

    /// Stops the backward pass below the frozen part (see [`Bert::freeze`]).
    pub fn freeze(&mut self, f: Freeze) {
        self.bert.freeze(f);
    }

    /// Runs the encoder's dense layers in int8 from now on, in passes
    /// without gradients (see [`Bert::quantize`]).
    pub fn quantize(&mut self) -> Result<()> {
        self.bert.quantize()
    }

    /// The head settings.
    pub fn head(&self) -> Head {
        Head {
            pooling: self.pool.kind(),
            projection: self.projection.as_ref().map(|(out, _)| *out),
            normalize: self.normalize,
        }
    }

    /// `(batch, seq)` ids and mask → `(batch, dim)` embeddings.
    pub fn encode(&self, ids: &Tensor, mask: &Tensor, mode: Mode) -> Result<Tensor> {
        let states = self.bert.forward(ids, mask, mode)?;
        let pooled = match &self.pool {
            Pool::Mean => mean_pool(&states, mask)?,
            Pool::Cls => states.narrow(1, 0, 1)?.squeeze(1)?,
            Pool::Weighted(w) => weighted_pool(&states, mask, ids, w)?,
        };
        let out = match &self.projection {
            Some((_, p)) => p.forward(&pooled)?,
            None => pooled,
        };
        if self.normalize {
            l2_normalize(&out)
        } else {
            Ok(out)
        }
    }
}

/// The mean of `states` over real tokens, each weighted by
/// `exp(log_weights[id])`: sentence-transformers' `WordWeights` then mean
/// `Pooling` (the weighted sum over the sum of the weights).
pub fn weighted_pool(
    states: &Tensor,
    mask: &Tensor,
    ids: &Tensor,
    log_weights: &Tensor,
) -> Result<Tensor> {
    let w = log_weights
        .index_select(&ids.flatten_all()?, 0)?
        .reshape(ids.shape())?
        .exp()?
        .mul(&mask.to_dtype(states.dtype())?)?
        .unsqueeze(D::Minus1)?;
    let sum = states.broadcast_mul(&w)?.sum(1)?;
    let total = w.sum(1)?.clamp(1e-9, f64::MAX)?;
    sum.broadcast_div(&total)
}

/// Rows scaled to unit L2 norm.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&norm)
}

/// Query and document towers: one shared, or two with the document tower's
/// weights under `doc.`.
#[derive(Debug, Clone)]
pub struct DualEncoder {
    query: Tower,
    doc: Option<Tower>,
}

impl DualEncoder {
    /// Builds one tower (`shared`) or two.
    pub fn new(
        config: &BertConfig,
        head: Head,
        shared: bool,
        vb: VarBuilder,
    ) -> Result<DualEncoder> {
        let query = Tower::new(config, head, vb.clone())?;
        let doc = (!shared)
            .then(|| Tower::new(config, head, vb.pp("doc")))
            .transpose()?;
        Ok(DualEncoder { query, doc })
    }

    /// The query tower.
    pub fn query(&self) -> &Tower {
        &self.query
    }

    /// The document tower (the query tower when shared).
    pub fn doc(&self) -> &Tower {
        self.doc.as_ref().unwrap_or(&self.query)
    }

    /// Freezes the same part of both towers.
    pub fn freeze(&mut self, f: Freeze) {
        self.query.freeze(f);
        if let Some(d) = &mut self.doc {
            d.freeze(f);
        }
    }
}

#[cfg(test)]
mod tests;
