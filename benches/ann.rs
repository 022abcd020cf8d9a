//! Approximate against exact dense search at corpus scale: an HNSW graph
//! (`negatives.index = "ann"`, the `usearch` crate) over 1M vectors of 384
//! dimensions, against the exact blocked search (`negatives::top_k`) in the
//! same run: the graph's build time (parallel), queries per second of each
//! and recall@100 against the exact lists, per search beam. The graph is
//! saved and searched memory-mapped, as `pretext mine` searches it.
//!
//! The vectors are synthetic, because no corpus of a million embeddings
//! ships, but shaped like real ones: all-MiniLM-L6-v2's embeddings of the
//! shipped corpus put 39 %, 55 %, 71 % and 87 % of their variance in their
//! top 16, 32, 64 and 128 principal directions; the generator's spectrum
//! (variance `k^-0.55 e^(-k/110)` along axis `k`) puts 40 %, 56 %, 73 % and
//! 88 % there. Half of each axis's variance is between 1,000 cluster
//! centres, half within a cluster; vectors are normalised. Uniform noise,
//! whose variance is spread evenly over all 384 axes, is no fair test:
//! no index beats exact search on it.
//!
//! `cargo bench --bench ann` (1M vectors, ~15 min on 2 cores);
//! `ANN_ROWS=100000` picks another size, `ANN_EF=100,128,192,256` the beams,
//! `ANN_GRAPH=FILE` keeps the graph there (a rerun maps it back instead of
//! building it; its build time is then not measured).

use std::time::Instant;

#[global_allocator]
static GLOBAL: pretext::alloc::Allocator = mimalloc::MiMalloc;

use candle_core::{Device, Tensor};
use pretext::negatives::{top_k, AnnIndex, Blocks, Embeddings};
use pretext::pretext_tasks::negatives::{AnnConfig, AnnScalar, Candidate};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

const DIM: usize = 384;
const CENTRES: usize = 1000;
const QUERIES: usize = 1000;
const K: usize = 100;

/// Standard deviation along each axis: the spectrum described above.
fn spread() -> Vec<f32> {
    (1..=DIM)
        .map(|k| ((k as f32).powf(-0.55) * (-(k as f32) / 110.0).exp()).sqrt())
        .collect()
}

/// `rows` unit vectors of the clustered distribution described above.
fn vectors(rows: usize, seed: u64, centres: &[f32]) -> Vec<f32> {
    use rand::RngExt;
    let spread = spread();
    let half = 0.5f32.sqrt();
    let mut out = Vec::with_capacity(rows * DIM);
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut row = vec![0f32; DIM];
    for _ in 0..rows {
        let c = rng.random_range(0..CENTRES);
        for (d, x) in row.iter_mut().enumerate() {
            let g: f32 = StandardNormal.sample(&mut rng);
            *x = spread[d] * half * (centres[c * DIM + d] + g);
        }
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        out.extend(row.iter().map(|v| v / norm));
    }
    out
}

fn recall(got: &[Vec<Candidate>], want: &[Vec<Candidate>]) -> f64 {
    let mut found = 0;
    for (g, w) in got.iter().zip(want) {
        let truth: std::collections::HashSet<u32> = w.iter().map(|c| c.item).collect();
        found += g.iter().filter(|c| truth.contains(&c.item)).count();
    }
    found as f64 / (want.len() * K) as f64
}

fn main() {
    let rows: usize = std::env::var("ANN_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let beams: Vec<usize> = std::env::var("ANN_EF")
        .unwrap_or_else(|_| "100,128,192,256".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let threads = rayon::current_num_threads();
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(7);
    let centres: Vec<f32> = (0..CENTRES * DIM)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    eprintln!("generating {rows} vectors of {DIM} dimensions...");
    let docs = Embeddings::new(vectors(rows, 1, &centres), rows, DIM).unwrap();
    let q = Tensor::from_vec(vectors(QUERIES, 2, &centres), (QUERIES, DIM), &Device::Cpu).unwrap();

    eprintln!("exact search...");
    let started = Instant::now();
    let exact = top_k(&q, &docs, K, Blocks::default(), &Device::Cpu).unwrap();
    let exact_qps = QUERIES as f64 / started.elapsed().as_secs_f64();

    // ANN_SCALAR=f16|i8: the graph's vector precision.
    let scalar = match std::env::var("ANN_SCALAR").as_deref() {
        Ok("f16") => AnnScalar::F16,
        Ok("i8") => AnnScalar::I8,
        _ => AnnScalar::F32,
    };
    let config = AnnConfig {
        scalar,
        ..AnnConfig::default()
    };
    eprintln!(
        "linking the HNSW graph (M {}, efConstruction {}) on {threads} threads...",
        config.connectivity, config.expansion_add
    );
    // ANN_GRAPH=FILE keeps the graph for a rerun of the searches alone.
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::var_os("ANN_GRAPH")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("bench.usearch"));
    let started = Instant::now();
    let (index, _) = AnnIndex::cached(&path, &docs, &config, &mut |n| {
        if n % 131_072 < 16_384 {
            eprintln!("  {n} linked ({:.0} s)", started.elapsed().as_secs_f64());
        }
    })
    .unwrap();
    let build = started.elapsed().as_secs_f64();
    let build = if build < 1.0 { f64::NAN } else { build };
    let size = std::fs::metadata(&path).unwrap().len() as f64 / 1e6;

    println!(
        "\n{rows} vectors x {DIM}, {QUERIES} queries, top {K}, {threads} threads; {scalar:?} graph built in {build:.0} s ({:.0} vectors/s), {size:.0} MB on disk, searched memory-mapped\n",
        rows as f64 / build
    );
    println!("| search | queries/s | x exact | recall@{K} |");
    println!("|---|---:|---:|---:|");
    println!("| exact (blocked matrix products) | {exact_qps:.0} | 1.00 | 1.000 |");
    for ef in beams {
        let c = AnnConfig {
            expansion_search: ef,
            ..config
        };
        // One warm pass over the mapped file, then the timed one.
        index
            .top_k(&q.narrow(0, 0, 100).unwrap(), &docs, K, &c)
            .unwrap();
        let started = Instant::now();
        let got = index.top_k(&q, &docs, K, &c).unwrap();
        let qps = QUERIES as f64 / started.elapsed().as_secs_f64();
        println!(
            "| HNSW, ef {} | {qps:.0} | {:.1} | {:.3} |",
            ef.max(K),
            qps / exact_qps,
            recall(&got, &exact)
        );
    }
}
