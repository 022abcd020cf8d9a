//! Pair generation throughput per task on the shipped corpus, on one thread
//! (per-core figures) and on all cores; and the `crop` task on the same
//! corpus compressed each way (gzip, zstd, bzip2 at their tools' default
//! levels) against the uncompressed file, throughput counted in
//! uncompressed bytes so the figures compare; `crop` with BM25
//! negatives; and three tasks over text with a word out of ASCII on most
//! lines. `cargo bench --bench pairs`.

use std::path::Path;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use pretext_tasks::augment::Augmentations;
use pretext_tasks::corpus::{Corpus, CorpusConfig};
use pretext_tasks::formats::PairFormat;
use pretext_tasks::pipeline::{ready_task, PairsJob, ReadOptions};
use pretext_tasks::tasks::TaskSpec;

/// The binary's allocator (and its setting, in `bench_tasks`), so the
/// figures are what `pretext pairs` does.
#[global_allocator]
static GLOBAL: pretext::alloc::Allocator = mimalloc::MiMalloc;

fn corpus() -> Corpus {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpora/python-docs/corpus.jsonl");
    Corpus::open(path, CorpusConfig::default()).expect("shipped corpus")
}

/// The task readied as `pretext pairs` runs it (corpus statistics, and
/// `spar`'s BM25 index, built once outside the timed loop).
fn job(task: &str, corpus: &Corpus) -> PairsJob {
    PairsJob {
        negatives: None,
        task: ready_task(&TaskSpec::by_name(task).unwrap(), corpus, false).unwrap(),
        augment: Augmentations::default(),
        seed: 42,
        format: PairFormat::SentenceTransformers,
        with_meta: false,
        read: ReadOptions::default(),
    }
}

/// One worker thread and all cores, each with its label in the report.
fn pools() -> [(&'static str, rayon::ThreadPool); 2] {
    [(1, "1-thread"), (0, "all-cores")].map(|(threads, label)| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        (label, pool)
    })
}

/// Times one pass of `job` over `corpus` on `pool`, as `id` in `group`.
fn bench_pass(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    pool: &rayon::ThreadPool,
    job: &PairsJob,
    corpus: &Corpus,
) {
    group.bench_with_input(id, job, |b, job| {
        b.iter(|| {
            pool.install(|| {
                job.run(corpus, &mut std::io::sink(), &mut |_, _, _| {})
                    .unwrap()
            })
        })
    });
}

fn bench_tasks(c: &mut Criterion) {
    bench_tasks_on(c, "pairs", &corpus(), &TaskSpec::NAMES, &pools());
}

/// Each of `tasks` over `corpus` on each of `pools`, as group `name`.
fn bench_tasks_on(
    c: &mut Criterion,
    name: &str,
    corpus: &Corpus,
    tasks: &[&str],
    pools: &[(&str, rayon::ThreadPool)],
) {
    // As `main` does: freed batches are reused, not faulted in again.
    pretext::alloc::keep_freed_memory();
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.throughput(Throughput::Bytes(corpus.total_bytes()));
    for (label, pool) in pools {
        for task in tasks {
            let job = job(task, corpus);
            bench_pass(
                &mut group,
                BenchmarkId::new(*label, task),
                pool,
                &job,
                corpus,
            );
        }
    }
    group.finish();
}

/// `crop` with one BM25 negative per pair (`pretext pairs --negatives
/// bm25`): a search of the corpus and the positive's score per pair, on
/// one thread and on all cores.
fn bench_bm25_negatives(c: &mut Criterion) {
    use pretext_tasks::negatives::{CorpusTexts, NegativesConfig, PairNegatives, Source};
    use std::sync::Arc;
    pretext::alloc::keep_freed_memory();
    let corpus = corpus();
    let texts = CorpusTexts::load(&corpus, ReadOptions::default()).unwrap();
    let config = NegativesConfig {
        source: Source::Bm25,
        ..NegativesConfig::default()
    };
    let mut job = job("crop", &corpus);
    let negatives = PairNegatives::new(config, Arc::new(texts), Some(job.task.clone()), 42);
    job.negatives = Some(Arc::new(negatives.unwrap()));
    let mut group = c.benchmark_group("negatives");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(corpus.total_bytes()));
    for (label, pool) in pools() {
        bench_pass(
            &mut group,
            BenchmarkId::new(label, "crop+bm25"),
            &pool,
            &job,
            &corpus,
        );
    }
    group.finish();
}

/// `crop` over the shipped corpus as gzip, zstd and bzip2 files, against
/// the mapped uncompressed file, on one thread and on all cores.
fn bench_compressed(c: &mut Criterion) {
    use std::io::Write;
    let plain = corpus();
    let bytes = std::fs::read(&plain.sources()[0].path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, data: Vec<u8>| {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        Corpus::open(&p, CorpusConfig::default()).unwrap()
    };
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(&bytes).unwrap();
        e.finish().unwrap()
    };
    let bz = {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(9));
        e.write_all(&bytes).unwrap();
        e.finish().unwrap()
    };
    let corpora = [
        ("uncompressed", plain),
        ("gzip", write("corpus.jsonl.gz", gz)),
        (
            "zstd",
            write("corpus.jsonl.zst", zstd::encode_all(&bytes[..], 3).unwrap()),
        ),
        ("bzip2", write("corpus.jsonl.bz2", bz)),
    ];
    let job = job("crop", &corpora[0].1);
    let mut group = c.benchmark_group("crop-compressed");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    for (label, pool) in pools() {
        for (name, corpus) in &corpora {
            bench_pass(
                &mut group,
                BenchmarkId::new(label, name),
                &pool,
                &job,
                corpus,
            );
        }
    }
    group.finish();
}

/// Tasks over text with a few words out of ASCII on most lines, as real
/// corpora have (accented names, dashes, curly quotes): the shipped corpus
/// with every ` the ` written ` thé `, on one thread.
fn bench_accented(c: &mut Criterion) {
    let plain = std::fs::read_to_string(&corpus().sources()[0].path).unwrap();
    let accented = plain.replace(" the ", " th\u{e9} ");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accented.jsonl");
    std::fs::write(&path, &accented).unwrap();
    let corpus = Corpus::open(&path, CorpusConfig::default()).unwrap();
    let [one_thread, _] = pools();
    let tasks = ["ict", "spans", "pseudo-query"];
    bench_tasks_on(c, "accented", &corpus, &tasks, &[one_thread]);
}

criterion_group! {
    name = benches;
    // The figures are read off the terminal; criterion's plots panic on
    // some sample sets (criterion 0.8, plotters backend).
    config = Criterion::default().without_plots();
    targets = bench_tasks, bench_bm25_negatives, bench_compressed, bench_accented
}
criterion_main!(benches);
