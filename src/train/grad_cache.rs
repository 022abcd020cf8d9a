//! GradCache (Gao et al., 2021; sentence-transformers'
//! CachedMultipleNegativesRankingLoss, Tevatron): batches larger than
//! memory.
//!
//! A step's embeddings are computed chunk by chunk without keeping a graph
//! ([`GradCache::encode`]), and stand in the loss as variables of their
//! own, so the loss's backward pass gives the gradient of every embedding
//! over the whole batch: in-batch, hard, mined and queued negatives,
//! cross-device ones and the teachers' terms alike. Then each chunk is
//! encoded again with its graph and backpropagates its slice of that
//! gradient ([`GradCache::backward`]). Memory holds one chunk's
//! activations; time is one more forward pass. Each chunk is encoded with
//! the whole batch's dropout masks on its rows ([`DropoutRng::chunk`]), so
//! both passes, and the unchunked step, compute the same function.

use std::cell::RefCell;

use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::model::{DropoutRng, DualEncoder, Mode};

/// The tower an embedding came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The query tower.
    Query,
    /// The document tower (the query tower when they are shared).
    Doc,
}

impl Which {
    fn tower(self, model: &DualEncoder) -> &crate::model::Tower {
        match self {
            Which::Query => model.query(),
            Which::Doc => model.doc(),
        }
    }
}

/// One encoding of the step: its inputs, the generator its masks came
/// from, and the variable standing for its embeddings in the loss.
struct Cached {
    which: Which,
    ids: Tensor,
    mask: Tensor,
    dropout: DropoutRng,
    embeddings: Var,
}

/// The step's cached encodings.
pub struct GradCache {
    chunk: usize,
    cached: RefCell<Vec<Cached>>,
}

impl GradCache {
    /// Chunks of `chunk` rows (at least 1).
    pub fn new(chunk: usize) -> GradCache {
        GradCache {
            chunk: chunk.max(1),
            cached: RefCell::new(Vec::new()),
        }
    }

    fn chunks(&self, rows: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..rows)
            .step_by(self.chunk)
            .map(move |first| (first, self.chunk.min(rows - first)))
    }

    /// The embeddings of `ids` by `which`'s tower, chunk by chunk, with no
    /// graph kept: a variable the loss differentiates. `dropout` moves as
    /// encoding the whole batch would move it.
    pub fn encode(
        &self,
        model: &DualEncoder,
        which: Which,
        ids: &Tensor,
        mask: &Tensor,
        dropout: &DropoutRng,
    ) -> Result<Tensor> {
        let rows = ids.dim(0)?;
        let tower = which.tower(model);
        let start = dropout.chunk(0, 0);
        let mut parts = Vec::new();
        let mut last = None;
        for (first, n) in self.chunks(rows) {
            let rng = start.chunk(first, n);
            let e = tower.encode(
                &ids.narrow(0, first, n)?,
                &mask.narrow(0, first, n)?,
                Mode::Train(&rng),
            )?;
            // Detached: the chunk's graph is freed here.
            parts.push(e.detach());
            last = Some(rng);
        }
        if let Some(rng) = last {
            dropout.follow(&rng);
        }
        let embeddings = Var::from_tensor(&Tensor::cat(&parts, 0)?)?;
        let out = embeddings.as_tensor().clone();
        self.cached.borrow_mut().push(Cached {
            which,
            ids: ids.clone(),
            mask: mask.clone(),
            dropout: start,
            embeddings,
        });
        Ok(out)
    }

    /// The loss's gradients `grads` carried to the weights in `vars`: each
    /// chunk encoded again with its graph backpropagates its slice of its
    /// embeddings' gradient, and the chunks' weight gradients are summed
    /// (with whatever `grads` already holds for a weight).
    pub fn backward(
        &self,
        model: &DualEncoder,
        mut grads: GradStore,
        vars: &[(String, Var)],
    ) -> Result<GradStore> {
        let cached = std::mem::take(&mut *self.cached.borrow_mut());
        for c in cached {
            // An embedding the loss did not use has no gradient to carry.
            let Some(g) = grads.remove(c.embeddings.as_tensor()) else {
                continue;
            };
            let tower = c.which.tower(model);
            for (first, n) in self.chunks(c.ids.dim(0)?) {
                let rng = c.dropout.chunk(first, n);
                let e = tower.encode(
                    &c.ids.narrow(0, first, n)?,
                    &c.mask.narrow(0, first, n)?,
                    Mode::Train(&rng),
                )?;
                // d(Σ e·g)/dθ = Σ g·de/dθ: the chain rule with g fixed.
                let surrogate = (e * g.narrow(0, first, n)?)?.sum_all()?;
                let chunk_grads = surrogate.backward()?;
                for (_, v) in vars {
                    if let Some(d) = chunk_grads.get(v.as_tensor()) {
                        let sum = match grads.remove(v.as_tensor()) {
                            Some(old) => (old + d)?,
                            None => d.clone(),
                        };
                        grads.insert(v.as_tensor(), sum);
                    }
                }
            }
        }
        Ok(grads)
    }
}
