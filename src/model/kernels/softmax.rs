//! Attention's softmax, with the additive padding bias folded in: one pass
//! forward (bias, max, exp, sum, scale) and one backward.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::math::{dot, exp, max};
use super::{contiguous_f32, fused_for, rows_per_task};

/// `softmax(scores + bias)` over the last dimension, for attention scores
/// `(batch, heads, queries, keys)` and a bias `(batch, 1, 1, keys)` (0 for
/// tokens, a large negative number for padding). Only `scores` gets a
/// gradient: the bias comes from the mask.
pub fn softmax_with_bias(scores: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if fused_for(scores) {
        return scores
            .contiguous()?
            .apply_op2(&bias.contiguous()?.detach(), SoftmaxBias);
    }
    composed(scores, bias)
}

/// The same function from candle's primitive ops (other devices, tests).
pub(super) fn composed(scores: &Tensor, bias: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax(&scores.broadcast_add(bias)?, D::Minus1)
}

struct SoftmaxBias;

/// The gradient kernel: `(probs, grad)` → `probs · (grad - Σ grad·probs)`.
struct SoftmaxGrad;

simd_kernel! {
    /// `softmax(row + bias)` for each row of `rows`, in place.
    pub(super) fn rows_in_place(rows: &mut [f32], bias: &[f32]) {
        let w = bias.len();
        for yr in rows.chunks_exact_mut(w) {
            for (y, &b) in yr.iter_mut().zip(bias) {
                *y += b;
            }
            let m = max(yr);
            let mut total = 0f32;
            let mut acc = [0f32; 16];
            let mut chunks = yr.chunks_exact_mut(16);
            for c in &mut chunks {
                for i in 0..16 {
                    c[i] = exp(c[i] - m);
                    acc[i] += c[i];
                }
            }
            for y in chunks.into_remainder() {
                *y = exp(*y - m);
                total += *y;
            }
            let inv = 1.0 / (total + acc.iter().sum::<f32>());
            for y in yr.iter_mut() {
                *y *= inv;
            }
        }
    }
}

simd_kernel! {
    /// Softmax's backward pass, in place: each row of `grad` becomes
    /// `probs · (grad - Σ grad·probs)`.
    pub(super) fn grad_rows_in_place(probs: &[f32], grad: &mut [f32], w: usize) {
        for (pr, dr) in probs.chunks_exact(w).zip(grad.chunks_exact_mut(w)) {
            let s = dot(pr, dr);
            for (d, &p) in dr.iter_mut().zip(pr) {
                *d = p * (*d - s);
            }
        }
    }
}

impl CustomOp2 for SoftmaxBias {
    fn name(&self) -> &'static str {
        "fused-softmax-bias"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl, self.name())?;
        let bias = contiguous_f32(bs, bl, self.name())?;
        let (batch, heads, queries, keys) = xl.shape().dims4()?;
        if bias.len() != batch * keys {
            candle_core::bail!(
                "{}: bias {:?} does not fit scores {:?}",
                self.name(),
                bl.shape(),
                xl.shape()
            );
        }
        let mut out = vec![0f32; x.len()];
        // Tasks never straddle two batch items, so each sees one bias row.
        let per_item = heads * queries;
        let rows = rows_per_task(batch * per_item, keys);
        let rows = (1..=rows).rev().find(|r| per_item % r == 0).unwrap_or(1);
        let step = rows * keys;
        out.par_chunks_mut(step)
            .zip(x.par_chunks(step))
            .enumerate()
            .for_each(|(task, (o, xc))| {
                let item = task * rows / per_item;
                o.copy_from_slice(xc);
                rows_in_place(o, &bias[item * keys..(item + 1) * keys])
            });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        _scores: &Tensor,
        _bias: &Tensor,
        probs: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = probs.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad)?;
        Ok((Some(dx), None))
    }
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "fused-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        ps: &CpuStorage,
        pl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let probs = contiguous_f32(ps, pl, self.name())?;
        let grad = contiguous_f32(gs, gl, self.name())?;
        let w = *pl.dims().last().unwrap_or(&1);
        let mut out = grad.to_vec();
        let step = rows_per_task(probs.len() / w.max(1), w) * w;
        out.par_chunks_mut(step)
            .zip(probs.par_chunks(step))
            .for_each(|(o, p)| grad_rows_in_place(p, o, w));
        Ok((CpuStorage::F32(out), pl.shape().clone()))
    }
}
