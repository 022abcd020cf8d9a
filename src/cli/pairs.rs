//! `pretext pairs`: a pretext task over a corpus, written as a pair dataset.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressStyle};
use pretext::memory::{peak_rss_kib, PeakSampler};
use pretext::pretext_tasks::formats::PairFormat;
use pretext::pretext_tasks::negatives::{CorpusTexts, PairNegatives, Source};
use pretext::pretext_tasks::pipeline::{ready_task, PairsJob, PairsSummary, ReadOptions};
use serde::Serialize;

use super::data::{finish, DataArgs};

/// Flags of `pretext pairs`.
#[derive(Debug, Args)]
pub struct PairsArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Output file, `-` for standard output [default: pairs.jsonl].
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Output layout: sentence-transformers (st), flag or tevatron.
    #[arg(long)]
    format: Option<String>,
    /// Add doc id, task and byte offsets ("meta") to every line.
    #[arg(long)]
    with_meta: bool,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    stats: Option<PathBuf>,
    /// Keep only consistent pairs: `consistency` (E5) keeps a pair when
    /// `--model` ranks its positive within `--top-k` of all the pairs'
    /// positives for its query.
    #[arg(long, value_parser = ["consistency"], requires = "model")]
    filter: Option<String>,
    /// The model folder of `--filter consistency`.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Rank a positive must reach to be kept.
    #[arg(long, default_value_t = 2)]
    top_k: usize,
    /// No progress bar and no summary on standard error.
    #[arg(long, short)]
    quiet: bool,
}

/// The run summary, as printed and as written by `--stats`.
#[derive(Debug, Serialize)]
struct Stats {
    documents: u64,
    bytes: u64,
    pairs: u64,
    per_task: std::collections::BTreeMap<&'static str, u64>,
    skipped: u64,
    seconds: f64,
    mb_per_s: f64,
    docs_per_s: f64,
    pairs_per_s: f64,
    peak_rss_anon_kib: Option<u64>,
    peak_rss_kib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    negatives: Option<serde_json::Value>,
}

impl Stats {
    fn new(s: &PairsSummary, elapsed: Duration, anon: &PeakSampler) -> Stats {
        let secs = elapsed.as_secs_f64().max(1e-9);
        Stats {
            documents: s.read.documents,
            bytes: s.read.bytes,
            pairs: s.pairs,
            per_task: s.per_task.clone(),
            skipped: s.read.skipped,
            seconds: secs,
            mb_per_s: s.read.bytes as f64 / secs / 1e6,
            docs_per_s: s.read.documents as f64 / secs,
            pairs_per_s: s.pairs as f64 / secs,
            peak_rss_anon_kib: anon.peak_kib(),
            peak_rss_kib: peak_rss_kib(),
            negatives: (s.negatives.queries > 0).then(|| s.negatives.to_json()),
        }
    }
}

