//! The layers BERT needs, written so that every parameter gets a gradient.
//!
//! candle-nn's fused `ops::layer_norm` and `softmax_last_dim` have no
//! backward pass and silently drop gradients (candle issues #2168, #3011);
//! here the model's heavy ops (dense layers, attention, layer norm, GELU,
//! dropout) are [`super::kernels`]: fused on the CPU with their own
//! backward, composed from differentiable candle ops elsewhere.
//! Dropout masks come from the run's seeded generator on every device, so a
//! training run is reproducible and resumable wherever it runs.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use rand::{Rng, SeedableRng};

/// Layer normalisation over the last dimension, HF names `weight`/`bias`.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Loads or creates `weight` (ones) and `bias` (zeros) of width `size`.
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
        let weight = vb.get_with_hints(size, "weight", candle_nn::Init::Const(1.0))?;
        let bias = vb.get_with_hints(size, "bias", candle_nn::Init::Const(0.0))?;
        Ok(LayerNorm { weight, bias, eps })
    }

    /// The end of a sub-layer, `LayerNorm(dropout(x·Wᵀ + b) + residual)`
    /// for the dense layer `dense` on `x`: one fused op after the product.
    pub fn dense_residual(
        &self,
        dense: &candle_nn::Linear,
        x: &Tensor,
        residual: &Tensor,
        mode: Mode,
        p: f64,
    ) -> Result<Tensor> {
        let y = super::kernels::linear(x, dense.weight(), None)?;
        self.after_dense(y, dense.bias(), residual, mode, p)
    }

    /// [`LayerNorm::dense_residual`] after the product: `y = x·Wᵀ`
    /// computed elsewhere (the int8 path), `bias` its dense layer's.
    pub fn after_dense(
        &self,
        y: Tensor,
        bias: Option<&Tensor>,
        residual: &Tensor,
        mode: Mode,
        p: f64,
    ) -> Result<Tensor> {
        match bias {
            Some(b) => super::kernels::residual_norm(
                &y,
                b,
                residual,
                &self.weight,
                &self.bias,
                self.eps,
                mode,
                p,
            ),
            None => self.forward(&(mode.dropout(&y, p)? + residual)?),
        }
    }
}

impl Module for LayerNorm {
    /// `(…, hidden) -> (…, hidden)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        super::kernels::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// Where dropout masks come from.
///
/// Every mask is a hash of a seed drawn from this generator (itself seeded
/// by the run's seed and the step) and each element's index
/// ([`super::kernels::DropMask`]). The fused CPU kernel applies it in place;
/// on other devices, and for other dtypes, the same mask is built on the
/// host and uploaded, so a run on CUDA or Metal is as reproducible and
/// resumable as on the CPU, and drops the same elements (device generators
/// such as `Tensor::rand` are not seeded by the run).
///
/// A chunk of a batch encoded alone (GradCache, `train.grad_cache`) takes
/// [`DropoutRng::chunk`]: the same site seeds as the whole batch, and each
/// mask shifted to the chunk's rows, so the chunk's masks are the whole
/// batch's masks on those rows and the chunked step computes what the
/// unchunked one does.
#[derive(Debug)]
pub struct DropoutRng {
    rng: std::sync::Mutex<rand::rngs::Xoshiro256PlusPlus>,
    /// The chunk's first row and its row count (`(0, 0)`: the whole batch).
    rows: (usize, usize),
}

impl DropoutRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> DropoutRng {
        DropoutRng {
            rng: std::sync::Mutex::new(rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed)),
            rows: (0, 0),
        }
    }

    /// The seed of the next dropout site.
    pub fn next_seed(&self) -> u64 {
        self.rng.lock().expect("dropout rng").next_u64()
    }

    /// A generator for rows `first..first + rows` of a batch that this
    /// generator would encode whole: it draws the seeds this one would
    /// draw next (this one does not move), and shifts every mask to those
    /// rows. Every tensor a tower drops out has the batch as its outermost
    /// dimension, so a row's elements sit at `row × (elements / rows)`.
    pub fn chunk(&self, first: usize, rows: usize) -> DropoutRng {
        DropoutRng {
            rng: std::sync::Mutex::new(self.rng.lock().expect("dropout rng").clone()),
            rows: (first, rows),
        }
    }

    /// Moves this generator to where `other` (a [`DropoutRng::chunk`] of it
    /// that encoded its rows) is: past the sites one encoding draws.
    pub fn follow(&self, other: &DropoutRng) {
        let state = other.rng.lock().expect("dropout rng").clone();
        *self.rng.lock().expect("dropout rng") = state;
    }

    /// The mask of the next dropout site, over a tensor of `elements`.
    pub fn mask(&self, p: f64, elements: usize) -> super::kernels::DropMask {
        let mask = super::kernels::DropMask::new(p, self.next_seed());
        match self.rows {
            (first, rows) if rows > 0 => mask.with_base(first * (elements / rows)),
            _ => mask,
        }
    }

    /// Scales kept elements by `1/(1-p)` and zeroes the rest.
    pub fn dropout(&self, x: &Tensor, p: f64) -> Result<Tensor> {
        if p <= 0.0 {
            return Ok(x.clone());
        }
        let mask = self.mask(p, x.elem_count());
        if super::kernels::fused_for(x) {
            // Nothing to draw serially or keep for the backward pass.
            return super::kernels::dropout(x, mask);
        }
        // The scaled mask, one pass on the host, one upload, one multiply.
        let mut factors = vec![1f32; x.elem_count()];
        mask.apply(&mut factors, 0);
        let factors = Tensor::from_vec(factors, x.shape(), x.device())?.to_dtype(x.dtype())?;
        x.mul(&factors)
    }
}

/// Whether a forward pass trains (dropout on) or evaluates.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'r> {
    /// Dropout on, masks from this generator.
    Train(&'r DropoutRng),
    /// No dropout.
    Eval,
}

impl Mode<'_> {
    /// Dropout in training mode, identity otherwise.
    pub fn dropout(&self, x: &Tensor, p: f64) -> Result<Tensor> {
        match self {
            Mode::Train(rng) => rng.dropout(x, p),
            Mode::Eval => Ok(x.clone()),
        }
    }
}

/// A linear layer with HF names (`weight` `(out, in)`, `bias`), BERT's
/// N(0, 0.02) init when created.
pub fn linear(input: usize, output: usize, vb: VarBuilder) -> Result<candle_nn::Linear> {
    let init = candle_nn::Init::Randn {
        mean: 0.0,
        stdev: 0.02,
    };
    let weight = vb.get_with_hints((output, input), "weight", init)?;
    let bias = vb.get_with_hints(output, "bias", candle_nn::Init::Const(0.0))?;
    Ok(candle_nn::Linear::new(weight, Some(bias)))
}

/// An embedding table with BERT's N(0, 0.02) init when created.
pub fn embedding(rows: usize, dim: usize, vb: VarBuilder) -> Result<candle_nn::Embedding> {
    let init = candle_nn::Init::Randn {
        mean: 0.0,
        stdev: 0.02,
    };
    let table = vb.get_with_hints((rows, dim), "weight", init)?;
    Ok(candle_nn::Embedding::new(table, dim))
}

/// Additive attention bias from a `(batch, seq)` 0/1 mask: 0 where a token
/// may be attended to, a large negative number on padding. `(batch, 1, 1, seq)`.
pub fn attention_bias(mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let (b, s) = mask.dims2()?;
    let mask = mask.to_dtype(dtype)?;
    ((mask - 1.0)? * 1e9)?.reshape((b, 1, 1, s))
}
