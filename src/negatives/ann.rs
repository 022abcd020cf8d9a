//! Approximate nearest-neighbour search over corpus embeddings, for
//! corpora past exact search (the FAISS role in the seed survey): an HNSW
//! graph from the `usearch` crate, built in parallel over rayon's threads,
//! saved beside the embedding cache and memory-mapped back, so a second
//! mining run neither encodes nor links again.
//!
//! The graph only proposes candidates: their scores are recomputed from
//! the embeddings themselves, so an ANN hit carries the same dot product an
//! exact search gives it, and the margin rules of mining read the same
//! numbers whichever index found the candidate.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use pretext_tasks::negatives::{AnnConfig, AnnScalar, Candidate};
use rayon::prelude::*;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::dense::Embeddings;

/// An HNSW graph over the rows of an [`Embeddings`], keyed by row number.
pub struct AnnIndex {
    index: Index,
}

impl AnnIndex {
    /// Links every row of `docs` into a new graph, rows in parallel;
    /// `progress` hears how many rows are in after each round of them.
    ///
    /// Parallel insertion makes the graph depend on the threads' timing, so
    /// two builds may return a different last few neighbours; a saved
    /// index ([`AnnIndex::cached`]) answers the same on every run.
    pub fn build(
        docs: &Embeddings,
        config: &AnnConfig,
        progress: &mut dyn FnMut(usize),
    ) -> Result<AnnIndex> {
        if docs.rows() == 0 {
            bail!("no documents to index");
        }
        let options = IndexOptions {
            dimensions: docs.dim(),
            metric: MetricKind::IP,
            quantization: match config.scalar {
                AnnScalar::F32 => ScalarKind::F32,
                AnnScalar::F16 => ScalarKind::F16,
                AnnScalar::I8 => ScalarKind::I8,
            },
            connectivity: config.connectivity,
            expansion_add: config.expansion_add,
            expansion_search: config.expansion_search,
            multi: false,
        };
        let index = Index::new(&options).context("creating the HNSW index")?;
        index
            .reserve_capacity_and_threads(docs.rows(), rayon::current_num_threads().max(1))
            .context("reserving the HNSW index")?;
        // Rounds of rows, each linked in parallel, so progress is told
        // from this thread between rounds.
        const ROUND: usize = 16_384;
        for start in (0..docs.rows()).step_by(ROUND) {
            let end = (start + ROUND).min(docs.rows());
            (start..end)
                .into_par_iter()
                .with_min_len(64)
                .try_for_each(|i| -> Result<()> {
                    index
                        .add(i as u64, docs.row(i))
                        .with_context(|| format!("adding vector {i} to the HNSW index"))
                })?;
            progress(end);
        }
        Ok(AnnIndex { index })
    }

    /// The saved graph at `path`, memory-mapped, checked against the
    /// embeddings it indexes.
    pub fn open(path: &Path, docs: &Embeddings) -> Result<AnnIndex> {
        let name = path.to_str().context("the index path is not UTF-8")?;
        let index = Index::restore_view(name)
            .with_context(|| format!("mapping the HNSW index {}", path.display()))?;
        if index.size() != docs.rows() || index.dimensions() != docs.dim() {
            bail!(
                "{}: the HNSW index holds {} vectors of {} dimensions, the embeddings {} of {} (delete it to rebuild)",
                path.display(),
                index.size(),
                index.dimensions(),
                docs.rows(),
                docs.dim()
            );
        }
        Ok(AnnIndex { index })
    }

