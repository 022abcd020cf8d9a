//! The training step's element-wise updates of whole parameter tensors,
//! in place: AdamW's moments and step, MoCo's momentum update, and the sum
//! of squares behind gradient clipping.
//!
//! Composed from candle's ops, one AdamW update of a tensor is thirteen
//! passes over it, each allocating a new tensor of its size, and
//! `Var::set` copies the result back; at MiniLM's size (22 M parameters,
//! most in the word embeddings) that was 2.5× PyTorch's optimizer step
//! (docs/performance.md). Here it is three passes that write into the
//! variables themselves (candle's in-place custom ops) and allocate
//! nothing. Each element is computed alone, so the result does not depend
//! on how the work is split between threads.

use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Storage, Tensor, Var};
use rayon::prelude::*;

use super::{contiguous_f32, fused_for};

/// Elements per parallel task: small tensors (biases, layer norms) run on
/// the calling thread, the word embeddings on every core.
const CHUNK: usize = 1 << 15;

/// One AdamW step's constants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamWStep {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Learning rate of this step.
    pub lr: f64,
    /// Bias corrections `1 − β₁ᵗ` and `1 − β₂ᵗ`.
    pub bc1: f64,
    pub bc2: f64,
    /// What the weights are multiplied by before the step (`1 − lr·wd`, or
    /// 1 for parameters without weight decay).
    pub decay: f64,
    /// Gradient scale (the clipping factor).
    pub scale: f64,
}

/// `m ← β₁m + (1−β₁)·s·g`, `v ← β₂v + (1−β₂)·(s·g)²`, then
/// `w ← decay·w − lr·(m/bc1) / (√(v/bc2) + ε)`: AdamW with decoupled weight
/// decay, written into the three variables.
pub(crate) fn adamw(w: &Var, m: &Var, v: &Var, g: &Tensor, c: &AdamWStep) -> Result<()> {
    if fused_for(g) && [w, m, v].iter().all(|t| t.is_contiguous()) {
        let g = g.contiguous()?;
        let moment = |beta: f64, square| Ema {
            beta: beta as f32,
            rest: (1.0 - beta) as f32,
            scale: c.scale as f32,
            square,
        };
        m.as_tensor().inplace_op2(&g, &moment(c.beta1, false))?;
        v.as_tensor().inplace_op2(&g, &moment(c.beta2, true))?;
        return w.as_tensor().inplace_op3(
            m.as_tensor(),
            v.as_tensor(),
            &Apply {
                lr: c.lr as f32,
                inv_bc1: (1.0 / c.bc1) as f32,
                inv_bc2: (1.0 / c.bc2) as f32,
                eps: c.eps as f32,
                decay: c.decay as f32,
            },
        );
    }
    let (wt, mt, vt) = adamw_composed(w.as_tensor(), m.as_tensor(), v.as_tensor(), g, c)?;
    w.set(&wt)?;
    m.set(&mt)?;
    v.set(&vt)
}

/// The same update from candle's ops (other devices, other dtypes, tests):
/// the new weights and moments.
fn adamw_composed(
    w: &Tensor,
    m: &Tensor,
    v: &Tensor,
    g: &Tensor,
    c: &AdamWStep,
) -> Result<(Tensor, Tensor, Tensor)> {
    let g = (g * c.scale)?;
    let m = ((m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
    let v = ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
    let update = ((&m / c.bc1)? / ((&v / c.bc2)?.sqrt()? + c.eps)?)?;
    Ok((((w * c.decay)? - (update * c.lr)?)?, m, v))
}

/// `k ← m·k + (1 − m)·q` (MoCo's key encoder following the trained one).
pub(crate) fn lerp(k: &Var, q: &Tensor, m: f64) -> Result<()> {
    if fused_for(q) && k.is_contiguous() {
        let op = Ema {
            beta: m as f32,
            rest: (1.0 - m) as f32,
            scale: 1.0,
            square: false,
        };
        return k.as_tensor().inplace_op2(&q.contiguous()?, &op);
    }
    k.set(&((k.as_tensor() * m)? + (q * (1.0 - m))?)?)
}

/// `Σ g²` over every element, for the global gradient norm.
pub(crate) fn sum_squares(g: &Tensor) -> Result<f64> {
    if fused_for(g) {
        let g = g.contiguous()?;
        let (storage, layout) = g.storage_and_layout();
        if let Storage::Cpu(s) = &*storage {
            let x = contiguous_f32(s, layout, "sum_squares")?;
            // Partial sums in chunk order, so the total is the same bits
            // however rayon splits the chunks.
            let parts: Vec<f64> = x.par_chunks(CHUNK).map(chunk_squares).collect();
            return Ok(parts.iter().sum());
        }
    }
    Ok(g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64)
}

simd_kernel! {
    fn chunk_squares(x: &[f32]) -> f64 {
        let mut acc = [0f32; 16];
        let mut chunks = x.chunks_exact(16);
        for c in &mut chunks {
            for i in 0..16 {
                acc[i] += c[i] * c[i];
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
        acc.iter().map(|&a| a as f64).sum::<f64>() + tail as f64
    }
}

/// The mutable f32 elements of an in-place op's destination.
fn dst_f32<'a>(dst: &'a mut CpuStorage, layout: &Layout, op: &str) -> Result<&'a mut [f32]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: destination must be contiguous")))?;
    match dst {
        CpuStorage::F32(data) => Ok(&mut data[start..end]),
        _ => candle_core::bail!("{op}: destination must be f32"),
    }
}

/// An exponential moving average step, `x ← β·x + (1−β)·(s·g)` (or
/// `(s·g)²`): AdamW's two moments, and MoCo's momentum update (`s` = 1;
/// a product by 1 is exact, so it gives the composed op's bits).
struct Ema {
    beta: f32,
    /// `1 − β`, rounded from f64 as the composed op rounds it.
    rest: f32,
    scale: f32,
    square: bool,
}

impl InplaceOp2 for Ema {
    fn name(&self) -> &'static str {
        "moving-average"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, l: &Layout, g: &CpuStorage, gl: &Layout) -> Result<()> {
        let x = dst_f32(dst, l, self.name())?;
        let g = contiguous_f32(g, gl, self.name())?;
        x.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .for_each(|(x, g)| ema(x, g, self));
        Ok(())
    }
}

simd_kernel! {
    fn ema(x: &mut [f32], g: &[f32], c: &Ema) {
        let (beta, scale, rest) = (c.beta, c.scale, c.rest);
        if c.square {
            for (x, &g) in x.iter_mut().zip(g) {
                let g = g * scale;
                *x = *x * beta + g * g * rest;
            }
        } else {
            for (x, &g) in x.iter_mut().zip(g) {
                *x = *x * beta + g * scale * rest;
            }
        }
    }
}

/// AdamW's step from the updated moments.
struct Apply {
    lr: f32,
    /// `1 / bc`: candle divides a tensor by a number as a product with
    /// its inverse, and so does this, to give the same bits.
    inv_bc1: f32,
    inv_bc2: f32,
    eps: f32,
    decay: f32,
}

impl InplaceOp3 for Apply {
    fn name(&self) -> &'static str {
        "adamw-apply"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        l: &Layout,
        m: &CpuStorage,
        ml: &Layout,
        v: &CpuStorage,
        vl: &Layout,
    ) -> Result<()> {
        let w = dst_f32(dst, l, self.name())?;
        let m = contiguous_f32(m, ml, self.name())?;
        let v = contiguous_f32(v, vl, self.name())?;
        w.par_chunks_mut(CHUNK)
            .zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)))
            .for_each(|(w, (m, v))| apply(w, m, v, self));
        Ok(())
    }
}

