//! Exact dense search over corpus embeddings held in memory or mapped from
//! the embedding cache: documents in blocks, so memory is one block of
//! scores and one block of vectors on the device, whatever the corpus size.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use memmap2::Mmap;
use pretext_tasks::negatives::Candidate;
use rayon::prelude::*;

/// Row-major `f32` embeddings of a corpus.
pub struct Embeddings {
    data: Storage,
    rows: usize,
    dim: usize,
}

enum Storage {
    Owned(Vec<f32>),
    /// A cache file: the vectors start at `offset` bytes.
    Mapped {
        map: Mmap,
        offset: usize,
    },
}

impl Embeddings {
    /// Wraps vectors in memory.
    pub fn new(data: Vec<f32>, rows: usize, dim: usize) -> Result<Embeddings> {
        if data.len() != rows * dim {
            bail!("{} floats are not {rows} x {dim}", data.len());
        }
        Ok(Embeddings {
            data: Storage::Owned(data),
            rows,
            dim,
        })
    }

    /// Wraps a mapped file whose vectors start at `offset` (4-byte aligned).
    pub fn mapped(map: Mmap, offset: usize, rows: usize, dim: usize) -> Result<Embeddings> {
        // Checked: the sizes come from a file header and may be anything.
        let bytes = rows
            .checked_mul(dim)
            .and_then(|n| n.checked_mul(4))
            .and_then(|n| n.checked_add(offset));
        if bytes != Some(map.len()) || !offset.is_multiple_of(4) {
            bail!(
                "the embedding file holds {} bytes, not {rows} x {dim} floats",
                map.len().saturating_sub(offset)
            );
        }
        Ok(Embeddings {
            data: Storage::Mapped { map, offset },
            rows,
            dim,
        })
    }

    /// From a `(rows, dim)` tensor on any device.
    pub fn from_tensor(t: &Tensor) -> Result<Embeddings> {
        let (rows, dim) = t.dims2()?;
        let data = t.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        Embeddings::new(data, rows, dim)
    }

    /// Vectors.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// All floats, row-major.
    pub fn as_slice(&self) -> &[f32] {
        match &self.data {
            Storage::Owned(v) => v,
            Storage::Mapped { map, offset } => bytemuck::cast_slice(&map[*offset..]),
        }
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.as_slice()[i * self.dim..(i + 1) * self.dim]
    }

    /// Rows `start .. start + len` as a tensor on `device`.
    pub fn block(&self, start: usize, len: usize, device: &Device) -> Result<Tensor> {
        let s = &self.as_slice()[start * self.dim..(start + len) * self.dim];
        Ok(Tensor::from_slice(s, (len, self.dim), device)?)
    }
}

/// Sizes of the blocks of an exact search.
#[derive(Debug, Clone, Copy)]
pub struct Blocks {
    /// Queries scored at once.
    pub queries: usize,
    /// Documents scored at once.
    pub docs: usize,
}

impl Default for Blocks {
    fn default() -> Self {
        Blocks {
            queries: 1024,
            docs: 8192,
        }
    }
}

/// A candidate ordered so that a max-heap keeps the worst on top.
#[derive(PartialEq)]
struct Worst(Candidate);

impl Eq for Worst {}

impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        // Lower score is "greater" (on top); among equal scores the higher
        // document number goes first, so ties keep the lower number.
        other
            .0
            .score
            .total_cmp(&self.0.score)
            .then(self.0.item.cmp(&other.0.item))
    }
}

/// The `k` best documents of each query by dot product, best first (ties
/// to the lower document number). `queries` is `(n, dim)` on `device`.
pub fn top_k(
    queries: &Tensor,
    docs: &Embeddings,
    k: usize,
    blocks: Blocks,
    device: &Device,
) -> Result<Vec<Vec<Candidate>>> {
    let (nq, dim) = queries.dims2()?;
    if dim != docs.dim() {
        bail!(
            "queries are {dim}-dimensional, the corpus embeddings {}",
            docs.dim()
        );
    }
    let k = k.min(docs.rows());
    let mut out = Vec::with_capacity(nq);
    for qs in (0..nq).step_by(blocks.queries.max(1)) {
        let qlen = blocks.queries.min(nq - qs);
        let q = queries.narrow(0, qs, qlen)?;
        let mut heaps: Vec<BinaryHeap<Worst>> = (0..qlen)
            .map(|_| BinaryHeap::with_capacity(k + 1))
            .collect();
        for ds in (0..docs.rows()).step_by(blocks.docs.max(1)) {
            let dlen = blocks.docs.min(docs.rows() - ds);
            let d = docs.block(ds, dlen, device)?;
            let scores = q.matmul(&d.t()?)?;
            with_host_scores(&scores, |scores| {
                heaps
                    .par_iter_mut()
                    .zip(scores.par_chunks(dlen))
                    .for_each(|(heap, row)| push_row(heap, row, ds, k));
            })?;
        }
        out.extend(heaps.into_iter().map(|h| {
            let mut v: Vec<Candidate> = h.into_iter().map(|w| w.0).collect();
            v.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
            v
        }));
    }
    Ok(out)
}

/// Runs `f` on a block's scores, row-major, as host floats. On the CPU the
/// matrix product's own buffer is read in place: copying 32 MB of scores a
/// block cost as much as a tenth of the product itself. Elsewhere the block
/// is copied to the host once.
fn with_host_scores(scores: &Tensor, f: impl FnOnce(&[f32])) -> Result<()> {
    if scores.device().is_cpu() && scores.is_contiguous() {
        let (storage, layout) = scores.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((start, end))) =
            (&*storage, layout.contiguous_offsets())
        {
            f(&cpu.as_slice::<f32>()?[start..end]);
            return Ok(());
        }
    }
    f(&scores
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?);
    Ok(())
}

