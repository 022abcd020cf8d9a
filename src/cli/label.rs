//! `pretext label`: RocketQA's augmentation, unlabeled queries turned into
//! a pair file with a cross-encoder's confident judgements and scores.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use pretext::config::ConfigBuilder;
use pretext::negatives::label::{label, read_unlabeled, LabelSettings};
use pretext::negatives::mine::{write_mined, MineFormat, MineSettings};
use pretext::negatives::Blocks;
use pretext::pretext_tasks::negatives::CorpusTexts;
use pretext::pretext_tasks::pipeline::ReadOptions;

use super::data::finish;
use super::mine::Bars;

/// Flags of `pretext label`.
#[derive(Debug, Args)]
pub struct LabelArgs {
    /// The cross-encoder folder that judges (`BertForSequenceClassification`).
    #[arg(long)]
    model: PathBuf,
    /// Unlabeled queries: a BEIR `queries.jsonl`, or a pair file of any
    /// layout (e.g. `pretext pairs --task pseudo-query`; its positives are
    /// not used).
    #[arg(long)]
    queries: PathBuf,
    /// The corpus passages come from (file or folder, any reader format).
    #[arg(long)]
    corpus: PathBuf,
    /// Where each query's candidates come from: bm25, dense (`--dense-model`)
    /// or run (a TREC run file, `--run`).
    #[arg(long, default_value = "bm25", value_parser = ["bm25", "dense", "run"])]
    retriever: String,
    /// The TREC run of `--retriever run` (query ids: the file's ids, else
    /// its 1-based line numbers).
    #[arg(long)]
    run: Option<PathBuf>,
    /// The model folder of `--retriever dense`.
    #[arg(long)]
    dense_model: Option<PathBuf>,
    /// Passages per query the cross-encoder rates.
    #[arg(long, default_value_t = 30)]
    depth: usize,
    /// Pseudo-positive above this probability of relevance (RocketQA: 0.9).
    #[arg(long, default_value_t = 0.9)]
    positive: f32,
    /// Negative below this probability (RocketQA: 0.1).
    #[arg(long, default_value_t = 0.1)]
    negative: f32,
    /// Pseudo-positives per query, best first (one pair each).
    #[arg(long, default_value_t = 1)]
    max_positives: usize,
    /// Negatives per pair, hardest (best retrieved) first.
    #[arg(long, default_value_t = 4)]
    max_negatives: usize,
    /// Output: sentence-transformers (st), flag or tevatron; every line
    /// carries the cross-encoder's scores for `train.teacher`.
    #[arg(long, default_value = "sentence-transformers")]
    format: String,
    /// Output file (`-` for standard output).
    #[arg(long, short, default_value = "labelled.jsonl")]
    out: PathBuf,
    /// Texts per encoding batch of the dense retriever (the cross-encoder's
    /// batch is `--ce-batch-size`).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[command(flatten)]
    ce: super::rerank::CrossOptions,
    /// cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Skip bad corpus records instead of stopping.
    #[arg(long)]
    skip_bad: bool,
    /// No progress bars and no report on standard error.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: LabelArgs) -> Result<()> {
    let format: MineFormat = args.format.parse()?;
    anyhow::ensure!(
        matches!(format, MineFormat::Pairs(_)),
        "--format ids is for `pretext mine`; label writes a pair file (sentence-transformers, flag or tevatron)"
    );
    let settings = LabelSettings {
        depth: args.depth,
        positive: args.positive,
        negative: args.negative,
        max_positives: args.max_positives,
        max_negatives: args.max_negatives,
        batch_size: args.ce.ce_batch_size,
    };
    settings.validate()?;
    let mut b = ConfigBuilder::new(None)?;
    b.set_value(
        "negatives.source",
        toml::Value::String(args.retriever.clone()),
    );
    b.set_value(
        "corpus.path",
        toml::Value::String(args.corpus.display().to_string()),
    );
    if let Some(p) = &args.run {
        b.set_value(
            "negatives.run",
            toml::Value::String(p.display().to_string()),
        );
    }
    if args.skip_bad {
        b.set_value("corpus.skip_bad", toml::Value::Boolean(true));
    }
    let config = finish(&b)?;
    let ce = args.ce.load(&args.model, &args.device)?;
    let queries = read_unlabeled(&args.queries)?;
    let corpus = CorpusTexts::load(
        &config.corpus.open()?,
        ReadOptions {
            skip_bad: config.corpus.skip_bad,
            ..ReadOptions::default()
        },
    )
    .with_context(|| format!("reading corpus {}", args.corpus.display()))?;
    let retrieval = MineSettings {
        negatives: config.negatives.clone(),
        model: args.dense_model.clone(),
        seed: config.seed,
        device: pretext::train::device(&args.device)?,
        batch_size: args.batch_size,
        max_len: None,
        int8: false,
        cache: None,
        blocks: Blocks::default(),
    };
    let mut bars = Bars::new(args.quiet);
    let labelled = label(&ce, &queries, &corpus, &retrieval, settings, &mut bars)?;
    bars.finish();
    let mut out: Box<dyn Write> = if args.out.as_os_str() == "-" {
        Box::new(BufWriter::new(std::io::stdout().lock()))
    } else {
        let f = std::fs::File::create(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        Box::new(BufWriter::new(f))
    };
    write_mined(
        &mut *out,
        format,
        &labelled.queries,
        &corpus,
        &labelled.mined,
        Some(&labelled.scores),
    )?;
    out.flush()?;
    if !args.quiet {
        eprint!("{}", labelled.stats);
        eprintln!("{} pairs -> {}", labelled.queries.len(), args.out.display());
    }
    Ok(())
}
