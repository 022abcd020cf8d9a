//! Topic groups for `batch.group_by = "cluster"`: the corpus embedded once
//! by the init model and split by spherical k-means, so every batch draws
//! its pairs from one cluster and its in-batch negatives share a topic
//! (cde, Arctic-embed: harder negatives at no mining cost).
//!
//! Lloyd's iterations, written here rather than taken from a crate: the
//! assignment step is the matrix product the rest of pretext already runs
//! on the training device, and the update a sum per cluster; the clustering
//! crates (linfa) would bring ndarray and a second copy of the embeddings.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use pretext_tasks::negatives::CorpusTexts;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rustc_hash::FxHashMap;

use crate::eval::embed_texts;
use crate::model::l2_normalize;
use crate::model::pretrained::Pretrained;
use crate::tokenize::Side;

/// Rows assigned at once: one block of scores on the device.
const BLOCK: usize = 8192;

/// The cluster of each row of `x` (`(n, dim)`, unit rows, any device):
/// `k` centres started at `k` distinct rows drawn with `seed`, moved
/// `iterations` times (or until no row changes cluster) to the normalised
/// mean of their rows. A centre left without rows keeps its place.
pub fn kmeans(x: &Tensor, k: usize, iterations: usize, seed: u64) -> Result<Vec<u32>> {
    let (n, dim) = x.dims2()?;
    if n == 0 || k == 0 {
        bail!("k-means needs rows and at least one cluster ({n} rows, k = {k})");
    }
    let k = k.min(n);
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(&mut rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed));
    let first = Tensor::from_slice(&order[..k], k, x.device())?;
    let mut centres = x.index_select(&first, 0)?;
    let rows = x.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
    let mut assigned = vec![u32::MAX; n];
    for _ in 0..iterations.max(1) {
        let mut changed = 0usize;
        for start in (0..n).step_by(BLOCK) {
            let len = BLOCK.min(n - start);
            let best = x
                .narrow(0, start, len)?
                .matmul(&centres.t()?)?
                .argmax(1)?
                .to_device(&Device::Cpu)?
                .to_vec1::<u32>()?;
            for (slot, b) in assigned[start..start + len].iter_mut().zip(best) {
                changed += usize::from(*slot != b);
                *slot = b;
            }
        }
        if changed == 0 {
            break;
        }
        let mut sums = centres
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let mut counts = vec![0usize; k];
        for &c in &assigned {
            counts[c as usize] += 1;
        }
        for (c, &count) in counts.iter().enumerate() {
            if count > 0 {
                sums[c * dim..(c + 1) * dim].fill(0.0);
            }
        }
        for (i, &c) in assigned.iter().enumerate() {
            let c = c as usize;
            for (s, v) in sums[c * dim..(c + 1) * dim]
                .iter_mut()
                .zip(&rows[i * dim..(i + 1) * dim])
            {
                *s += v;
            }
        }
        centres = l2_normalize(&Tensor::from_vec(sums, (k, dim), x.device())?)?;
    }
    Ok(assigned)
}

/// Each document's cluster, by corpus ordinal: `texts` embedded on the
/// document side by `model`, normalised, split into `k` clusters (0: one
/// per `batch` documents).
pub fn document_clusters(
    model: &Pretrained,
    texts: &CorpusTexts,
    k: usize,
    batch: usize,
    seed: u64,
) -> Result<FxHashMap<u64, u32>> {
    let refs: Vec<&str> = texts.texts.iter().map(String::as_str).collect();
    let e = embed_texts(model, &refs, Side::Document, 64, &mut |_| {})?;
    let k = match k {
        0 => (texts.len() / batch.max(1)).max(1),
        k => k,
    };
    let assigned = kmeans(&l2_normalize(&e)?, k, 20, seed)?;
    Ok(texts.ordinals.iter().copied().zip(assigned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    #[test]
    fn separates_well_apart_groups_and_is_seeded() {
        // Three directions, 30 noisy rows around each, interleaved.
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
        let dim = 8;
        let mut v = Vec::new();
        for i in 0..90 {
            let mut row: Vec<f32> = (0..dim)
                .map(|_| 0.1 * (rng.random::<f32>() - 0.5))
                .collect();
            row[i % 3] += 1.0;
            v.extend(row);
        }
        let x = l2_normalize(&Tensor::from_vec(v, (90, dim), &Device::Cpu).unwrap()).unwrap();
        let a = kmeans(&x, 3, 10, 7).unwrap();
        for i in 3..90 {
            assert_eq!(a[i], a[i % 3], "row {i}");
        }
        let mut distinct = a[..3].to_vec();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "{a:?}");
        assert_eq!(kmeans(&x, 3, 10, 7).unwrap(), a);
        // More clusters than rows: one row each at most, no error.
        let few = x.narrow(0, 0, 2).unwrap();
        assert_eq!(kmeans(&few, 5, 3, 0).unwrap().len(), 2);
        assert!(kmeans(&x, 0, 3, 0).is_err());
    }
}
