//! `pretext mine`: negatives for a pair dataset from BM25, a dense model,
//! random passages or other queries' positives.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pretext::config::ConfigBuilder;
use pretext::model::cross::PretrainedCrossEncoder;
use pretext::negatives::mine::{
    bm25_teacher_scores, cross_encoder_teacher_scores, mine, positives_as_corpus, read_queries,
    write_mined, MineFormat, MineProgress, MineSettings,
};
use pretext::negatives::{Blocks, EmbeddingCache};
use pretext::pretext_tasks::negatives::CorpusTexts;
use pretext::pretext_tasks::pipeline::ReadOptions;

use super::data::finish;

/// Flags of `pretext mine`. Every `[negatives]` field of a config can also
/// be set with `--set negatives.FIELD=VALUE`.
#[derive(Debug, Args)]
pub struct MineArgs {
    /// A TOML config; its `[corpus]` and `[negatives]` sections are used.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The pair dataset to mine for (sentence-transformers, FlagEmbedding or
    /// Tevatron JSONL; an `answers` list on a line feeds the answer rule).
    #[arg(long)]
    queries: PathBuf,
    /// The corpus negatives come from (file or folder, any reader format);
    /// default: the config's, else the dataset's own positives.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// bm25, dense, random, gold (positives of other queries) or run (a
    /// TREC run file from any retriever, `--run`).
    #[arg(long, value_parser = ["bm25", "dense", "random", "gold", "run"])]
    retriever: Option<String>,
    /// The TREC run of `--retriever run` (Elasticsearch, pyserini, `pretext
    /// bm25 search`...): query ids are the pair file's, else its line numbers.
    #[arg(long)]
    run: Option<PathBuf>,
    /// Model folder of the dense retriever (default: negatives.model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// exact or ann (an HNSW graph, kept in the cache folder beside the
    /// embeddings; `-s negatives.ann.expansion_search=N` widens its beam).
    #[arg(long, value_parser = ["exact", "ann"])]
    index: Option<String>,
    /// Negatives per query.
    #[arg(long)]
    num_negatives: Option<usize>,
    /// Skip this many best candidates (EBR: 100).
    #[arg(long)]
    range_min: Option<usize>,
    /// Consider candidates up to this rank (EBR: 500).
    #[arg(long)]
    range_max: Option<usize>,
    /// top or random within the window.
    #[arg(long, value_parser = ["top", "random"])]
    sampling: Option<String>,
    /// Random (easy) negatives per hard one.
    #[arg(long)]
    easy_ratio: Option<f64>,
    /// At most this many hard negatives per positive (0: no cap).
    #[arg(long)]
    max_hard: Option<usize>,
    /// Drop candidates scoring above the positive's score minus this.
    #[arg(long)]
    absolute_margin: Option<f32>,
    /// Drop candidates scoring above the positive's score times (1 - this).
    #[arg(long)]
    relative_margin: Option<f32>,
    /// A second encoder folder that rates candidates (RocketQA denoising).
    #[arg(long)]
    rescore: Option<PathBuf>,
    /// Drop candidates the rescorer rates above this cosine similarity.
    #[arg(long)]
    rescore_threshold: Option<f32>,
    /// A cross-encoder folder that rates every hard candidate (RocketQA's
    /// denoising; `pretext rerank`'s models).
    #[arg(long, value_name = "DIR")]
    rescore_ce: Option<PathBuf>,
    /// Drop hard candidates the cross-encoder gives a probability of
    /// relevance above this [default: 0.1, RocketQA's].
    #[arg(long, requires = "rescore_ce")]
    ce_max_score: Option<f32>,
    /// Output: sentence-transformers (st), flag, tevatron, or ids (ranks and scores).
    #[arg(long, default_value = "sentence-transformers")]
    format: String,
    /// Output file (`-` for standard output).
    #[arg(long, short, default_value = "mined.jsonl")]
    out: PathBuf,
    /// Also write the statistics report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    stats: Option<PathBuf>,
    /// Folder of cached corpus embeddings, dense and rescoring
    /// [default: negatives.cache_dir, `.pretext-cache`].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Encode the corpus every time instead of using the cache.
    #[arg(long)]
    no_cache: bool,
    /// Seed of every draw.
    #[arg(long)]
    seed: Option<u64>,
    /// cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Texts per encoding batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Longest input in tokens (default: the model's).
    #[arg(long)]
    max_len: Option<usize>,
    /// Run the dense encoders' dense layers as int8 products (CPU only):
    /// about twice as fast, at a small cost in quality (docs/performance.md).
    #[arg(long)]
    int8: bool,
    /// Skip bad corpus records instead of stopping.
    #[arg(long)]
    skip_bad: bool,
    /// Write a teacher's score of the positive and of every negative on
    /// each line, for `train.teacher`: `bm25` (SPAR's lexical teacher) or
    /// `cross-encoder` (`--teacher-model DIR`, its raw scores, as the MS
    /// MARCO MarginMSE datasets hold them).
    #[arg(long, value_parser = ["bm25", "cross-encoder"])]
    teacher_scores: Option<String>,
    /// The cross-encoder folder of `--teacher-scores cross-encoder`.
    #[arg(long, value_name = "DIR")]
    teacher_model: Option<PathBuf>,
    /// Set any config field, repeatable: --set negatives.drop_answers=false.
    #[arg(long = "set", short = 's', value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// No progress bars and no report on standard error.
    #[arg(long, short)]
    quiet: bool,
}

