//! Multi-head scaled dot-product attention as one op, on the `(batch, seq,
//! hidden)` outputs of the query, key and value layers.
//!
//! Composed, attention splits the heads into copies, multiplies each of
//! `batch × heads` small matrices with all threads (candle's batched matmul
//! synchronises the threads once per matrix), keeps the probability matrix
//! for backward and merges the heads into another copy. Here each thread
//! takes whole batch items, reads the heads in place through strides,
//! writes the merged output directly, and the backward pass recomputes the
//! probabilities instead of storing them (as FlashAttention does): one
//! `(seq × seq)` scratch matrix per thread instead of `batch × heads` of
//! them kept for the whole step.

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

use super::dropout::DropMask;
use super::gemm::{matmul, Mat, Threads};
use super::{contiguous_f32, fused_for, softmax};
use crate::model::layers::Mode;

/// `softmax(Q·Kᵀ/√d + bias)·V` per head, `q`, `k`, `v` of shape `(batch, seq,
/// hidden)`, `bias` `(batch, 1, 1, seq)` (0 on tokens, large negative on
/// padding); in training mode the probabilities go through dropout `p`.
/// Returns `(batch, seq, hidden)` with the heads side by side.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    heads: usize,
    mode: Mode,
    p: f64,
) -> Result<Tensor> {
    let (_, _, hidden) = q.dims3()?;
    if heads == 0 || !hidden.is_multiple_of(heads) {
        candle_core::bail!("attention: {hidden} is not a multiple of {heads} heads");
    }
    if fused_for(q) {
        let mask = match mode {
            Mode::Train(rng) if p > 0.0 => Some(DropMask::new(p, rng.next_seed())),
            _ => None,
        };
        let op = Attention {
            heads,
            bias: bias.contiguous()?.detach(),
            mask,
        };
        return q
            .contiguous()?
            .apply_op3(&k.contiguous()?, &v.contiguous()?, op);
    }
    composed(q, k, v, bias, heads, |probs| mode.dropout(probs, p))
}

/// The same function from candle's ops, dropout applied by `dropout`
/// (other devices, tests).
pub(super) fn composed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    heads: usize,
    dropout: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let (b, s, h) = q.dims3()?;
    let d = h / heads;
    let split = |x: &Tensor| -> Result<Tensor> {
        x.reshape((b, s, heads, d))?.transpose(1, 2)?.contiguous()
    };
    let q = (split(q)? * (1.0 / (d as f64).sqrt()))?;
    let scores = q.matmul(&split(k)?.t()?)?;
    let probs = dropout(&softmax::composed(&scores, bias)?)?;
    probs
        .matmul(&split(v)?)?
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

impl Dims {
    fn of(l: &Layout, heads: usize) -> Result<Dims> {
        let (batch, seq, hidden) = l.shape().dims3()?;
        Ok(Dims {
            batch,
            seq,
            hidden,
            heads,
            head: hidden / heads,
        })
    }

    fn item(&self) -> usize {
        self.seq * self.hidden
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head as f32).sqrt()
    }

    /// Head `h` of a batch item's `(seq, hidden)` block, as `(seq, head)`.
    fn head<'a>(&self, block: &'a [f32], h: usize) -> Mat<'a> {
        Mat {
            data: &block[h * self.head..],
            rows: self.seq,
            cols: self.head,
            rs: self.hidden,
            cs: 1,
        }
    }
}

/// The contiguous f32 elements of a CPU tensor, for `f`.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(contiguous_f32(s, layout, "attention")?),
        _ => candle_core::bail!("attention: fused kernel on a non-CPU tensor"),
    }
}

