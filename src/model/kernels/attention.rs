//! Multi-head scaled dot-product attention as one op, on the packed
//! `(batch, seq, 3·hidden)` output of one dense layer holding the query,
//! key and value projections side by side.
//!
//! Composed, attention splits the heads into copies, multiplies each of
//! `batch × heads` small matrices with all threads (candle's batched matmul
//! synchronises the threads once per matrix), keeps the probability matrix
//! for backward and merges the heads into another copy. Here each thread
//! takes whole batch items, reads the heads in place through strides,
//! writes the merged output directly, and the backward pass recomputes the
//! probabilities instead of storing them (as FlashAttention does): one
//! `(seq × seq)` scratch matrix per thread instead of `batch × heads` of
//! them kept for the whole step. A batch is padded to its longest text;
//! each item attends only over the keys up to its last real token (see
//! [`kept_keys`]), so the padding costs the shorter items nothing there.

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::dropout::DropMask;
use super::gemm::{matmul, Mat, Threads};
use super::{contiguous_f32, fused_for, softmax, with_f32};
use crate::model::layers::Mode;

/// `softmax(Q·Kᵀ/√d + bias)·V` per head. `qkv` is `(batch, seq, 3·hidden)`:
/// queries, keys and values side by side; `bias` is `(batch, 1, 1, seq)` (0
/// on tokens, large negative on padding); in training mode the
/// probabilities go through dropout `p`. Returns `(batch, seq, hidden)`
/// with the heads side by side.
pub fn attention(qkv: &Tensor, bias: &Tensor, heads: usize, mode: Mode, p: f64) -> Result<Tensor> {
    let (batch, seq, width) = qkv.dims3()?;
    let hidden = width / 3;
    if heads == 0 || width != 3 * hidden || !hidden.is_multiple_of(heads) {
        candle_core::bail!("attention: width {width} is not 3 × a multiple of {heads} heads");
    }
    if fused_for(qkv) {
        let mask = DropMask::for_mode(mode, p, batch * heads * seq * seq);
        let op = Attention {
            heads,
            bias: bias.contiguous()?.detach(),
            mask,
        };
        return qkv.contiguous()?.apply_op1(op);
    }
    composed(qkv, bias, heads, |probs| mode.dropout(probs, p))
}

/// The same function from candle's ops, dropout applied by `dropout`
/// (other devices, tests).
pub(super) fn composed(
    qkv: &Tensor,
    bias: &Tensor,
    heads: usize,
    dropout: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let (b, s, width) = qkv.dims3()?;
    let h = width / 3;
    let d = h / heads;
    let split = |i: usize| -> Result<Tensor> {
        qkv.narrow(2, i * h, h)?
            .reshape((b, s, heads, d))?
            .transpose(1, 2)?
            .contiguous()
    };
    let q = (split(0)? * (1.0 / (d as f64).sqrt()))?;
    let scores = q.matmul(&split(1)?.t()?)?;
    let probs = dropout(&softmax::composed(&scores, bias)?)?;
    probs
        .matmul(&split(2)?)?
        .transpose(1, 2)?
        .reshape((b, s, h))
}

struct Attention {
    heads: usize,
    bias: Tensor,
    mask: Option<DropMask>,
}

/// Shapes of one call.
#[derive(Clone, Copy)]
struct Dims {
    batch: usize,
    seq: usize,
    hidden: usize,
    heads: usize,
    head: usize,
}

/// Which third of the packed input.
#[derive(Clone, Copy)]
enum Part {
    Query = 0,
    Key = 1,
    Value = 2,
}

/// A bias at or below this marks a padding key: `exp(-10⁴)` is 0 in f32,
/// so such a key's attention weight is exactly zero whenever the row has
/// one real key (the mask's bias is −10⁹).
const PADDING_BIAS: f32 = -1e4;

