//! The feed-forward block's bias add and exact (erf) GELU in one pass.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::math::{normal_cdf, normal_pdf};
use super::{contiguous_f32, fused_for, rows_per_reduction, rows_per_task, sum_partials, unpack};

/// `gelu(x + bias)` with the exact GELU `v·Φ(v)` (BERT's `gelu`), `bias`
/// the size of `x`'s last dimension.
pub fn bias_gelu(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if fused_for(x) {
        return x.contiguous()?.apply_op2(bias, BiasGelu);
    }
    composed(x, bias)
}

/// The same function from candle's primitive ops (other devices, tests).
pub(super) fn composed(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    x.broadcast_add(bias)?.gelu_erf()
}

/// `gelu(x·Wᵀ + b)` in one op whose GELU runs in place on the product's
/// fresh buffer: no second activation-sized buffer. Its backward pass
/// recomputes the product (the pre-activation is not kept), so it is for
/// passes that take no gradient, like encoding; training uses
/// [`super::linear`] then [`bias_gelu`].
pub fn dense_gelu(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if fused_for(x) {
        return x.contiguous()?.apply_op3(weight, bias, DenseGelu);
    }
    composed(&super::linear::composed(x, weight, None)?, bias)
}

struct BiasGelu;

struct DenseGelu;

/// The gradient kernel: `(x, bias, grad)` → packed `[dx | dbias]`.
struct BiasGeluGrad;

simd_kernel! {
    fn forward_rows(x: &[f32], bias: &[f32], out: &mut [f32]) {
        let w = bias.len();
        for (xr, yr) in x.chunks_exact(w).zip(out.chunks_exact_mut(w)) {
            for ((y, &v), &b) in yr.iter_mut().zip(xr).zip(bias) {
                let v = v + b;
                *y = v * normal_cdf(v);
            }
        }
    }
}

simd_kernel! {
    fn in_place_rows(y: &mut [f32], bias: &[f32]) {
        for row in y.chunks_exact_mut(bias.len()) {
            for (v, &b) in row.iter_mut().zip(bias) {
                let t = *v + b;
                *v = t * normal_cdf(t);
            }
        }
    }
}

simd_kernel! {
    /// `y = gelu(y)` in place (the int8 product's output, bias added).
    pub(super) fn in_place(y: &mut [f32]) {
        for v in y.iter_mut() {
            *v *= normal_cdf(*v);
        }
    }
}

simd_kernel! {
    fn backward_rows(x: &[f32], bias: &[f32], grad: &[f32], dx: &mut [f32], dbias: &mut [f32]) {
        let w = bias.len();
        for ((xr, gr), dr) in x
            .chunks_exact(w)
            .zip(grad.chunks_exact(w))
            .zip(dx.chunks_exact_mut(w))
        {
            for i in 0..w {
                let v = xr[i] + bias[i];
                let d = gr[i] * (normal_cdf(v) + v * normal_pdf(v));
                dr[i] = d;
                dbias[i] += d;
            }
        }
    }
}

fn check(op: &str, xl: &Layout, bl: &Layout) -> Result<usize> {
    let w = bl.shape().elem_count();
    if xl.dims().last() != Some(&w) {
        candle_core::bail!("{op}: last dimension of {:?} is not {w}", xl.shape());
    }
    Ok(w)
}

impl CustomOp2 for BiasGelu {
    fn name(&self) -> &'static str {
        "fused-bias-gelu"
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
        let w = check(self.name(), xl, bl)?;
        let mut out = vec![0f32; x.len()];
        let step = rows_per_task(x.len() / w.max(1), w) * w;
        out.par_chunks_mut(step)
            .zip(x.par_chunks(step))
            .for_each(|(o, xc)| forward_rows(xc, bias, o));
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let packed = x.apply_op3_no_bwd(bias, &grad.contiguous()?, &BiasGeluGrad)?;
        let mut parts = unpack(&packed, x, 1, bias.elem_count())?.into_iter();
        Ok((parts.next(), parts.next()))
    }
}

impl candle_core::CustomOp3 for BiasGeluGrad {
    fn name(&self) -> &'static str {
        "fused-bias-gelu-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl, self.name())?;
        let bias = contiguous_f32(bs, bl, self.name())?;
        let grad = contiguous_f32(gs, gl, self.name())?;
        let w = check(self.name(), xl, bl)?;
        let n = x.len();
        let mut packed = vec![0f32; n + w];
        let (dx, dbias) = packed.split_at_mut(n);
        let step = rows_per_reduction(w) * w;
        let partial = sum_partials(
            dx.par_chunks_mut(step)
                .zip(x.par_chunks(step))
                .zip(grad.par_chunks(step))
                .map(|((d, xc), gc)| {
                    let mut acc = vec![0f32; w];
                    backward_rows(xc, bias, gc, d, &mut acc);
                    acc
                }),
            w,
        );
        dbias.copy_from_slice(&partial);
        Ok((CpuStorage::F32(packed), Shape::from(n + w)))
    }
}

impl candle_core::CustomOp3 for DenseGelu {
    fn name(&self) -> &'static str {
        "fused-dense-gelu"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let bias = contiguous_f32(bs, bl, self.name())?;
        let (storage, shape) = super::linear::forward(xs, xl, ws, wl, None)?;
        let CpuStorage::F32(mut y) = storage else {
            candle_core::bail!("{}: expected f32", self.name());
        };
        let w = bias.len();
        if shape.dims().last() != Some(&w) {
            candle_core::bail!("{}: bias of {w} for {:?}", self.name(), shape);
        }
        let step = rows_per_task(y.len() / w.max(1), w) * w;
        y.par_chunks_mut(step).for_each(|c| in_place_rows(c, bias));
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let pre = super::linear::linear(&x.detach(), &weight.detach(), None)?;
        let packed = pre.apply_op3_no_bwd(bias, &grad.contiguous()?, &BiasGeluGrad)?;
        let mut parts = unpack(&packed, &pre, 1, bias.elem_count())?.into_iter();
        let (dpre, dbias) = (parts.next(), parts.next());
        let dpre = dpre.expect("unpack gives the input's gradient");
        let mut g = super::linear::backward(x, weight, &dpre, false)?.into_iter();
        Ok((g.next().flatten(), g.next().flatten(), dbias))
    }
}