simd_kernel! {
    fn apply(w: &mut [f32], m: &[f32], v: &[f32], c: &Apply) {
        for ((w, &m), &v) in w.iter_mut().zip(m).zip(v) {
            let update = (m * c.inv_bc1) / ((v * c.inv_bc2).sqrt() + c.eps);
            *w = *w * c.decay - update * c.lr;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn random(n: usize, seed: u64) -> Tensor {
        Tensor::rand(-1f32, 1f32, n, &Device::Cpu)
            .and_then(|t| t.affine(1.0 + seed as f64 * 0.1, 0.0))
            .unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// The in-place update equals the composed one bit for bit, over several steps,
    /// on a tensor larger than one chunk (so the parallel split is used)
    /// and one smaller, with and without decay.
    #[test]
    fn fused_adamw_equals_composed() {
        for (n, decay) in [(CHUNK * 3 + 17, 0.999), (37, 1.0)] {
            let start = random(n, 1);
            let (w, m, v) = (
                Var::from_tensor(&start).unwrap(),
                Var::zeros(n, DType::F32, &Device::Cpu).unwrap(),
                Var::zeros(n, DType::F32, &Device::Cpu).unwrap(),
            );
            let (mut cw, mut cm, mut cv) = (
                start.clone(),
                m.zeros_like().unwrap(),
                v.zeros_like().unwrap(),
            );
            for t in 1..=3 {
                let g = random(n, t);
                let c = AdamWStep {
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    lr: 1e-2,
                    bc1: 1.0 - 0.9f64.powi(t as i32),
                    bc2: 1.0 - 0.999f64.powi(t as i32),
                    decay,
                    scale: 0.5,
                };
                adamw(&w, &m, &v, &g, &c).unwrap();
                (cw, cm, cv) = adamw_composed(&cw, &cm, &cv, &g, &c).unwrap();
                // The same bits: the fused path changes no run's weights.
                assert_eq!(max_diff(m.as_tensor(), &cm), 0.0, "m, step {t}");
                assert_eq!(max_diff(v.as_tensor(), &cv), 0.0, "v, step {t}");
                assert_eq!(max_diff(w.as_tensor(), &cw), 0.0, "w, step {t}");
            }
            assert!(max_diff(w.as_tensor(), &start) > 1e-3, "the weights moved");
        }
    }

    #[test]
    fn fused_lerp_and_sum_squares_equal_composed() {
        let n = CHUNK * 2 + 5;
        let (k0, q) = (random(n, 1), random(n, 2));
        let k = Var::from_tensor(&k0).unwrap();
        lerp(&k, &q, 0.99).unwrap();
        let expect = ((&k0 * 0.99).unwrap() + (&q * 0.01).unwrap()).unwrap();
        assert_eq!(max_diff(k.as_tensor(), &expect), 0.0, "the same bits");
        let composed = |t: &Tensor| t.sqr()?.sum_all()?.to_scalar::<f32>().map(f64::from);
        // A strided view takes the same path through a contiguous copy.
        let strided = q
            .narrow(0, 0, 1000)
            .unwrap()
            .reshape((10, 100))
            .unwrap()
            .t()
            .unwrap();
        for t in [&q, &strided] {
            let (fused, want) = (sum_squares(t).unwrap(), composed(t).unwrap());
            assert!((fused - want).abs() < 1e-4 * want, "{fused} vs {want}");
        }
    }
}