/// How many leading keys of a batch item take part: all but the trailing
/// padding. A batch is padded to its longest member, so the shorter items
/// skip the scores, softmax and products over keys whose weight is zero.
/// With no real key at all every key is kept, as the composed softmax
/// (uniform over the padding) does.
fn kept_keys(bias: &[f32]) -> usize {
    match bias.iter().rposition(|&b| b > PADDING_BIAS) {
        Some(last) => last + 1,
        None => bias.len(),
    }
}

impl Dims {
    fn of(l: &Layout, heads: usize) -> Result<Dims> {
        let (batch, seq, width) = l.shape().dims3()?;
        let hidden = width / 3;
        Ok(Dims {
            batch,
            seq,
            hidden,
            heads,
            head: hidden / heads,
        })
    }

    /// Elements of one batch item of the packed input.
    fn packed_item(&self) -> usize {
        3 * self.seq * self.hidden
    }

    /// Elements of one batch item of the output.
    fn item(&self) -> usize {
        self.seq * self.hidden
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head as f32).sqrt()
    }

    /// The first `rows` tokens of head `h` of `part` in a batch item's
    /// packed `(seq, 3·hidden)` block, as a `(rows, head)` view.
    fn head<'a>(&self, block: &'a [f32], part: Part, h: usize, rows: usize) -> Mat<'a> {
        Mat {
            data: &block[part as usize * self.hidden + h * self.head..],
            rows,
            cols: self.head,
            rs: 3 * self.hidden,
            cs: 1,
        }
    }

    /// Applies dropout to the `(seq × keys)` probabilities of head `h` of
    /// item `b`, each element masked as at its place in the full
    /// `(batch, heads, seq, seq)` tensor (the composed op's mask).
    fn apply_dropout(&self, mask: &DropMask, probs: &mut [f32], keys: usize, b: usize, h: usize) {
        let start = (b * self.heads + h) * self.seq * self.seq;
        for (i, row) in probs.chunks_exact_mut(keys).enumerate() {
            mask.apply(row, start + i * self.seq);
        }
    }
}

/// `softmax(scale·Q_h·K_hᵀ + bias)` over the first `bias.len()` keys into
/// `probs` (row-major `seq × keys`).
fn probabilities(
    dims: &Dims,
    block: &[f32],
    bias: &[f32],
    h: usize,
    probs: &mut [f32],
) -> Result<()> {
    let keys = bias.len();
    let (q, k) = (
        dims.head(block, Part::Query, h, dims.seq),
        dims.head(block, Part::Key, h, keys),
    );
    // Computed as `K_h·Q_hᵀ` written column-major, which is the same
    // row-major matrix: gemm's kernels vectorise along destination
    // columns, and this orientation ran 1.4× faster for heads of width 32.
    matmul(probs, 1, keys, k, q.t(), false, dims.scale(), Threads::One)?;
    softmax::rows_in_place(probs, bias);
    Ok(())
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = contiguous_f32(storage, layout, self.name())?;
        let dims = Dims::of(layout, self.heads)?;
        let s = dims.seq;
        let mut out = vec![0f32; dims.batch * dims.item()];
        with_f32(&self.bias, |bias| {
            if bias.len() != dims.batch * s {
                candle_core::bail!(
                    "attention: bias {:?} for {:?}",
                    self.bias.shape(),
                    layout.shape()
                );
            }
            out.par_chunks_mut(dims.item())
                .zip(qkv.par_chunks(dims.packed_item()))
                .enumerate()
                .try_for_each(|(b, (ob, block))| -> Result<()> {
                    let bias = &bias[b * s..(b + 1) * s];
                    let keys = kept_keys(bias);
                    let mut probs = vec![0f32; s * keys];
                    for h in 0..dims.heads {
                        probabilities(&dims, block, &bias[..keys], h, &mut probs)?;
                        if let Some(mask) = &self.mask {
                            dims.apply_dropout(mask, &mut probs, keys, b, h);
                        }
                        let p = Mat::rows(&probs, s, keys);
                        let v = dims.head(block, Part::Value, h, keys);
                        let dst = &mut ob[h * dims.head..];
                        matmul(dst, dims.hidden, 1, p, v, false, 1.0, Threads::One)?;
                    }
                    Ok(())
                })
        })?;
        Ok((
            CpuStorage::F32(out),
            Shape::from((dims.batch, s, dims.hidden)),
        ))
    }

    fn bwd(&self, qkv: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let dims = Dims::of(qkv.layout(), self.heads)?;
        let dqkv = with_f32(qkv, |qkv| {
            with_f32(&grad, |g| {
                with_f32(&self.bias, |bias| self.backward(&dims, qkv, g, bias))
            })
        })?;
        Ok(Some(Tensor::from_vec(dqkv, qkv.shape(), &Device::Cpu)?))
    }
}

