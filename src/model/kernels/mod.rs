//! Fused CPU kernels for the ops BERT spends its non-matmul time in:
//! dense layers (matmul + bias), multi-head attention, layer norm, the
//! attention softmax (with the padding bias), bias + GELU and dropout; for
//! the training step's in-place updates (AdamW, MoCo's momentum); and int8
//! dense layers for inference ([`int8`]).
//!
//! Composed from candle's primitive ops, each of these is five to ten passes
//! over memory, each pass a tensor allocation, and as many more in the
//! backward pass (where candle also zero-fills a buffer for every
//! gradient). Here each is one [`candle_core::CustomOp2`]/`CustomOp3` with
//! its own backward, one pass each way, vectorised for the CPU it runs on.
//!
//! Other devices (and dtypes other than f32) take the composed path, which
//! computes the same function: the model code calls these functions and
//! never asks which device it is on. Tests check each fused op against its
//! composed version, values and gradients.

/// Compiles a kernel three times, for AVX-512, for AVX2 + FMA and for the
/// baseline (NEON on aarch64, where it is the baseline), and calls the one
/// [`simd::level`] picks: the best the CPU has, or the one
/// `PRETEXT_SIMD` forces (how the tests run every path on one machine).
/// The kernels are plain loops the compiler vectorises for each target.
macro_rules! simd_kernel {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? $body
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? $body
                match $crate::model::kernels::simd::level() {
                    // SAFETY: `level` returns a level only when the CPU has it.
                    $crate::model::kernels::simd::Level::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::model::kernels::simd::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::model::kernels::simd::Level::Baseline => {}
                }
            }
            #[inline(always)]
            fn baseline($($arg: $ty),*) $(-> $ret)? $body
            baseline($($arg),*)
        }
    };
}

mod attention;
mod dropout;
mod gelu;
mod gemm;
pub mod int8;
mod layer_norm;
mod linear;
pub(crate) mod math;
mod residual_norm;
pub mod simd;
mod softmax;
#[cfg(test)]
mod tests;
pub(crate) mod update;

use candle_core::{CpuStorage, DType, Layout, Result, Storage, Tensor};
use rayon::iter::IndexedParallelIterator;

pub use attention::attention;
pub(crate) use dropout::dropout;
pub use dropout::DropMask;
pub use gelu::{bias_gelu, dense_gelu};
pub use layer_norm::layer_norm;
pub use linear::linear;
pub use residual_norm::residual_norm;

/// Whether `x` takes the fused path: on the CPU, in f32.
pub(crate) fn fused_for(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// The f32 elements of a contiguous CPU tensor.
fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

/// The contiguous f32 elements of a CPU tensor, for `f` (backward passes
/// read their inputs this way when they are more than a custom op takes).
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(contiguous_f32(s, layout, "fused kernel")?),
        _ => candle_core::bail!("fused kernel: a tensor is not on the CPU"),
    }
}

/// Element-wise sum of the per-task partial vectors of length `len` (the
/// parameter gradients each parallel task accumulates over its rows), added
/// in task order: with tasks of [`rows_per_reduction`] rows the sum is the
/// same bits whatever the thread count and however rayon splits the work
/// (its `reduce` combines partials in an order that depends on stealing).
fn sum_partials(parts: impl IndexedParallelIterator<Item = Vec<f32>>, len: usize) -> Vec<f32> {
    let parts: Vec<Vec<f32>> = parts.collect();
    let mut total = vec![0f32; len];
    for part in &parts {
        total.iter_mut().zip(part).for_each(|(x, y)| *x += y);
    }
    total
}

/// Rows per parallel task: enough tasks to balance the threads, each big
/// enough (about 16k elements) that scheduling costs nothing. For passes
/// without a reduction across rows only: the split depends on the thread
/// count.
fn rows_per_task(rows: usize, width: usize) -> usize {
    let by_size = (16_384 / width.max(1)).max(1);
    let by_count = rows.div_ceil(4 * rayon::current_num_threads()).max(1);
    by_size.min(by_count).max(1)
}

/// Rows per task of a pass that sums across rows (parameter gradients):
/// fixed by the width alone (about 16k elements), so the partial sums, and
/// their rounding, never depend on the machine's thread count and a
/// resumed run on another machine reaches the same weights.
fn rows_per_reduction(width: usize) -> usize {
    (16_384 / width.max(1)).max(1)
}

/// Splits a packed gradient `[d_input | d_param...]` (one buffer, so that a
/// single backward kernel can write every gradient it computes) into the
/// input's gradient, shaped like `input`, and parameter gradients of
/// `param_len` elements each.
fn unpack(packed: &Tensor, input: &Tensor, params: usize, param_len: usize) -> Result<Vec<Tensor>> {
    let n = input.elem_count();
    let mut out = vec![packed.narrow(0, 0, n)?.reshape(input.shape())?];
    for i in 0..params {
        out.push(packed.narrow(0, n + i * param_len, param_len)?);
    }
    Ok(out)
}