pub fn run(args: PairsArgs) -> Result<()> {
    let mut b = args.data.builder()?;
    if let Some(out) = &args.out {
        b.set_value("pairs.out", toml::Value::String(out.display().to_string()));
    }
    if let Some(f) = &args.format {
        let f: PairFormat = f.parse()?;
        b.set_value("pairs.format", toml::Value::String(f.to_string()));
    }
    if args.with_meta {
        b.set_value("pairs.with_meta", toml::Value::Boolean(true));
    }
    let config = finish(&b)?;
    if let (Some(_), Some(model)) = (&args.filter, &args.model) {
        return filtered_pairs(&args, &config, model);
    }
    let corpus = config.corpus.open()?;
    if config.negatives.source == Source::Dense {
        return dense_pairs(&config, &corpus, args.quiet);
    }
    let negatives = stream_negatives(&config, &corpus)?;
    let job = PairsJob {
        task: config.task.clone(),
        augment: config.augment.clone(),
        seed: config.seed,
        format: config.pairs.format,
        with_meta: config.pairs.with_meta,
        read: config.corpus.read_options(),
        negatives,
    };
    let out_path = &config.pairs.out;
    let mut out: Box<dyn Write> = if out_path.as_os_str() == "-" {
        Box::new(BufWriter::with_capacity(1 << 20, std::io::stdout().lock()))
    } else {
        let f =
            File::create(out_path).with_context(|| format!("creating {}", out_path.display()))?;
        Box::new(BufWriter::with_capacity(1 << 20, f))
    };

    let bar = if args.quiet {
        ProgressBar::hidden()
    } else if corpus.is_streamed() {
        // A compressed dump's decompressed size is not known before it is
        // read: count bytes without a total.
        ProgressBar::no_length().with_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bytes} {msg}")
                .expect("static template"),
        )
    } else {
        let total = corpus.total_bytes() / u64::from(config.corpus.shard.count());
        ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg}",
            )
            .expect("static template"),
        )
    };
    let start = Instant::now();
    let mut anon = PeakSampler::default();
    anon.sample();
    let mut progress = |docs: u64, bytes: u64, pairs: u64| {
        anon.sample();
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        bar.set_position(bytes);
        bar.set_message(format!(
            "{} docs ({:.0}/s), {} pairs ({:.0}/s)",
            HumanCount(docs),
            docs as f64 / secs,
            HumanCount(pairs),
            pairs as f64 / secs
        ));
    };
    let summary = job
        .run(&corpus, &mut out, &mut progress)
        .with_context(|| format!("generating {} pairs", job.task_name()))?;
    drop(out);
    bar.finish_and_clear();
    let stats = Stats::new(&summary, start.elapsed(), &anon);
    if !args.quiet {
        print_summary(&stats, &summary, &config.pairs.out, config.pairs.format);
    }
    if let Some(path) = &args.stats {
        let json = serde_json::to_string_pretty(&stats)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if summary.pairs == 0 {
        anyhow::bail!(
            "the {} task made no pairs from {} documents of {}: {}",
            job.task_name(),
            summary.read.documents,
            config.corpus.path.display(),
            job.task.needs()
        );
    }
    Ok(())
}

