//! `pretext bm25 index|search`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use pretext::pretext_tasks::bm25::{AnalyzerKind, Bm25Config, Bm25Index, Stemming, Traversal};
use pretext::pretext_tasks::pipeline::for_each_batch;

use super::data::{finish, DataArgs};

/// `pretext bm25` subcommands.
#[derive(Debug, Args)]
pub struct Bm25Args {
    #[command(subcommand)]
    command: Bm25Command,
}

// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Bm25Command {
    /// Index a corpus (title + text per document) into one file.
    Index {
        #[command(flatten)]
        data: DataArgs,
        /// Index file to write.
        #[arg(long, short)]
        out: PathBuf,
        /// `lucene` (Anserini's default analyzer and Lucene's scoring, so
        /// runs match pyserini's) or `nltk` (pretext's first analyzer: NLTK
        /// stopwords, exact lengths).
        #[arg(long, default_value = "lucene")]
        analyzer: AnalyzerKind,
        /// Term-frequency saturation.
        #[arg(long, default_value_t = 0.9)]
        k1: f32,
        /// Length normalisation.
        #[arg(long, default_value_t = 0.4)]
        b: f32,
        /// Keep stopwords.
        #[arg(long)]
        keep_stopwords: bool,
        /// Stemmer: `porter` (Lucene's, as Anserini), `porter2` (Snowball
        /// English) or `none`.
        #[arg(long, default_value = "porter")]
        stemmer: Stemming,
        /// Do not stem (same as `--stemmer none`).
        #[arg(long)]
        no_stem: bool,
    },
    /// Search an index: one query, or a JSONL file of queries (`_id`, `text`) to a TREC run.
    Search {
        /// Index file.
        #[arg(long)]
        index: PathBuf,
        /// One query.
        #[arg(long, conflicts_with = "queries")]
        query: Option<String>,
        /// Queries (JSONL, `_id` and `text`).
        #[arg(long)]
        queries: Option<PathBuf>,
        /// Hits per query.
        #[arg(long, short, default_value_t = 10)]
        k: usize,
        /// Score every posting instead of skipping what cannot reach the
        /// top k (the same run, slower: the baseline of benches/bm25_compare.sh).
        #[arg(long)]
        exhaustive: bool,
    },
}

pub fn run(args: Bm25Args) -> Result<()> {
    match args.command {
        Bm25Command::Index {
            data,
            out,
            analyzer,
            k1,
            b,
            keep_stopwords,
            stemmer,
            no_stem,
        } => {
            let bm = Bm25Config {
                analyzer,
                k1,
                b,
                stopwords: !keep_stopwords,
                stemmer: if no_stem { Stemming::None } else { stemmer },
                ..Bm25Config::default()
            };
            bm.validate("bm25")
                .map_err(|e| anyhow::anyhow!("--k1/--b: {e}"))?;
            let config = finish(&data.builder()?)?;
            let c = &config.corpus;
            let corpus = c.open()?;
            let mut docs = Vec::new();
            let opts = c.read_options();
            let started = std::time::Instant::now();
            let report = for_each_batch(
                &corpus,
                opts,
                |d| {
                    let text = match &d.title {
                        Some(t) => format!("{t} {}", d.text),
                        None => d.text.to_string(),
                    };
                    (d.id.to_string(), text)
                },
                |batch, _| {
                    docs.extend(batch);
                    Ok(())
                },
            )?;
            let index = Bm25Index::build(&docs, bm);
            index.save(&out)?;
            let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            eprintln!(
                "indexed {} documents in {:.2} s: {} ({:.1} MB)",
                index.len(),
                started.elapsed().as_secs_f64(),
                out.display(),
                size as f64 / 1e6
            );
            if report.skipped > 0 {
                eprintln!("skipped {} bad records; the first:", report.skipped);
                report
                    .skipped_examples
                    .iter()
                    .for_each(|e| eprintln!("  {e}"));
            }
        }
        Bm25Command::Search {
            index,
            query,
            queries,
            k,
            exhaustive,
        } => {
            let index = Bm25Index::load(&index)?;
            let qs: Vec<(String, String)> = match (query, queries) {
                (Some(q), _) => vec![("query".into(), q)],
                (None, Some(p)) => pretext::eval::beir::read_items(&p)?
                    .into_iter()
                    .map(|i| (i.id, i.text))
                    .collect(),
                (None, None) => anyhow::bail!("give --query TEXT or --queries FILE"),
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let traversal = if exhaustive {
                Traversal::Exhaustive
            } else {
                Traversal::MaxScore
            };
            for (q, mut hits) in index.search_all_with(&qs, k, traversal) {
                // Tied scores are written a float step apart, so a reader
                // that sorts by score keeps the order searched (Lucene's).
                pretext::eval::metrics::break_ties_in_place(&mut hits);
                for (rank, (d, s)) in hits.iter().enumerate() {
                    writeln!(out, "{q} Q0 {d} {} {s} bm25", rank + 1)?;
                }
            }
            out.flush()?;
        }
    }
    Ok(())
}
