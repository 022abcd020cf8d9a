//! The NCCL process group (cargo feature `nccl`, which implies `cuda`):
//! one process per GPU, launched as `pretext train --world-size N --rank R`.
//! Rank 0 creates the NCCL id and writes it to a file the other ranks wait
//! for, as candle's multi-process example does.

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::cuda_backend::CudaStorage;
use candle_core::{bail, CpuStorage, CustomOp1, Device, Error, Layout, Result, Shape, Tensor};

use super::ProcessGroup;

/// A rank of an NCCL group.
pub struct Nccl {
    comm: Comm,
}

impl Nccl {
    /// Joins the group: rank 0 writes the id to `id_file`, the others read
    /// it (waiting up to two minutes for it to appear).
    pub fn join(device: &Device, rank: usize, world: usize, id_file: &Path) -> Result<Nccl> {
        let Device::Cuda(dev) = device else {
            bail!("NCCL needs a CUDA device (--device cuda:N)");
        };
        let id = if rank == 0 {
            let id = Id::new().map_err(|e| Error::Msg(format!("NCCL id: {e:?}")))?;
            let bytes: Vec<u8> = id.internal().iter().map(|&c| c as u8).collect();
            let tmp = id_file.with_extension("tmp");
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, id_file)?;
            id
        } else {
            let started = Instant::now();
            while !id_file.exists() {
                if started.elapsed() > Duration::from_secs(120) {
                    bail!(
                        "rank {rank}: no NCCL id in {} after 2 minutes",
                        id_file.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let bytes = std::fs::read(id_file)?;
            if bytes.len() != 128 {
                bail!("{}: not an NCCL id", id_file.display());
            }
            let mut internal = [0 as std::ffi::c_char; 128];
            for (d, b) in internal.iter_mut().zip(bytes) {
                *d = b as std::ffi::c_char;
            }
            Id::uninit(internal)
        };
        let comm = Comm::from_rank(dev.cuda_stream(), rank, world, id)
            .map_err(|e| Error::Msg(format!("NCCL init: {e:?}")))?;
        Ok(Nccl { comm })
    }
}

struct Collective<'c> {
    comm: &'c Comm,
    gather: bool,
}

impl CustomOp1 for Collective<'_> {
    fn name(&self) -> &'static str {
        if self.gather {
            "nccl-all-gather"
        } else {
            "nccl-all-reduce"
        }
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        bail!("NCCL collectives need CUDA tensors")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let Some((start, end)) = l.contiguous_offsets() else {
            bail!("NCCL collectives need contiguous tensors");
        };
        let src = s.as_cuda_slice::<f32>()?.slice(start..end);
        let dev = s.device().clone();
        let world = self.comm.world_size();
        let n = end - start;
        let err = |e| Error::Msg(format!("NCCL: {e:?}"));
        if self.gather {
            let mut dst = dev.alloc_zeros::<f32>(n * world)?;
            self.comm.all_gather(&src, &mut dst).map_err(err)?;
            let mut dims = l.shape().dims().to_vec();
            dims[0] *= world;
            Ok((CudaStorage::wrap_cuda_slice(dst, dev), Shape::from(dims)))
        } else {
            let mut dst = dev.alloc_zeros::<f32>(n)?;
            self.comm
                .all_reduce(&src, &mut dst, &ReduceOp::Sum)
                .map_err(err)?;
            Ok((CudaStorage::wrap_cuda_slice(dst, dev), l.shape().clone()))
        }
    }
}

impl ProcessGroup for Nccl {
    fn rank(&self) -> usize {
        self.comm.rank()
    }
    fn world_size(&self) -> usize {
        self.comm.world_size()
    }
    fn all_gather(&self, t: &Tensor) -> Result<Tensor> {
        t.contiguous()?.apply_op1_no_bwd(&Collective {
            comm: &self.comm,
            gather: true,
        })
    }
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        t.contiguous()?.apply_op1_no_bwd(&Collective {
            comm: &self.comm,
            gather: false,
        })
    }
}
