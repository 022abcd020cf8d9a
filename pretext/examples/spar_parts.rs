//! Where a pass of the `spar` task goes, part by part, on the shipped
//! corpus and one thread: making the pseudo-queries, the BM25 searches,
//! the pairs (both), and the pairs written as sentence-transformers lines.
//! The `pairs` bench gives the whole; this says which part bounds it.
//!
//! `cargo run --release -p pretext-tasks --example spar_parts [ROUNDS]`
//! (the system allocator, not the binary's: figures a little slower).

use std::time::{Duration, Instant};

use pretext_tasks::corpus::{Corpus, CorpusConfig, Document};
use pretext_tasks::formats::{flat, write_pair, write_runs, KnownTexts, Lines, PairFormat};
use pretext_tasks::pipeline::ready_task;
use pretext_tasks::tasks::{PretextTask, Spar, TaskSpec};
use rand::SeedableRng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(3), |a| a.parse())?;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../corpora/python-docs/corpus.jsonl"
    );
    let corpus = Corpus::open(path, CorpusConfig::default())?;
    let TaskSpec::Spar(spar) = ready_task(
        &TaskSpec::by_name("spar").ok_or("no spar task")?,
        &corpus,
        false,
    )?
    else {
        unreachable!("`spar` names the spar task")
    };
    let docs = corpus
        .records()
        .map(|r| corpus.document(&r?))
        .collect::<Result<Vec<_>, _>>()?;
    let mb = corpus.total_bytes() as f64 / f64::from(1 << 20);
    println!("round  queries  searches  pairs  pairs+write (ms; MiB/s of the last)");
    for round in 1..=rounds {
        let p = parts(&spar, &docs);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{round:>5}  {:>7.0}  {:>8.0}  {:>5.0}  {:>11.0}  ({:.1} MiB/s; {} queries, {} MiB written)",
            ms(p.queries),
            ms(p.searches),
            ms(p.pairs),
            ms(p.written),
            mb / p.written.as_secs_f64(),
            p.count,
            p.bytes >> 20
        );
    }
    Ok(())
}

struct Parts {
    queries: Duration,
    searches: Duration,
    pairs: Duration,
    written: Duration,
    count: usize,
    bytes: usize,
}

fn parts(spar: &Spar, docs: &[Document<'_>]) -> Parts {
    let rng = || rand::rngs::StdRng::seed_from_u64(1);
    let index = spar.index.as_deref().expect("readied with its index");
    let t = Instant::now();
    let mut r = rng();
    let queries: Vec<String> = docs
        .iter()
        .flat_map(|d| spar.queries.pairs(d, &mut r))
        .map(|p| flat(&p.query).into_owned())
        .collect();
    let queries_time = t.elapsed();
    let t = Instant::now();
    let hits: usize = queries
        .iter()
        .map(|q| index.search(q, spar.top_k).len())
        .sum();
    let searches = t.elapsed();
    std::hint::black_box(hits);
    let t = Instant::now();
    let mut r = rng();
    let made: usize = docs.iter().map(|d| spar.pairs(d, &mut r).len()).sum();
    let pairs = t.elapsed();
    std::hint::black_box(made);
    let t = Instant::now();
    let (mut r, mut out, mut bytes) = (rng(), Lines::default(), 0);
    let known = Some(index as &dyn KnownTexts);
    for d in docs {
        for (i, p) in spar.pairs(d, &mut r).iter().enumerate() {
            write_pair(
                &mut out,
                PairFormat::SentenceTransformers,
                d,
                i,
                p,
                false,
                known,
            );
        }
        bytes += out.len();
        write_runs(&mut std::io::sink(), out.runs()).expect("a sink takes all");
        out.clear();
    }
    Parts {
        queries: queries_time,
        searches,
        pairs,
        written: t.elapsed(),
        count: queries.len(),
        bytes,
    }
}
