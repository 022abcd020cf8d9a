//! Dropout whose mask is a hash of (seed, element index): nothing is stored
//! between the forward and backward pass, no generator runs serially, and
//! the mask does not depend on how the work is split between threads.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, fused_for};

/// Which elements dropout keeps, and by how much it scales them.
#[derive(Debug, Clone, Copy)]
pub struct DropMask {
    seed: u64,
    /// Added to every element index: the place of this tensor's first
    /// element in the whole batch's tensor, when a chunk of the batch is
    /// encoded alone (GradCache), so the chunk is masked as it would be
    /// inside the whole batch.
    base: usize,
    /// An element is dropped when its 32-bit hash is below this.
    threshold: u32,
    scale: f32,
}

impl DropMask {
    /// Drops each element with probability `p` (in `[0, 1)`).
    pub fn new(p: f64, seed: u64) -> DropMask {
        DropMask {
            seed,
            base: 0,
            threshold: (p.clamp(0.0, 1.0) * u32::MAX as f64) as u32,
            scale: (1.0 / (1.0 - p)) as f32,
        }
    }

    /// A fresh mask for one dropout site in `mode` over a tensor of
    /// `elements`: a seed from the run's generator in training (when
    /// `p > 0`), none in evaluation.
    pub fn for_mode(mode: crate::model::layers::Mode, p: f64, elements: usize) -> Option<DropMask> {
        match mode {
            crate::model::layers::Mode::Train(rng) if p > 0.0 => Some(rng.mask(p, elements)),
            _ => None,
        }
    }

    /// The mask with element indices shifted by `base`.
    pub fn with_base(self, base: usize) -> DropMask {
        DropMask { base, ..self }
    }

    /// The factor element `index` is multiplied by: 0 or `1/(1-p)`.
    #[inline(always)]
    pub fn factor(&self, index: usize) -> f32 {
        // Two rounds of the `lowbias32` integer hash, keyed by each half of
        // the seed: 32-bit multiplies and shifts, which vectorise.
        let mut x = (index.wrapping_add(self.base) as u32) ^ (self.seed as u32);
        x = lowbias32(x) ^ ((self.seed >> 32) as u32);
        x = lowbias32(x);
        if x >= self.threshold {
            self.scale
        } else {
            0.0
        }
    }

    /// Multiplies `xs`, the elements from `start` on, by their factors.
    pub fn apply(&self, xs: &mut [f32], start: usize) {
        apply(self, xs, start)
    }
}

/// Chris Wellons' `lowbias32`: a bijective 32-bit hash with low bias.
#[inline(always)]
fn lowbias32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

simd_kernel! {
    fn apply(mask: &DropMask, xs: &mut [f32], start: usize) {
        for (i, x) in xs.iter_mut().enumerate() {
            *x *= mask.factor(start + i);
        }
    }
}

/// `x` with dropout applied by `mask` (forward and backward fused; the
/// caller checked the device).
pub(crate) fn dropout(x: &Tensor, mask: DropMask) -> Result<Tensor> {
    debug_assert!(fused_for(x));
    x.contiguous()?.apply_op1(Dropout(mask))
}

struct Dropout(DropMask);

impl Dropout {
    fn run(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, "dropout")?;
        let mut out = x.to_vec();
        const STEP: usize = 1 << 14;
        out.par_chunks_mut(STEP)
            .enumerate()
            .for_each(|(i, c)| self.0.apply(c, i * STEP));
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

impl CustomOp1 for Dropout {
    fn name(&self) -> &'static str {
        "fused-dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        self.run(s, l)
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // The gradient is masked and scaled exactly as the input was.
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Dropout(self.0))?))
    }
}
