//! `pretext rerank`: a cross-encoder rescores the top of any TREC run.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pretext::eval::beir::{parse_trec_run, read_corpus, read_items, write_trec_run};
use pretext::eval::metrics::Run;
use pretext::eval::rerank::{rerank, RerankStats};
use pretext::model::cross::PretrainedCrossEncoder;

/// How a cross-encoder is loaded and fed (shared by `rerank`, `eval
/// --rerank` and `mine`'s cross-encoder options).
#[derive(Debug, Args, Clone)]
pub struct CrossOptions {
    /// (query, passage) pairs per cross-encoder batch.
    #[arg(long, default_value_t = 32)]
    pub ce_batch_size: usize,
    /// Longest pair in tokens (default: the cross-encoder's own maximum).
    #[arg(long)]
    pub ce_max_len: Option<usize>,
}

impl CrossOptions {
    /// Loads the cross-encoder folder `dir` on `device`.
    pub fn load(&self, dir: &Path, device: &str) -> Result<PretrainedCrossEncoder> {
        let device = pretext::train::device(device)?;
        PretrainedCrossEncoder::load(dir, &device, self.ce_max_len)
            .with_context(|| format!("loading the cross-encoder {}", dir.display()))
    }
}

/// Flags of `pretext rerank`.
#[derive(Debug, Args)]
pub struct RerankArgs {
    /// A cross-encoder folder (Hugging Face `BertForSequenceClassification`,
    /// e.g. a sentence-transformers ms-marco cross-encoder).
    #[arg(long)]
    model: PathBuf,
    /// Queries (BEIR `queries.jsonl`: `_id`, `text`).
    #[arg(long)]
    queries: PathBuf,
    /// The run to rerank (TREC: `qid Q0 docid rank score tag`).
    #[arg(long)]
    run: PathBuf,
    /// The documents the run names (BEIR `corpus.jsonl`; title and text
    /// are read as one passage).
    #[arg(long)]
    corpus: PathBuf,
    /// Hits per query rescored; the rest follow in the run's order.
    #[arg(long, default_value_t = 100)]
    depth: usize,
    #[command(flatten)]
    ce: CrossOptions,
    /// cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The reranked run (TREC).
    #[arg(long, short)]
    out: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// Reranks `run` with the cross-encoder, with a progress bar.
pub fn rerank_with_bar(
    ce: &PretrainedCrossEncoder,
    run: &Run,
    queries: &[pretext::eval::beir::Item],
    corpus: &[pretext::eval::beir::Item],
    depth: usize,
    batch_size: usize,
    quiet: bool,
) -> Result<(Run, RerankStats)> {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(run.len() as u64).with_style(
            ProgressStyle::with_template(
                "{spinner} reranking {bar:30} {pos}/{len} queries ({per_sec}, ETA {eta})",
            )
            .expect("static template"),
        )
    };
    let out = rerank(ce, run, queries, corpus, depth, batch_size, &mut |n| {
        bar.set_position(n as u64)
    });
    bar.finish_and_clear();
    out
}

pub fn run(args: RerankArgs) -> Result<()> {
    anyhow::ensure!(args.depth > 0, "--depth must be at least 1");
    let ce = args.ce.load(&args.model, &args.device)?;
    let text = std::fs::read_to_string(&args.run)
        .with_context(|| format!("reading {}", args.run.display()))?;
    let first = parse_trec_run(&text, &args.run.display().to_string())?;
    let queries = read_items(&args.queries)?;
    let corpus = read_corpus(&args.corpus)?;
    let (out, stats) = rerank_with_bar(
        &ce,
        &first,
        &queries,
        &corpus,
        args.depth,
        args.ce.ce_batch_size,
        args.quiet,
    )
    .with_context(|| format!("reranking {}", args.run.display()))?;
    if stats.missing_queries > 0 {
        eprintln!(
            "warning: {}: {} of {} queries of the run are not in {} (kept as they were)",
            args.run.display(),
            stats.missing_queries,
            first.len(),
            args.queries.display()
        );
    }
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    write_trec_run(&out, "pretext-rerank", &mut w)?;
    w.flush()?;
    if !args.quiet {
        eprintln!(
            "reranked {} queries ({} pairs scored, depth {}) -> {}",
            stats.queries,
            stats.pairs,
            args.depth,
            args.out.display()
        );
    }
    Ok(())
}
