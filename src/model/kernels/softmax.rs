//! Attention's softmax, with the additive padding bias folded in, as row
//! kernels the fused attention op runs on its scratch matrices: one pass
//! forward (bias, max, exp, sum, scale) and one backward.

use candle_core::{Result, Tensor, D};

use super::math::{dot, exp, max};

/// `softmax(scores + bias)` over the last dimension from candle's ops: the
/// composed attention's softmax (other devices, tests).
pub(super) fn composed(scores: &Tensor, bias: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax(&scores.broadcast_add(bias)?, D::Minus1)
}

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
