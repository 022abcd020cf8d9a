//! Layer normalisation over the last dimension, forward and backward in one
//! pass each.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::math::{dot, sum};
use super::{contiguous_f32, fused_for, rows_per_reduction, rows_per_task, sum_partials, unpack};

/// `(x - mean) / sqrt(var + eps) * gamma + beta` over the last dimension
/// of `x`; `gamma` and `beta` have that dimension's size.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    if fused_for(x) {
        return x.contiguous()?.apply_op3(gamma, beta, LayerNorm { eps });
    }
    composed(x, gamma, beta, eps)
}

/// The same function from candle's primitive ops (other devices, tests).
pub(super) fn composed(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(gamma)?
        .broadcast_add(beta)
}

struct LayerNorm {
    eps: f64,
}

/// The gradient kernel: `(x, gamma, grad)` → packed `[dx | dgamma | dbeta]`.
struct LayerNormGrad {
    eps: f64,
}

simd_kernel! {
    pub(super) fn forward_rows(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
        let w = gamma.len();
        for (xr, yr) in x.chunks_exact(w).zip(out.chunks_exact_mut(w)) {
            let mean = sum(xr) / w as f32;
            for (y, &v) in yr.iter_mut().zip(xr) {
                *y = v - mean;
            }
            let rstd = 1.0 / (dot(yr, yr) / w as f32 + eps).sqrt();
            for ((y, &g), &b) in yr.iter_mut().zip(gamma).zip(beta) {
                *y = *y * rstd * g + b;
            }
        }
    }
}

simd_kernel! {
    /// Writes `dx` for the rows of `x`/`grad` and adds their share of `dgamma`
    /// and `dbeta` into `dparams` (`[dgamma | dbeta]`).
    pub(super) fn backward_rows(
        x: &[f32],
        gamma: &[f32],
        grad: &[f32],
        eps: f32,
        dx: &mut [f32],
        dparams: &mut [f32],
    ) {
        let w = gamma.len();
        let (dgamma, dbeta) = dparams.split_at_mut(w);
        let mut gy = vec![0f32; w];
        for ((xr, gr), dr) in x
            .chunks_exact(w)
            .zip(grad.chunks_exact(w))
            .zip(dx.chunks_exact_mut(w))
        {
            let mean = sum(xr) / w as f32;
            for (d, &v) in dr.iter_mut().zip(xr) {
                *d = v - mean;
            }
            let rstd = 1.0 / (dot(dr, dr) / w as f32 + eps).sqrt();
            // dr now holds x̂; gy = grad · gamma.
            for d in dr.iter_mut() {
                *d *= rstd;
            }
            for ((y, &g), &gm) in gy.iter_mut().zip(gr).zip(gamma) {
                *y = g * gm;
            }
            let mean_gy = sum(&gy) / w as f32;
            let mean_gy_xhat = dot(&gy, dr) / w as f32;
            for i in 0..w {
                let xhat = dr[i];
                dgamma[i] += gr[i] * xhat;
                dbeta[i] += gr[i];
                dr[i] = rstd * (gy[i] - mean_gy - xhat * mean_gy_xhat);
            }
        }
    }
}

fn width(gamma: &Layout, x: &Layout, op: &str) -> Result<usize> {
    let w = gamma.shape().elem_count();
    if x.dims().last() != Some(&w) {
        candle_core::bail!("{op}: last dimension of {:?} is not {w}", x.shape());
    }
    Ok(w)
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl, self.name())?;
        let gamma = contiguous_f32(gs, gl, self.name())?;
        let beta = contiguous_f32(bs, bl, self.name())?;
        let w = width(gl, xl, self.name())?;
        let mut out = vec![0f32; x.len()];
        let step = rows_per_task(x.len() / w.max(1), w) * w;
        let eps = self.eps as f32;
        out.par_chunks_mut(step)
            .zip(x.par_chunks(step))
            .for_each(|(o, xc)| forward_rows(xc, gamma, beta, eps, o));
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let packed =
            x.apply_op3_no_bwd(gamma, &grad.contiguous()?, &LayerNormGrad { eps: self.eps })?;
        let mut parts = unpack(&packed, x, 2, gamma.elem_count())?.into_iter();
        let (dx, dgamma, dbeta) = (parts.next(), parts.next(), parts.next());
        Ok((dx, dgamma, dbeta))
    }
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "fused-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl, self.name())?;
        let gamma = contiguous_f32(gs, gl, self.name())?;
        let grad = contiguous_f32(ds, dl, self.name())?;
        let w = width(gl, xl, self.name())?;
        let n = x.len();
        let mut packed = vec![0f32; n + 2 * w];
        let (dx, dparams) = packed.split_at_mut(n);
        let step = rows_per_reduction(w) * w;
        let eps = self.eps as f32;
        let partial = sum_partials(
            dx.par_chunks_mut(step)
                .zip(x.par_chunks(step))
                .zip(grad.par_chunks(step))
                .map(|((d, xc), gc)| {
                    let mut acc = vec![0f32; 2 * w];
                    backward_rows(xc, gamma, gc, eps, d, &mut acc);
                    acc
                }),
            2 * w,
        );
        dparams.copy_from_slice(&partial);
        Ok((CpuStorage::F32(packed), Shape::from(n + 2 * w)))
    }
}
