//! Pair generation throughput per task on the shipped corpus, on one thread
//! (per-core figures) and on all cores. `cargo bench --bench pairs`.

use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pretext_tasks::augment::Augmentations;
use pretext_tasks::corpus::{Corpus, CorpusConfig};
use pretext_tasks::formats::PairFormat;
use pretext_tasks::pipeline::{ready_task, PairsJob, ReadOptions};
use pretext_tasks::tasks::TaskSpec;

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

fn bench_tasks(c: &mut Criterion) {
    let corpus = corpus();
    let mut group = c.benchmark_group("pairs");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(corpus.total_bytes()));
    for threads in [1, 0] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let label = if threads == 1 {
            "1-thread"
        } else {
            "all-cores"
        };
        for task in TaskSpec::NAMES {
            let job = job(task, &corpus);
            group.bench_with_input(BenchmarkId::new(label, task), &job, |b, job| {
                b.iter(|| {
                    pool.install(|| {
                        job.run(&corpus, &mut std::io::sink(), &mut |_, _, _| {})
                            .unwrap()
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_tasks);
criterion_main!(benches);