/// `softmax(scale·Q_h·K_hᵀ + bias)` into `probs` (row-major `seq × seq`).
fn probabilities(
    dims: &Dims,
    qb: &[f32],
    kb: &[f32],
    bias: &[f32],
    h: usize,
    probs: &mut [f32],
) -> Result<()> {
    let (qh, kh) = (dims.head(qb, h), dims.head(kb, h));
    matmul(
        probs,
        dims.seq,
        1,
        qh,
        kh.t(),
        false,
        dims.scale(),
        Threads::One,
    )?;
    softmax::rows_in_place(probs, bias);
    Ok(())
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let q = contiguous_f32(qs, ql, self.name())?;
        let k = contiguous_f32(ks, kl, self.name())?;
        let v = contiguous_f32(vs, vl, self.name())?;
        let dims = Dims::of(ql, self.heads)?;
        if kl.shape() != ql.shape() || vl.shape() != ql.shape() {
            candle_core::bail!("attention: q, k, v shapes differ");
        }
        let s = dims.seq;
        let mut out = vec![0f32; q.len()];
        with_f32(&self.bias, |bias| {
            if bias.len() != dims.batch * s {
                candle_core::bail!(
                    "attention: bias {:?} for {:?}",
                    self.bias.shape(),
                    ql.shape()
                );
            }
            out.par_chunks_mut(dims.item())
                .enumerate()
                .try_for_each(|(b, ob)| -> Result<()> {
                    let block = b * dims.item()..(b + 1) * dims.item();
                    let (qb, kb, vb) = (&q[block.clone()], &k[block.clone()], &v[block]);
                    let bias = &bias[b * s..(b + 1) * s];
                    let mut probs = vec![0f32; s * s];
                    for h in 0..dims.heads {
                        probabilities(&dims, qb, kb, bias, h, &mut probs)?;
                        if let Some(mask) = &self.mask {
                            mask.apply(&mut probs, (b * dims.heads + h) * s * s);
                        }
                        let p = Mat::rows(&probs, s, s);
                        let dst = &mut ob[h * dims.head..];
                        matmul(
                            dst,
                            dims.hidden,
                            1,
                            p,
                            dims.head(vb, h),
                            false,
                            1.0,
                            Threads::One,
                        )?;
                    }
                    Ok(())
                })
        })?;
        Ok((CpuStorage::F32(out), ql.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dims = Dims::of(q.layout(), self.heads)?;
        let n = q.elem_count();
        let packed = with_f32(q, |q| {
            with_f32(k, |k| {
                with_f32(v, |v| {
                    with_f32(&grad, |g| {
                        with_f32(&self.bias, |bias| self.backward(&dims, q, k, v, g, bias))
                    })
                })
            })
        })?;
        let packed = Tensor::from_vec(packed, 3 * n, &Device::Cpu)?;
        let part = |i: usize| packed.narrow(0, i * n, n)?.reshape(q.shape());
        Ok((Some(part(0)?), Some(part(1)?), Some(part(2)?)))
    }
}

impl Attention {
    /// `[dq | dk | dv]`, each `(batch, seq, hidden)`.
    fn backward(
        &self,
        dims: &Dims,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        g: &[f32],
        bias: &[f32],
    ) -> Result<Vec<f32>> {
        let n = q.len();
        let s = dims.seq;
        let mut packed = vec![0f32; 3 * n];
        let (dq, rest) = packed.split_at_mut(n);
        let (dk, dv) = rest.split_at_mut(n);
        dq.par_chunks_mut(dims.item())
            .zip(dk.par_chunks_mut(dims.item()))
            .zip(dv.par_chunks_mut(dims.item()))
            .enumerate()
            .try_for_each(|(b, ((dqb, dkb), dvb))| -> Result<()> {
                let block = b * dims.item()..(b + 1) * dims.item();
                let (qb, kb, vb, gb) = (
                    &q[block.clone()],
                    &k[block.clone()],
                    &v[block.clone()],
                    &g[block],
                );
                let bias = &bias[b * s..(b + 1) * s];
                let mut probs = vec![0f32; s * s];
                let mut dropped = vec![0f32; s * s];
                let mut dprobs = vec![0f32; s * s];
                for h in 0..dims.heads {
                    probabilities(dims, qb, kb, bias, h, &mut probs)?;
                    let start = (b * dims.heads + h) * s * s;
                    // The probabilities after dropout, as the forward pass used them.
                    let used = match &self.mask {
                        Some(mask) => {
                            dropped.copy_from_slice(&probs);
                            mask.apply(&mut dropped, start);
                            &dropped
                        }
                        None => &probs,
                    };
                    let off = h * dims.head;
                    let gh = dims.head(gb, h);
                    // dV = P_usedᵀ · dO
                    matmul(
                        &mut dvb[off..],
                        dims.hidden,
                        1,
                        Mat::rows(used, s, s).t(),
                        gh,
                        false,
                        1.0,
                        Threads::One,
                    )?;
                    // dP_used = dO · Vᵀ, then back through dropout and softmax.
                    matmul(
                        &mut dprobs,
                        s,
                        1,
                        gh,
                        dims.head(vb, h).t(),
                        false,
                        1.0,
                        Threads::One,
                    )?;
                    if let Some(mask) = &self.mask {
                        mask.apply(&mut dprobs, start);
                    }
                    softmax::grad_rows_in_place(&probs, &mut dprobs, s);
                    // dQ = scale · dS · K,  dK = scale · dSᵀ · Q
                    let ds = Mat::rows(&dprobs, s, s);
                    matmul(
                        &mut dqb[off..],
                        dims.hidden,
                        1,
                        ds,
                        dims.head(kb, h),
                        false,
                        dims.scale(),
                        Threads::One,
                    )?;
                    matmul(
                        &mut dkb[off..],
                        dims.hidden,
                        1,
                        ds.t(),
                        dims.head(qb, h),
                        false,
                        dims.scale(),
                        Threads::One,
                    )?;
                }
                Ok(())
            })?;
        Ok(packed)
    }
}