    /// The graph saved at `path` if there is one, else built, written
    /// (temporary name, then renamed, as the embedding cache is) and
    /// mapped back. The second value says whether it was found.
    pub fn cached(
        path: &Path,
        docs: &Embeddings,
        config: &AnnConfig,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(AnnIndex, bool)> {
        if path.exists() {
            return Ok((AnnIndex::open(path, docs)?, true));
        }
        let built = AnnIndex::build(docs, config, progress)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("usearch.tmp");
        let name = tmp.to_str().context("the index path is not UTF-8")?;
        built
            .index
            .save(name)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok((AnnIndex::open(path, docs)?, false))
    }

    /// Vectors in the graph.
    pub fn len(&self) -> usize {
        self.index.size()
    }

    /// Whether the graph is empty (it never is once built).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `k` best rows of `docs` for each query by dot product as the
    /// graph finds them, scored from `docs` (the rows the graph was built
    /// on), best first, ties to the lower row. `queries` is `(n, dim)` on
    /// any device; the search beam is `config.expansion_search`, raised to
    /// `k`.
    pub fn top_k(
        &self,
        queries: &Tensor,
        docs: &Embeddings,
        k: usize,
        config: &AnnConfig,
    ) -> Result<Vec<Vec<Candidate>>> {
        let (nq, dim) = queries.dims2()?;
        if dim != docs.dim() || dim != self.index.dimensions() {
            bail!(
                "queries are {dim}-dimensional, the indexed embeddings {}",
                self.index.dimensions()
            );
        }
        let k = k.min(docs.rows());
        if k == 0 {
            return Ok(vec![Vec::new(); nq]);
        }
        self.index
            .change_expansion_search(config.expansion_search.max(k));
        let q = queries
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        q.par_chunks(dim.max(1))
            .map(|query| {
                let found = self
                    .index
                    .search(query, k)
                    .context("searching the HNSW index")?;
                let mut hits: Vec<Candidate> = found
                    .keys
                    .iter()
                    .map(|&key| Candidate {
                        item: key as u32,
                        score: dot(query, docs.row(key as usize)),
                    })
                    .collect();
                hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
                Ok(hits)
            })
            .collect()
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight running sums: the compiler vectorises it, as it would not a
    // single chained sum of floats.
    let mut acc = [0f32; 8];
    let (ca, ta) = a.as_chunks::<8>();
    let (cb, tb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ta.iter().zip(tb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// The name of the graph over the cached embeddings `key` with `config`,
/// beside them in the cache folder.
pub fn cache_name(key: &str, config: &AnnConfig) -> String {
    let scalar = match config.scalar {
        AnnScalar::F32 => "",
        AnnScalar::F16 => "-f16",
        AnnScalar::I8 => "-i8",
    };
    format!(
        "{key}-hnsw-m{}-ef{}{scalar}.usearch",
        config.connectivity, config.expansion_add
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::negatives::dense::{top_k, Blocks};
    use rand::{RngExt, SeedableRng};

    /// Clustered unit vectors: real embeddings' neighbours are found by
    /// following a graph because they cluster; uniform noise does not.
    fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
        let centres: Vec<f32> = (0..20 * dim).map(|_| rng.random::<f32>() - 0.5).collect();
        let mut v = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let c = rng.random_range(0..20);
            let row: Vec<f32> = (0..dim)
                .map(|d| centres[c * dim + d] + 0.3 * (rng.random::<f32>() - 0.5))
                .collect();
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.extend(row.iter().map(|x| x / norm));
        }
        v
    }

    fn recall(got: &[Vec<Candidate>], want: &[Vec<Candidate>]) -> f64 {
        let mut found = 0usize;
        let mut total = 0usize;
        for (g, w) in got.iter().zip(want) {
            let truth: std::collections::HashSet<u32> = w.iter().map(|c| c.item).collect();
            found += g.iter().filter(|c| truth.contains(&c.item)).count();
            total += w.len();
        }
        found as f64 / total as f64
    }

    #[test]
    fn finds_most_true_neighbours_with_their_exact_scores() {
        let (n, nq, dim, k) = (3000, 50, 32, 20);
        let docs = Embeddings::new(clustered(n, dim, 1), n, dim).unwrap();
        let q = Tensor::from_vec(clustered(nq, dim, 2), (nq, dim), &Device::Cpu).unwrap();
        let config = AnnConfig::default();
        let mut seen = 0;
        let index = AnnIndex::build(&docs, &config, &mut |n| seen = n).unwrap();
        assert_eq!((index.len(), seen), (n, n));
        let got = index.top_k(&q, &docs, k, &config).unwrap();
        let want = top_k(&q, &docs, k, Blocks::default(), &Device::Cpu).unwrap();
        let r = recall(&got, &want);
        assert!(r >= 0.95, "recall@{k} {r}");
        for hits in &got {
            assert_eq!(hits.len(), k);
            assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        }
        // A hit's score is its dot product, as exact search reports it.
        let exact: std::collections::HashMap<(usize, u32), f32> = want
            .iter()
            .enumerate()
            .flat_map(|(qi, hs)| hs.iter().map(move |c| ((qi, c.item), c.score)))
            .collect();
        let mut compared = 0;
        for (qi, hits) in got.iter().enumerate() {
            for c in hits {
                if let Some(s) = exact.get(&(qi, c.item)) {
                    assert!((s - c.score).abs() < 1e-5, "{s} vs {}", c.score);
                    compared += 1;
                }
            }
        }
        assert!(compared > nq * k / 2);
        // Graphs of half- and 8-bit vectors find most too, scored in f32.
        for scalar in [AnnScalar::F16, AnnScalar::I8] {
            let c = AnnConfig { scalar, ..config };
            let small = AnnIndex::build(&docs, &c, &mut |_| {}).unwrap();
            let got = small.top_k(&q, &docs, k, &c).unwrap();
            let r = recall(&got, &want);
            assert!(r >= 0.8, "{scalar:?}: recall@{k} {r}");
        }
        // A beam too narrow finds fewer: the setting is applied.
        let narrow = AnnConfig {
            expansion_search: 1,
            ..config
        };
        let few = index.top_k(&q, &docs, 1, &narrow).unwrap();
        assert!(few.iter().all(|h| h.len() == 1));
    }

    #[test]
    fn a_saved_index_maps_back_with_the_same_answers_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (n, dim) = (500, 16);
        let docs = Embeddings::new(clustered(n, dim, 3), n, dim).unwrap();
        let q = Tensor::from_vec(clustered(10, dim, 4), (10, dim), &Device::Cpu).unwrap();
        let config = AnnConfig::default();
        let path = dir.path().join("c").join(cache_name("k", &config));
        let (first, found) = AnnIndex::cached(&path, &docs, &config, &mut |_| {}).unwrap();
        assert!(!found && path.exists());
        let (again, found) = AnnIndex::cached(&path, &docs, &config, &mut |_| {}).unwrap();
        assert!(found);
        let a = first.top_k(&q, &docs, 10, &config).unwrap();
        let b = again.top_k(&q, &docs, 10, &config).unwrap();
        assert_eq!(a, b);
        // Other embeddings than the graph's: refused, naming the file.
        let other = Embeddings::new(clustered(n - 1, dim, 3), n - 1, dim).unwrap();
        let e = AnnIndex::open(&path, &other).err().unwrap().to_string();
        assert!(e.contains(".usearch") && e.contains("499"), "{e}");
        // A file that is no index: an error, not a crash.
        let junk = dir.path().join("junk.usearch");
        std::fs::write(&junk, b"not an index").unwrap();
        assert!(AnnIndex::open(&junk, &docs).is_err());
        // Queries of another width: refused.
        let wide = Tensor::zeros((1, dim + 1), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(first.top_k(&wide, &docs, 5, &config).is_err());
    }
}
