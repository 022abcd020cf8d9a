//! The key queue of MoCo (He et al., 2020) and of the memory bank (Wu et
//! al., 2018): a ring buffer of past keys kept on the device. Enqueueing
//! writes one batch in place; the queue is never copied whole.

use candle_core::{DType, Device, Result, Tensor};

/// A ring buffer of `capacity` keys of width `dim`.
pub struct KeyQueue {
    keys: Tensor,
    capacity: usize,
    next: usize,
    filled: usize,
}

impl KeyQueue {
    /// An empty queue. `capacity` must be a multiple of the batch size so a
    /// batch never wraps around the end (checked by the caller's config).
    pub fn new(capacity: usize, dim: usize, device: &Device) -> Result<KeyQueue> {
        Ok(KeyQueue {
            keys: Tensor::zeros((capacity, dim), DType::F32, device)?,
            capacity,
            next: 0,
            filled: 0,
        })
    }

    /// Keys currently held, `(filled, dim)` (a view, no copy).
    pub fn keys(&self) -> Result<Tensor> {
        self.keys.narrow(0, 0, self.filled)
    }

    /// How many keys are held.
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// Capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Share of the queue filled.
    pub fn fill_ratio(&self) -> f64 {
        self.filled as f64 / self.capacity.max(1) as f64
    }

    /// Writes `batch` (`(b, dim)`, detached) over the oldest keys.
    pub fn enqueue(&mut self, batch: &Tensor) -> Result<()> {
        let b = batch.dim(0)?;
        if b > self.capacity || !self.capacity.is_multiple_of(b) {
            candle_core::bail!(
                "queue size {} is not a multiple of the batch {b}",
                self.capacity
            );
        }
        self.keys
            .slice_set(&batch.detach().contiguous()?, 0, self.next)?;
        self.next = (self.next + b) % self.capacity;
        self.filled = (self.filled + b).min(self.capacity);
        Ok(())
    }

    /// The state for a checkpoint: keys, write position, fill.
    pub fn state(&self) -> (&Tensor, usize, usize) {
        (&self.keys, self.next, self.filled)
    }

    /// Restores a checkpointed state.
    pub fn restore(&mut self, keys: &Tensor, next: usize, filled: usize) -> Result<()> {
        self.keys
            .slice_set(&keys.to_device(self.keys.device())?, 0, 0)?;
        self.next = next;
        self.filled = filled;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffer_overwrites_the_oldest() {
        let mut q = KeyQueue::new(4, 1, &Device::Cpu).unwrap();
        assert_eq!(q.keys().unwrap().dim(0).unwrap(), 0);
        for i in 0..3 {
            let b = Tensor::new(&[[2.0 * i as f32], [2.0 * i as f32 + 1.0]], &Device::Cpu).unwrap();
            q.enqueue(&b).unwrap();
        }
        let held: Vec<f32> = q.keys().unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(held, [4.0, 5.0, 2.0, 3.0]);
        assert_eq!(q.fill_ratio(), 1.0);
        let odd = Tensor::zeros((3, 1), DType::F32, &Device::Cpu).unwrap();
        assert!(q.enqueue(&odd).is_err());
    }
}
