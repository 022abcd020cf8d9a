//! Dense mining throughput: exact top-100 search of 1,000 queries over
//! 100k and 1M corpus vectors of dimension 384, read from a memory-mapped
//! embedding cache file, against the bare matrix products of the same
//! blocks measured in the same run (the device's limit for exact search).
//! Anonymous memory is sampled to show it follows the block size, not the
//! corpus (the mapped file is page cache, not heap).
//!
//! `cargo bench --bench mine_dense` prints a table; `MINE_SIZES=100000`
//! picks the corpus sizes.

use std::io::Write;
use std::time::Instant;

#[global_allocator]
static GLOBAL: pretext::alloc::Allocator = mimalloc::MiMalloc;

use candle_core::{Device, Tensor};
use pretext::memory::rss_anon_kib;
use pretext::negatives::{top_k, Blocks, EmbeddingCache, Embeddings};
use rand::{RngExt, SeedableRng};

const DIM: usize = 384;
const QUERIES: usize = 1000;
const K: usize = 100;

/// Writes `rows` random unit-scale vectors in the cache's file format.
fn write_corpus(dir: &std::path::Path, key: &str, rows: usize) {
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{key}.emb"))).unwrap());
    f.write_all(b"PRTXEMB1").unwrap();
    f.write_all(&(rows as u32).to_le_bytes()).unwrap();
    f.write_all(&(DIM as u32).to_le_bytes()).unwrap();
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(rows as u64);
    let mut buf = Vec::with_capacity(DIM * 4 * 1024);
    for chunk in 0..rows.div_ceil(1024) {
        buf.clear();
        for _ in 0..(1024.min(rows - chunk * 1024) * DIM) {
            buf.extend_from_slice(&(rng.random::<f32>() - 0.5).to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
}

/// The bare matrix products of the search, block by block, no selection.
fn matmul_only(q: &Tensor, docs: &Embeddings, blocks: Blocks) -> f64 {
    let started = Instant::now();
    let mut sink = 0f32;
    for qs in (0..QUERIES).step_by(blocks.queries) {
        let ql = blocks.queries.min(QUERIES - qs);
        let qb = q.narrow(0, qs, ql).unwrap();
        for ds in (0..docs.rows()).step_by(blocks.docs) {
            let dl = blocks.docs.min(docs.rows() - ds);
            let d = docs.block(ds, dl, &Device::Cpu).unwrap();
            let s = qb.matmul(&d.t().unwrap()).unwrap();
            sink += s
                .get(0)
                .unwrap()
                .get(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
        }
    }
    std::hint::black_box(sink);
    started.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("MINE_SIZES")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("MINE_SIZES: numbers"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let cache = EmbeddingCache::new(dir.path());
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
    let qv: Vec<f32> = (0..QUERIES * DIM)
        .map(|_| rng.random::<f32>() - 0.5)
        .collect();
    let q = Tensor::from_vec(qv, (QUERIES, DIM), &Device::Cpu).unwrap();
    let blocks = Blocks::default();
    println!(
        "| corpus | search (s) | queries/s | GFLOP/s | matmul only (s) | search / matmul | anon. memory before → peak (MiB) | corpus file (MiB) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let key = format!("bench{n}");
        write_corpus(dir.path(), &key, n);
        let docs = cache.load(&key).unwrap().unwrap();
        // Warm the page cache and the kernels once.
        let _ = top_k(&q.narrow(0, 0, 8).unwrap(), &docs, K, blocks, &Device::Cpu).unwrap();
        let before = rss_anon_kib().unwrap_or(0);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (hits, search, peak) = std::thread::scope(|s| {
            let sampler = s.spawn(|| {
                let mut peak = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    peak = peak.max(rss_anon_kib().unwrap_or(0));
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                peak
            });
            let started = Instant::now();
            let hits = top_k(&q, &docs, K, blocks, &Device::Cpu).unwrap();
            let search = started.elapsed().as_secs_f64();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (hits, search, sampler.join().unwrap())
        });
        assert_eq!(hits.len(), QUERIES);
        assert_eq!(hits[0].len(), K);
        let bare = matmul_only(&q, &docs, blocks);
        let flop = 2.0 * QUERIES as f64 * n as f64 * DIM as f64;
        println!(
            "| {n} | {search:.2} | {:.0} | {:.1} | {bare:.2} | {:.2} | {:.0} → {:.0} | {:.0} |",
            QUERIES as f64 / search,
            flop / search / 1e9,
            search / bare,
            before as f64 / 1024.0,
            peak as f64 / 1024.0,
            (n * DIM * 4) as f64 / (1 << 20) as f64,
        );
        drop(docs);
        std::fs::remove_file(dir.path().join(format!("{key}.emb"))).unwrap();
    }
}