/// Scores compared with the heap's worst at once: once the heap is full
/// almost no score enters it, and a chunk with none above the worst is
/// passed over in a few vector instructions instead of one branch a score.
const SCAN: usize = 16;

fn push_row(heap: &mut BinaryHeap<Worst>, row: &[f32], offset: usize, k: usize) {
    if k == 0 {
        return;
    }
    let push = |heap: &mut BinaryHeap<Worst>, j: usize, score: f32| {
        let c = Candidate {
            item: (offset + j) as u32,
            score,
        };
        if heap.len() < k {
            heap.push(Worst(c));
        } else if let Some(worst) = heap.peek() {
            // Strictly better only: on equal scores the earlier (lower)
            // document already in the heap stays.
            if score > worst.0.score {
                heap.pop();
                heap.push(Worst(c));
            }
        }
    };
    let mut j = 0;
    // Until the heap is full every score enters it.
    while j < row.len() && heap.len() < k {
        push(heap, j, row[j]);
        j += 1;
    }
    let worst = |heap: &BinaryHeap<Worst>| heap.peek().map_or(f32::NEG_INFINITY, |w| w.0.score);
    let mut floor = worst(heap);
    let (chunks, tail) = row[j..].as_chunks::<SCAN>();
    for chunk in chunks {
        // `>` as the heap's own test: a NaN or a tie never enters.
        if chunk.iter().fold(false, |any, &s| any | (s > floor)) {
            for (l, &score) in chunk.iter().enumerate() {
                if score > floor {
                    push(heap, j + l, score);
                    floor = worst(heap);
                }
            }
        }
        j += SCAN;
    }
    for (l, &score) in tail.iter().enumerate() {
        push(heap, j + l, score);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn blocked_search_matches_brute_force() {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(5);
        let (n, nq, dim) = (1000, 37, 16);
        let docs: Vec<f32> = (0..n * dim).map(|_| rng.random::<f32>() - 0.5).collect();
        let qv: Vec<f32> = (0..nq * dim).map(|_| rng.random::<f32>() - 0.5).collect();
        let emb = Embeddings::new(docs.clone(), n, dim).unwrap();
        let q = Tensor::from_vec(qv.clone(), (nq, dim), &Device::Cpu).unwrap();
        let blocks = Blocks {
            queries: 10,
            docs: 96,
        };
        let got = top_k(&q, &emb, 25, blocks, &Device::Cpu).unwrap();
        for (qi, hits) in got.iter().enumerate() {
            let mut all: Vec<(f32, usize)> = (0..n)
                .map(|d| {
                    let s: f32 = (0..dim).map(|x| qv[qi * dim + x] * docs[d * dim + x]).sum();
                    (s, d)
                })
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0));
            let want: Vec<usize> = all[..25].iter().map(|x| x.1).collect();
            let have: Vec<usize> = hits.iter().map(|c| c.item as usize).collect();
            assert_eq!(have, want, "query {qi}");
            assert!((hits[0].score - all[0].0).abs() < 1e-4);
        }
    }

    /// The heap update before the chunked scan: every score tested.
    fn push_row_plain(heap: &mut BinaryHeap<Worst>, row: &[f32], offset: usize, k: usize) {
        for (j, &score) in row.iter().enumerate() {
            let c = Worst(Candidate {
                item: (offset + j) as u32,
                score,
            });
            if heap.len() < k {
                heap.push(c);
            } else if heap.peek().is_some_and(|w| score > w.0.score) {
                heap.pop();
                heap.push(c);
            }
        }
    }

    #[test]
    fn the_chunked_scan_keeps_what_testing_every_score_keeps() {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(9);
        for round in 0..200 {
            // Scores on a coarse grid: many ties, across chunk edges too.
            let len = rng.random_range(0..300);
            let k = rng.random_range(1..40);
            let rows: Vec<Vec<f32>> = (0..3)
                .map(|_| {
                    (0..len)
                        .map(|_| (rng.random_range(0..12) as f32) / 4.0)
                        .collect()
                })
                .collect();
            let (mut fast, mut plain) = (BinaryHeap::new(), BinaryHeap::new());
            for (b, row) in rows.iter().enumerate() {
                push_row(&mut fast, row, b * len, k);
                push_row_plain(&mut plain, row, b * len, k);
            }
            let sorted = |h: BinaryHeap<Worst>| {
                let mut v: Vec<(u32, u32)> = h
                    .into_iter()
                    .map(|w| (w.0.item, w.0.score.to_bits()))
                    .collect();
                v.sort();
                v
            };
            assert_eq!(
                sorted(fast),
                sorted(plain),
                "round {round}, k {k}, len {len}"
            );
        }
    }

    #[test]
    fn ties_keep_the_lower_document_and_k_is_capped() {
        let emb = Embeddings::new(vec![1.0; 10], 10, 1).unwrap();
        let q = Tensor::from_vec(vec![1.0f32], (1, 1), &Device::Cpu).unwrap();
        let blocks = Blocks {
            queries: 1,
            docs: 3,
        };
        let got = top_k(&q, &emb, 4, blocks, &Device::Cpu).unwrap();
        let items: Vec<u32> = got[0].iter().map(|c| c.item).collect();
        assert_eq!(items, vec![0, 1, 2, 3]);
        assert_eq!(
            top_k(&q, &emb, 50, blocks, &Device::Cpu).unwrap()[0].len(),
            10
        );
    }
}
