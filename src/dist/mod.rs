//! Several devices training one model: a `ProcessGroup` gathers each rank's
//! embeddings (cross-batch negatives, as RocketQA) and sums gradients.
//!
//! Each rank encodes its own share of the global batch, gathers everyone's
//! embeddings, and computes the loss of the *whole* batch with its own
//! share live (carrying gradients) and the others' detached. The loss is
//! then the same number on every rank, and each rank's gradient is the
//! part of the full gradient that flows through its own share; an
//! all-reduce sum of the gradients gives every rank the exact gradient of
//! one process training on the global batch. No collective runs inside the
//! backward pass, so the scheme is the same for threads and for NCCL.

#[cfg(feature = "nccl")]
pub mod nccl;
mod threads;

use candle_core::{Result, Tensor};

pub use threads::ThreadGroup;

/// Collectives over the ranks of a run.
pub trait ProcessGroup {
    /// This process's rank, `0..world_size`.
    fn rank(&self) -> usize;
    /// Ranks in the run.
    fn world_size(&self) -> usize;
    /// Every rank's `t` (same shape on every rank), concatenated along the
    /// first dimension in rank order.
    fn all_gather(&self, t: &Tensor) -> Result<Tensor>;
    /// The element-wise sum of every rank's `t`.
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor>;
}

/// One process, one device: collectives are the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Single;

impl ProcessGroup for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_gather(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.clone())
    }
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.clone())
    }
}

/// The gathered tensor with this rank's rows replaced by the live `local`
/// (so gradients flow through this rank's share only).
pub fn gather_with_grad(group: &dyn ProcessGroup, local: &Tensor) -> Result<Tensor> {
    let world = group.world_size();
    if world == 1 {
        return Ok(local.clone());
    }
    let all = group.all_gather(&local.detach())?;
    let n = local.dim(0)?;
    let r = group.rank();
    let mut parts = Vec::with_capacity(3);
    if r > 0 {
        parts.push(all.narrow(0, 0, r * n)?);
    }
    parts.push(local.clone());
    if r + 1 < world {
        parts.push(all.narrow(0, (r + 1) * n, (world - r - 1) * n)?);
    }
    Tensor::cat(&parts, 0)
}

#[cfg(test)]
mod tests;
