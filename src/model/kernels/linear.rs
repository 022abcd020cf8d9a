//! A dense layer, `x·Wᵀ + b`, as one op: the bias is written first and the
//! product added onto it, and the backward pass computes `dx`, `dW` and `db`
//! in one kernel. Composed, candle runs a matmul into a zero-filled buffer,
//! a broadcast add, and in backward two matmuls, a strided sum for the bias
//! and zero-filled accumulators for each.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{matmul, matmul_new, Mat, Threads};
use super::{contiguous_f32, fused_for, rows_per_reduction, sum_partials, unpack};

/// `x·Wᵀ (+ b)` over the last dimension of `x`, `W` of shape `(out, in)`
/// (Hugging Face's layout), `b` of `out`.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if fused_for(x) {
        let x = x.contiguous()?;
        return match bias {
            Some(b) => x.apply_op3(weight, b, Linear),
            None => x.apply_op2(weight, Linear),
        };
    }
    composed(x, weight, bias)
}

/// The same function from candle's ops (other devices, tests).
pub(super) fn composed(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (out, input) = weight.dims2()?;
    let mut dims = x.dims().to_vec();
    let rows = x.elem_count() / input.max(1);
    let y = x.reshape((rows, input))?.matmul(&weight.t()?)?;
    let y = match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    *dims.last_mut().expect("x has a last dimension") = out;
    y.reshape(dims)
}

struct Linear;

/// The gradient kernel: `(x, W, grad)` → packed `[dx | dW | db]`.
struct LinearGrad;

/// Rows, input width and output width of `x·Wᵀ`, checked.
fn dims(xl: &Layout, wl: &Layout) -> Result<(usize, usize, usize)> {
    let (out, input) = wl.shape().dims2()?;
    if xl.dims().last() != Some(&input) {
        candle_core::bail!(
            "linear: input {:?} does not fit weight {:?}",
            xl.shape(),
            wl.shape()
        );
    }
    Ok((xl.shape().elem_count() / input.max(1), input, out))
}

pub(super) fn forward(
    xs: &CpuStorage,
    xl: &Layout,
    ws: &CpuStorage,
    wl: &Layout,
    bias: Option<&[f32]>,
) -> Result<(CpuStorage, Shape)> {
    let x = contiguous_f32(xs, xl, "linear")?;
    let w = contiguous_f32(ws, wl, "linear")?;
    let (m, k, n) = dims(xl, wl)?;
    let (xm, wt) = (Mat::rows(x, m, k), Mat::rows(w, n, k).t());
    let y = match bias {
        Some(b) if b.len() == n => {
            let mut y = Vec::with_capacity(m * n);
            (0..m).for_each(|_| y.extend_from_slice(b));
            matmul(&mut y, n, 1, xm, wt, true, 1.0, Threads::All)?;
            y
        }
        Some(b) => candle_core::bail!("linear: bias of {} for {n} outputs", b.len()),
        None => matmul_new(xm, wt, Threads::All)?,
    };
    let mut shape = xl.dims().to_vec();
    *shape.last_mut().expect("checked") = n;
    Ok((CpuStorage::F32(y), Shape::from(shape)))
}

pub(super) fn backward(
    x: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
    bias: bool,
) -> Result<Vec<Option<Tensor>>> {
    let packed = x.apply_op3_no_bwd(weight, &grad.contiguous()?, &LinearGrad)?;
    let (out, input) = weight.dims2()?;
    let n = x.elem_count();
    let dw = packed.narrow(0, n, out * input)?.reshape((out, input))?;
    let db = packed.narrow(0, n + out * input, out)?;
    let dx = unpack(&packed, x, 0, 0)?.remove(0);
    Ok(vec![Some(dx), Some(dw), bias.then_some(db)])
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "fused-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        forward(xs, xl, ws, wl, None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let mut g = backward(x, weight, grad, false)?.into_iter();
        Ok((g.next().flatten(), g.next().flatten()))
    }
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "fused-linear"
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
        let b = contiguous_f32(bs, bl, "linear")?;
        forward(xs, xl, ws, wl, Some(b))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let mut g = backward(x, weight, grad, true)?.into_iter();
        Ok((g.next().flatten(), g.next().flatten(), g.next().flatten()))
    }
}

simd_kernel! {
    /// Adds the rows of `g` (width `n`) into `acc`.
    pub(super) fn add_rows(g: &[f32], acc: &mut [f32]) {
        for row in g.chunks_exact(acc.len()) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v;
            }
        }
    }
}

/// Column sums of a row-major `(rows, n)` matrix.
pub(super) fn column_sums(g: &[f32], n: usize) -> Vec<f32> {
    let step = rows_per_reduction(n) * n;
    sum_partials(
        g.par_chunks(step.max(1)).map(|c| {
            let mut acc = vec![0f32; n];
            add_rows(c, &mut acc);
            acc
        }),
        n,
    )
}

impl CustomOp3 for LinearGrad {
    fn name(&self) -> &'static str {
        "fused-linear-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl, self.name())?;
        let w = contiguous_f32(ws, wl, self.name())?;
        let g = contiguous_f32(gs, gl, self.name())?;
        let (m, k, n) = dims(xl, wl)?;
        if g.len() != m * n {
            candle_core::bail!("{}: gradient {:?} for {m}×{n}", self.name(), gl.shape());
        }
        let mut packed = vec![0f32; m * k + n * k + n];
        let (dx, rest) = packed.split_at_mut(m * k);
        let (dw, db) = rest.split_at_mut(n * k);
        let (gm, xm, wm) = (Mat::rows(g, m, n), Mat::rows(x, m, k), Mat::rows(w, n, k));
        matmul(dx, k, 1, gm, wm, false, 1.0, Threads::All)?;
        matmul(dw, k, 1, gm.t(), xm, false, 1.0, Threads::All)?;
        db.copy_from_slice(&column_sums(g, n));
        Ok((CpuStorage::F32(packed), Shape::from(m * k + n * k + n)))
    }
}