/// Progress bars of the stages of a mining (or labelling) run.
pub struct Bars {
    quiet: bool,
    bar: Option<ProgressBar>,
}

impl Bars {
    /// Bars on standard error, none when `quiet`.
    pub fn new(quiet: bool) -> Bars {
        Bars { quiet, bar: None }
    }

    /// Clears the last bar.
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl MineProgress for Bars {
    fn stage(&mut self, name: &str, total: usize) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        let b = ProgressBar::new(total as u64).with_style(
            ProgressStyle::with_template(
                "{spinner} {msg} {bar:30} {pos}/{len} ({per_sec}, ETA {eta})",
            )
            .expect("static template"),
        );
        b.set_message(name.to_string());
        self.bar = Some(b);
    }
    fn advance(&mut self, done: usize) {
        if let Some(b) = &self.bar {
            b.set_position(done as u64);
        }
    }
}

pub fn run(args: MineArgs) -> Result<()> {
    let mut b = ConfigBuilder::new(args.config.as_deref())?;
    let source = args.retriever.clone().unwrap_or_else(|| "bm25".into());
    b.set_value("negatives.source", toml::Value::String(source));
    let ints = [
        ("negatives.count", args.num_negatives),
        ("negatives.range_min", args.range_min),
        ("negatives.range_max", args.range_max),
        ("negatives.max_hard", args.max_hard),
    ];
    for (k, v) in ints {
        if let Some(v) = v {
            b.set_value(k, toml::Value::Integer(v as i64));
        }
    }
    let floats = [
        ("negatives.easy_ratio", args.easy_ratio),
        (
            "negatives.absolute_margin",
            args.absolute_margin.map(f64::from),
        ),
        (
            "negatives.relative_margin",
            args.relative_margin.map(f64::from),
        ),
        (
            "negatives.rescore_threshold",
            args.rescore_threshold.map(f64::from),
        ),
        ("negatives.ce_max_score", args.ce_max_score.map(f64::from)),
    ];
    for (k, v) in floats {
        if let Some(v) = v {
            b.set_value(k, toml::Value::Float(v));
        }
    }
    if let Some(s) = &args.sampling {
        b.set_value("negatives.sampling", toml::Value::String(s.clone()));
    }
    if let Some(s) = &args.index {
        b.set_value("negatives.index", toml::Value::String(s.clone()));
    }
    if let Some(p) = &args.rescore {
        b.set_value(
            "negatives.rescore",
            toml::Value::String(p.display().to_string()),
        );
    }
    if let Some(p) = &args.rescore_ce {
        b.set_value(
            "negatives.rescore_ce",
            toml::Value::String(p.display().to_string()),
        );
    }
    if let Some(p) = &args.corpus {
        b.set_value("corpus.path", toml::Value::String(p.display().to_string()));
    }
    if let Some(p) = &args.run {
        b.set_value(
            "negatives.run",
            toml::Value::String(p.display().to_string()),
        );
    }
    if args.skip_bad {
        b.set_value("corpus.skip_bad", toml::Value::Boolean(true));
    }
    if let Some(s) = args.seed {
        b.set_value("seed", toml::Value::Integer(s as i64));
    }
    for kv in &args.set {
        b.set_pair(kv)?;
    }
    let config = finish(&b)?;
    let format: MineFormat = args.format.parse()?;
    // A teacher that does not load stops the run before mining.
    let teacher = match (args.teacher_scores.as_deref(), &args.teacher_model) {
        (Some("cross-encoder"), Some(dir)) => Some(
            PretrainedCrossEncoder::load(dir, &pretext::train::device(&args.device)?, args.max_len)
                .with_context(|| format!("loading the cross-encoder {}", dir.display()))?,
        ),
        (Some("cross-encoder"), None) => {
            bail!(
                "--teacher-scores cross-encoder needs --teacher-model DIR (a cross-encoder folder)"
            )
        }
        (_, Some(_)) => bail!("--teacher-model is the model of --teacher-scores cross-encoder"),
        _ => None,
    };
    let started = Instant::now();
    let (queries, skipped) = read_queries(&args.queries, args.skip_bad)?;
    if skipped.count > 0 {
        eprintln!(
            "skipped {} bad lines of {}; the first: {}",
            skipped.count,
            args.queries.display(),
            skipped.first.as_deref().unwrap_or("")
        );
    }
    let corpus = if args.corpus.is_some() || args.config.is_some() {
        let c = config.corpus.open()?;
        let read = ReadOptions {
            skip_bad: config.corpus.skip_bad,
            ..ReadOptions::default()
        };
        CorpusTexts::load(&c, read)
            .with_context(|| format!("reading corpus {}", config.corpus.path.display()))?
    } else {
        positives_as_corpus(&queries)
    };
    let settings = MineSettings {
        negatives: config.negatives.clone(),
        model: args.model.clone().or(config.negatives.model.clone()),
        seed: config.seed,
        device: pretext::train::device(&args.device)?,
        batch_size: args.batch_size,
        max_len: args.max_len,
        int8: args.int8,
        cache: (!args.no_cache).then(|| {
            EmbeddingCache::new(
                args.cache_dir
                    .as_ref()
                    .unwrap_or(&config.negatives.cache_dir),
            )
        }),
        blocks: Blocks::default(),
    };
    let mut bars = Bars {
        quiet: args.quiet,
        bar: None,
    };
    let mined = mine(&queries, &corpus, &settings, &mut bars)?;
    if let Some(b) = bars.bar.take() {
        b.finish_and_clear();
    }
    let mut out: Box<dyn Write> = if args.out.as_os_str() == "-" {
        Box::new(BufWriter::new(std::io::stdout().lock()))
    } else {
        let f = std::fs::File::create(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        Box::new(BufWriter::new(f))
    };
    let scores = match (args.teacher_scores.as_deref(), &teacher) {
        (Some("bm25"), _) => Some(bm25_teacher_scores(
            &queries,
            &corpus,
            &mined,
            config.negatives.bm25,
        )),
        (_, Some(ce)) => Some(cross_encoder_teacher_scores(
            &queries,
            &corpus,
            &mined,
            ce,
            args.batch_size,
            &mut bars,
        )?),
        _ => None,
    };
    if let Some(b) = bars.bar.take() {
        b.finish_and_clear();
    }
    write_mined(
        &mut *out,
        format,
        &queries,
        &corpus,
        &mined,
        scores.as_deref(),
    )?;
    out.flush()?;
    drop(out);
    if !args.quiet {
        eprintln!(
            "mined {} queries against {} documents in {:.2} s{} -> {}",
            queries.len(),
            corpus.len(),
            started.elapsed().as_secs_f64(),
            match mined.cache_hit {
                Some(true) => " (corpus embeddings from the cache)",
                Some(false) => " (corpus encoded)",
                None => "",
            },
            args.out.display()
        );
        eprint!("{}", mined.stats);
    }
    if let Some(p) = &args.stats {
        let mut json = mined.stats.to_json();
        json["seconds"] = serde_json::json!(started.elapsed().as_secs_f64());
        json["corpus_embeddings_cached"] = serde_json::json!(mined.cache_hit);
        std::fs::write(p, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