fn print_summary(stats: &Stats, summary: &PairsSummary, out: &std::path::Path, format: PairFormat) {
    eprintln!(
        "read {} documents ({}) in {:.2} s: {:.1} MB/s, {:.0} docs/s",
        HumanCount(stats.documents),
        HumanBytes(stats.bytes),
        stats.seconds,
        stats.mb_per_s,
        stats.docs_per_s
    );
    eprintln!(
        "wrote {} pairs ({:.0}/s) to {} as {format}",
        HumanCount(stats.pairs),
        stats.pairs_per_s,
        out.display()
    );
    for (task, n) in &stats.per_task {
        eprintln!("  {task}: {}", HumanCount(*n));
    }
    if stats.skipped > 0 {
        eprintln!("skipped {} bad records; the first:", stats.skipped);
        for e in &summary.read.skipped_examples {
            eprintln!("  {e}");
        }
    }
    if summary.negatives.queries > 0 {
        eprint!("negatives: {}", summary.negatives);
    }
    if let Some(kib) = stats.peak_rss_anon_kib {
        eprintln!(
            "peak anonymous memory (sampled per batch): {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
}

/// The `[negatives]` sampler of a pair stream over `corpus` (whole corpus,
/// whatever the shard: a negative may come from any document), or `None`.
pub fn stream_negatives(
    config: &pretext::config::Config,
    corpus: &pretext::pretext_tasks::corpus::Corpus,
) -> Result<Option<std::sync::Arc<PairNegatives>>> {
    if config.negatives.source == Source::None {
        return Ok(None);
    }
    config
        .negatives
        .raters_need_mine("a pair stream")
        .map_err(anyhow::Error::msg)?;
    let read = ReadOptions {
        skip_bad: config.corpus.skip_bad,
        ..ReadOptions::default()
    };
    let texts = CorpusTexts::load(corpus, read)?;
    let task = ready_task(&config.task, corpus, read.skip_bad)?;
    let n = PairNegatives::new(
        config.negatives.clone(),
        std::sync::Arc::new(texts),
        Some(task),
        config.seed,
    )?;
    Ok(Some(std::sync::Arc::new(n)))
}

/// Pairs with dense negatives: the pairs are made first (into a temporary
/// file), then mined against the whole corpus with `negatives.model`, as
/// `pretext pairs` followed by `pretext mine --retriever dense` would.
fn dense_pairs(
    config: &pretext::config::Config,
    corpus: &pretext::pretext_tasks::corpus::Corpus,
    quiet: bool,
) -> Result<()> {
    use pretext::negatives::mine::{mine, read_queries, write_mined, MineFormat, Quiet};
    use pretext::negatives::{Blocks, EmbeddingCache};
    let model = config.negatives.model.clone().context(
        "negatives.source = \"dense\" in `pretext pairs` needs negatives.model (a model folder)",
    )?;
    if config.pairs.with_meta {
        anyhow::bail!("--with-meta is not kept with dense negatives; mine the pairs with `pretext mine` instead");
    }
    let job = PairsJob {
        task: config.task.clone(),
        augment: config.augment.clone(),
        seed: config.seed,
        format: PairFormat::SentenceTransformers,
        with_meta: false,
        read: config.corpus.read_options(),
        negatives: None,
    };
    let tmp = tempfile::NamedTempFile::new().context("creating a temporary pairs file")?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        job.run(corpus, &mut w, &mut |_: u64, _: u64, _: u64| {})
            .with_context(|| format!("generating {} pairs", job.task_name()))?;
        w.flush()?;
    }
    let (queries, _) = read_queries(tmp.path(), false)?;
    let read = ReadOptions {
        skip_bad: config.corpus.skip_bad,
        ..ReadOptions::default()
    };
    let texts = CorpusTexts::load(corpus, read)?;
    let settings = pretext::negatives::mine::MineSettings {
        negatives: config.negatives.clone(),
        model: Some(model),
        seed: config.seed,
        device: pretext::train::device(&config.train.device)?,
        batch_size: 64,
        max_len: Some(config.model.max_len),
        int8: false,
        cache: Some(EmbeddingCache::new(&config.negatives.cache_dir)),
        blocks: Blocks::default(),
    };
    let mined = mine(&queries, &texts, &settings, &mut Quiet)?;
    let out_path = &config.pairs.out;
    let mut out: Box<dyn Write> = if out_path.as_os_str() == "-" {
        Box::new(BufWriter::new(std::io::stdout().lock()))
    } else {
        let f =
            File::create(out_path).with_context(|| format!("creating {}", out_path.display()))?;
        Box::new(BufWriter::new(f))
    };
    write_mined(
        &mut *out,
        MineFormat::Pairs(config.pairs.format),
        &queries,
        &texts,
        &mined,
        None,
    )?;
    out.flush()?;
    if !quiet {
        eprintln!(
            "wrote {} pairs with dense negatives to {}",
            queries.len(),
            out_path.display()
        );
        eprint!("negatives: {}", mined.stats);
    }
    Ok(())
}

/// `--filter consistency`: the pairs are generated as asked into a
/// temporary file (next to the output), then filtered into the output.
fn filtered_pairs(
    args: &PairsArgs,
    config: &pretext::config::Config,
    model: &std::path::Path,
) -> Result<()> {
    let out_path = config.pairs.out.clone();
    if out_path.as_os_str() == "-" {
        anyhow::bail!("--filter writes to a file: give --out FILE");
    }
    let tmp = out_path.with_extension("unfiltered.jsonl");
    let inner = PairsArgs {
        data: args.data.clone(),
        out: Some(tmp.clone()),
        format: Some(config.pairs.format.to_string()),
        with_meta: config.pairs.with_meta,
        stats: args.stats.clone(),
        filter: None,
        model: None,
        top_k: args.top_k,
        quiet: args.quiet,
    };
    let generated = run(inner);
    let result = generated.and_then(|()| {
        let device = pretext::train::device(&config.train.device)?;
        let m = pretext::model::pretrained::Pretrained::load(
            model,
            &device,
            Some(config.model.max_len),
        )?;
        let mut out = std::io::BufWriter::new(
            File::create(&out_path).with_context(|| format!("creating {}", out_path.display()))?,
        );
        let f = pretext::filter::consistency(&tmp, &m, args.top_k, 64, &mut out)?;
        out.flush()?;
        eprintln!(
            "consistency filter (top {} by {}): kept {} pairs, dropped {}: {}",
            args.top_k,
            model.display(),
            f.kept,
            f.dropped,
            out_path.display()
        );
        Ok(())
    });
    let _ = std::fs::remove_file(&tmp);
    result
}