impl Attention {
    /// The gradient of the packed input, `(batch, seq, 3·hidden)`. Keys
    /// (and values) past an item's kept keys had zero weight, so their
    /// gradient rows stay zero.
    fn backward(&self, dims: &Dims, qkv: &[f32], g: &[f32], bias: &[f32]) -> Result<Vec<f32>> {
        let s = dims.seq;
        let mut dqkv = vec![0f32; qkv.len()];
        dqkv.par_chunks_mut(dims.packed_item())
            .zip(qkv.par_chunks(dims.packed_item()))
            .zip(g.par_chunks(dims.item()))
            .enumerate()
            .try_for_each(|(b, ((db, block), gb))| -> Result<()> {
                let bias = &bias[b * s..(b + 1) * s];
                let keys = kept_keys(bias);
                let mut probs = vec![0f32; s * keys];
                let mut dropped = vec![0f32; s * keys];
                let mut dprobs = vec![0f32; s * keys];
                let (hid, hd) = (dims.hidden, dims.head);
                for h in 0..dims.heads {
                    probabilities(dims, block, &bias[..keys], h, &mut probs)?;
                    // The probabilities after dropout, as the forward pass used them.
                    let used = match &self.mask {
                        Some(mask) => {
                            dropped.copy_from_slice(&probs);
                            dims.apply_dropout(mask, &mut dropped, keys, b, h);
                            &dropped
                        }
                        None => &probs,
                    };
                    // dO for this head: `(seq, head)` of the `(seq, hidden)` gradient.
                    let gh = Mat {
                        data: &gb[h * hd..],
                        rows: s,
                        cols: hd,
                        rs: hid,
                        cs: 1,
                    };
                    let at = |part: Part| part as usize * hid + h * hd;
                    // dV = P_usedᵀ · dO
                    let pt = Mat::rows(used, s, keys).t();
                    matmul(
                        &mut db[at(Part::Value)..],
                        3 * hid,
                        1,
                        pt,
                        gh,
                        false,
                        1.0,
                        Threads::One,
                    )?;
                    // dP_used = dO · Vᵀ (as V·dOᵀ written column-major, see
                    // `probabilities`), then back through dropout and softmax.
                    let v = dims.head(block, Part::Value, h, keys);
                    matmul(&mut dprobs, 1, keys, v, gh.t(), false, 1.0, Threads::One)?;
                    if let Some(mask) = &self.mask {
                        dims.apply_dropout(mask, &mut dprobs, keys, b, h);
                    }
                    softmax::grad_rows_in_place(&probs, &mut dprobs, keys);
                    // dQ = scale · dS · K,  dK = scale · dSᵀ · Q
                    let ds = Mat::rows(&dprobs, s, keys);
                    let (k, q) = (
                        dims.head(block, Part::Key, h, keys),
                        dims.head(block, Part::Query, h, s),
                    );
                    matmul(
                        &mut db[at(Part::Query)..],
                        3 * hid,
                        1,
                        ds,
                        k,
                        false,
                        dims.scale(),
                        Threads::One,
                    )?;
                    matmul(
                        &mut db[at(Part::Key)..],
                        3 * hid,
                        1,
                        ds.t(),
                        q,
                        false,
                        dims.scale(),
                        Threads::One,
                    )?;
                }
                Ok(())
            })?;
        Ok(dqkv)
    }
}
