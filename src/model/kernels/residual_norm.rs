//! The end of every BERT sub-layer, `LayerNorm(dropout(y + b) + residual)`,
//! as one op: `y` is a dense layer's product without its bias. Composed, it
//! is a bias add, a dropout, a residual add and a layer norm, four tensors
//! and four passes each way (and candle zero-fills and adds a gradient
//! buffer for each input of each); here one pass each way, nothing stored
//! but the inputs.

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::dropout::DropMask;
use super::layer_norm;
use super::{contiguous_f32, fused_for, rows_per_reduction, rows_per_task, with_f32};
use crate::model::layers::Mode;

/// `LayerNorm(dropout(y + bias) + residual)` over the last dimension, the
/// dropout (`p`) on in training mode only.
#[allow(clippy::too_many_arguments)]
pub fn residual_norm(
    y: &Tensor,
    bias: &Tensor,
    residual: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    mode: Mode,
    p: f64,
) -> Result<Tensor> {
    if fused_for(y) {
        let mask = DropMask::for_mode(mode, p, y.elem_count());
        // One parameter tensor, so the op has three inputs; candle's `cat`
        // hands each parameter its slice of the gradient.
        let params = Tensor::cat(&[bias, gamma, beta], 0)?;
        return y.contiguous()?.apply_op3(
            &residual.contiguous()?,
            &params,
            ResidualNorm { eps, mask },
        );
    }
    composed(y, bias, residual, gamma, beta, eps, |t| mode.dropout(t, p))
}

/// The same function from candle's ops, dropout applied by `dropout`
/// (other devices, tests).
#[allow(clippy::too_many_arguments)]
pub(super) fn composed(
    y: &Tensor,
    bias: &Tensor,
    residual: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    dropout: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let pre = (dropout(&y.broadcast_add(bias)?)? + residual)?;
    layer_norm::composed(&pre, gamma, beta, eps)
}

struct ResidualNorm {
    eps: f64,
    mask: Option<DropMask>,
}

simd_kernel! {
    /// The layer norm's input for rows starting at element `start`:
    /// `dropout(y + bias) + residual`.
    fn pre_activation(
        y: &[f32],
        residual: &[f32],
        bias: &[f32],
        mask: Option<&DropMask>,
        start: usize,
        out: &mut [f32],
    ) {
        for (o, yr) in out
            .chunks_exact_mut(bias.len())
            .zip(y.chunks_exact(bias.len()))
        {
            for ((o, &v), &b) in o.iter_mut().zip(yr).zip(bias) {
                *o = v + b;
            }
        }
        if let Some(mask) = mask {
            mask.apply(out, start);
        }
        for (o, &r) in out.iter_mut().zip(residual) {
            *o += r;
        }
    }
}

impl ResidualNorm {
    fn width(&self, yl: &Layout, rl: &Layout, pl: &Layout) -> Result<usize> {
        let w = pl.shape().elem_count() / 3;
        if yl.shape() != rl.shape()
            || yl.dims().last() != Some(&w)
            || 3 * w != pl.shape().elem_count()
        {
            candle_core::bail!(
                "residual-norm: y {:?}, residual {:?}, parameters {:?}",
                yl.shape(),
                rl.shape(),
                pl.shape()
            );
        }
        Ok(w)
    }

    /// `[d_residual | d_bias, d_gamma, d_beta | d_y (with dropout only)]`.
    fn backward(&self, y: &[f32], r: &[f32], params: &[f32], g: &[f32]) -> Result<Vec<f32>> {
        let w = params.len() / 3;
        let (bias, gamma) = (&params[..w], &params[w..2 * w]);
        let n = y.len();
        let extra = if self.mask.is_some() { n } else { 0 };
        let mut packed = vec![0f32; n + 3 * w + extra];
        let (dpre, rest) = packed.split_at_mut(n);
        let (dparams, dy) = rest.split_at_mut(3 * w);
        let step = rows_per_reduction(w) * w;
        let mask = self.mask.as_ref();
        let eps = self.eps as f32;
        let sums = dpre
            .par_chunks_mut(step)
            .enumerate()
            .map(|(task, d)| {
                let start = task * step;
                let range = start..start + d.len();
                let mut pre = vec![0f32; d.len()];
                pre_activation(
                    &y[range.clone()],
                    &r[range.clone()],
                    bias,
                    mask,
                    start,
                    &mut pre,
                );
                // [dbias | dgamma | dbeta]; the layer norm fills the last two.
                let mut acc = vec![0f32; 3 * w];
                layer_norm::backward_rows(&pre, gamma, &g[range], eps, d, &mut acc[w..]);
                // d(y + b) is d_pre through the dropout mask.
                pre.copy_from_slice(d);
                if let Some(mask) = mask {
                    mask.apply(&mut pre, start);
                }
                super::linear::add_rows(&pre, &mut acc[..w]);
                (task, pre, acc)
            })
            .collect::<Vec<_>>();
        for (task, dy_chunk, acc) in sums {
            dparams.iter_mut().zip(&acc).for_each(|(a, b)| *a += b);
            if !dy.is_empty() {
                dy[task * step..task * step + dy_chunk.len()].copy_from_slice(&dy_chunk);
            }
        }
        Ok(packed)
    }
}

impl CustomOp3 for ResidualNorm {
    fn name(&self) -> &'static str {
        "fused-residual-norm"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        rs: &CpuStorage,
        rl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = contiguous_f32(ys, yl, self.name())?;
        let r = contiguous_f32(rs, rl, self.name())?;
        let params = contiguous_f32(ps, pl, self.name())?;
        let w = self.width(yl, rl, pl)?;
        let (bias, gamma, beta) = (&params[..w], &params[w..2 * w], &params[2 * w..]);
        let mut out = vec![0f32; y.len()];
        let step = rows_per_task(y.len() / w.max(1), w) * w;
        let eps = self.eps as f32;
        out.par_chunks_mut(step).enumerate().for_each(|(task, o)| {
            let start = task * step;
            let range = start..start + o.len();
            let mut pre = vec![0f32; o.len()];
            pre_activation(
                &y[range.clone()],
                &r[range],
                bias,
                self.mask.as_ref(),
                start,
                &mut pre,
            );
            layer_norm::forward_rows(&pre, gamma, beta, eps, o);
        });
        Ok((CpuStorage::F32(out), yl.shape().clone()))
    }

    fn bwd(
        &self,
        y: &Tensor,
        residual: &Tensor,
        params: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let packed = with_f32(y, |yv| {
            with_f32(residual, |rv| {
                with_f32(params, |pv| {
                    with_f32(&grad, |gv| self.backward(yv, rv, pv, gv))
                })
            })
        })?;
        let n = y.elem_count();
        let p = params.elem_count();
        let packed = Tensor::from_vec(
            packed,
            n + p + if self.mask.is_some() { n } else { 0 },
            &Device::Cpu,
        )?;
        let dres = packed.narrow(0, 0, n)?.reshape(y.shape())?;
        let dparams = packed.narrow(0, n, p)?;
        let dy = match self.mask {
            Some(_) => packed.narrow(0, n + p, n)?.reshape(y.shape())?,
            None => dres.clone(),
        };
        Ok((Some(dy), Some(dres), Some(dparams)))
    }
}
