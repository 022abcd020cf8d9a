//! Ranks as threads of one process, for tests: collectives meet at a
//! barrier and exchange tensors through shared slots.

use std::sync::{Arc, Barrier, Mutex};

use candle_core::{Device, Result, Tensor};

use super::ProcessGroup;

struct Shared {
    barrier: Barrier,
    slots: Mutex<Vec<Option<Tensor>>>,
}

/// One rank's handle of an in-process group.
#[derive(Clone)]
pub struct ThreadGroup {
    rank: usize,
    world: usize,
    shared: Arc<Shared>,
}

impl ThreadGroup {
    /// Handles for ranks `0..world`, one per thread.
    pub fn new(world: usize) -> Vec<ThreadGroup> {
        let shared = Arc::new(Shared {
            barrier: Barrier::new(world),
            slots: Mutex::new(vec![None; world]),
        });
        (0..world)
            .map(|rank| ThreadGroup {
                rank,
                world,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Everyone's tensor, in rank order; every rank must call it.
    fn exchange(&self, t: &Tensor) -> Result<Vec<Tensor>> {
        let cpu = t.to_device(&Device::Cpu)?;
        self.shared.slots.lock().expect("slots")[self.rank] = Some(cpu);
        self.shared.barrier.wait();
        let all: Vec<Tensor> = self
            .shared
            .slots
            .lock()
            .expect("slots")
            .iter()
            .map(|s| s.clone().expect("every rank wrote its slot"))
            .collect();
        // Nobody writes the next round before everyone has read this one.
        self.shared.barrier.wait();
        all.iter().map(|x| x.to_device(t.device())).collect()
    }
}

impl ProcessGroup for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn all_gather(&self, t: &Tensor) -> Result<Tensor> {
        Tensor::cat(&self.exchange(t)?, 0)
    }
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        let all = self.exchange(t)?;
        let mut sum = all[0].clone();
        for x in &all[1..] {
            sum = (sum + x)?;
        }
        Ok(sum)
    }
}
