//! `pretext eval`: a model folder, BM25 or any tool's TREC run on a
//! BEIR-format data set.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pretext::eval::beir::{load_qrels, means_table, parse_trec_run, write_trec_run, Beir};
use pretext::eval::metrics::{evaluate, Measure, Run};
use pretext::eval::{embed_all, search};
use pretext::pretext_tasks::bm25::{AnalyzerKind, Bm25Config, Bm25Index};
use pretext::pretext_tasks::negatives::{AnnConfig, SearchIndex};
use pretext::tokenize::Side;

use super::data::ModelOptions;

/// Flags of `pretext eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A model folder (Hugging Face / sentence-transformers layout, e.g. from `pretext export`).
    #[arg(long, conflicts_with = "run")]
    model: Option<PathBuf>,
    /// `dense` (the model) or `bm25` (Anserini's: k1 0.9, b 0.4, its English analyzer).
    #[arg(long, default_value = "dense", value_parser = ["dense", "bm25"])]
    retriever: String,
    /// Score this TREC run file (`qid Q0 docid rank score tag`, from any
    /// tool: pyserini, Elasticsearch, `pretext bm25 search`) instead of
    /// retrieving; only `qrels/SPLIT.tsv` of `--data` is read.
    #[arg(long, conflicts_with_all = ["model", "retriever"])]
    run: Option<PathBuf>,
    /// BM25's analyzer and scoring: `lucene` (as Anserini and pyserini) or
    /// `nltk` (pretext's first: NLTK stopwords, exact lengths). BM25's
    /// options are refused with `--model` or `--run`, which they would not
    /// change.
    #[arg(long, default_value = "lucene", conflicts_with_all = ["model", "run"])]
    analyzer: AnalyzerKind,
    /// BM25 term-frequency saturation (Anserini 0.9; tantivy's fixed 1.2).
    #[arg(long, default_value_t = 0.9, conflicts_with_all = ["model", "run"])]
    k1: f32,
    /// BM25 length normalisation (Anserini 0.4; tantivy's fixed 0.75).
    #[arg(long, default_value_t = 0.4, conflicts_with_all = ["model", "run"])]
    b: f32,
    /// A BEIR data set folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv).
    #[arg(long)]
    data: PathBuf,
    /// Judgements to use: qrels/SPLIT.tsv.
    #[arg(long, default_value = "test")]
    split: String,
    /// Hits kept per query (up to 1000 for R@1000).
    #[arg(long, default_value_t = 1000)]
    k: usize,
    #[command(flatten)]
    model_opts: ModelOptions,
    #[command(flatten)]
    index: IndexOptions,
    /// Rerank the first stage's top hits with this cross-encoder folder
    /// (the retrieve-then-rerank cascade); both stages' metrics are
    /// reported, the reranked run is the one written.
    #[arg(long, value_name = "DIR")]
    rerank: Option<PathBuf>,
    /// Hits per query the cross-encoder rescores.
    #[arg(long, default_value_t = 100, requires = "rerank")]
    rerank_depth: usize,
    #[command(flatten)]
    ce_opts: super::rerank::CrossOptions,
    /// Folder for run.trec and metrics.json.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn bar(quiet: bool, len: usize, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64).with_style(
        ProgressStyle::with_template("{spinner} {msg} {bar:30} {pos}/{len} ({per_sec}, ETA {eta})")
            .expect("static template"),
    );
    bar.set_message(what.to_string());
    bar
}

pub fn run(args: EvalArgs) -> Result<()> {
    if let (Some(path), None) = (&args.run, &args.rerank) {
        return score_run(&args, path);
    }
    anyhow::ensure!(args.rerank_depth > 0, "--rerank-depth must be at least 1");
    // A cross-encoder that does not load stops the run before retrieval.
    let ce = match &args.rerank {
        Some(dir) => Some(args.ce_opts.load(dir, &args.model_opts.device)?),
        None => None,
    };
    let data = Beir::load(&args.data, &args.split)?;
    for w in &data.warnings {
        eprintln!("warning: {w}");
    }
    if args.index.kind == SearchIndex::Ann && args.model.is_none() {
        bail!("--index ann searches a dense model's embeddings: give --model DIR");
    }
    let run = match (&args.run, &args.model, args.retriever.as_str()) {
        (Some(path), _, _) => read_run(path)?,
        (None, Some(model), "dense") => dense(&args, model, &data)?,
        (None, None, "dense") => {
            bail!("--retriever dense needs --model DIR (or --retriever bm25, or --run FILE)")
        }
        (None, Some(_), _) => bail!("--model is for --retriever dense, not {}", args.retriever),
        (None, None, _) => bm25(&args, &data)?,
    };
    let (means, per_query) = evaluate(&data.qrels, &run, &Measure::DEFAULT);
    let Some(ce) = ce else {
        println!(
            "{}  ({} queries, {} documents)",
            means_table(&means),
            per_query.len(),
            data.corpus.len()
        );
        return write_out(&args, &run, &means, &per_query, None);
    };
    println!("first stage: {}", means_table(&means));
    let (reranked, stats) = super::rerank::rerank_with_bar(
        &ce,
        &run,
        &data.queries,
        &data.corpus,
        args.rerank_depth,
        args.ce_opts.ce_batch_size,
        args.quiet,
    )?;
    let (after, per_query) = evaluate(&data.qrels, &reranked, &Measure::DEFAULT);
    println!(
        "reranked:    {}  ({} queries, {} documents, top {} rescored, {} pairs)",
        means_table(&after),
        per_query.len(),
        data.corpus.len(),
        args.rerank_depth,
        stats.pairs
    );
    write_out(&args, &reranked, &after, &per_query, Some(&means))
}

fn read_run(path: &std::path::Path) -> Result<Run> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_trec_run(&text, &path.display().to_string())
}

/// `--run FILE`: the run's queries that are judged are scored, as
/// trec_eval and pytrec_eval score them (judged queries the run lacks are
/// left out, as trec_eval does without `-c`, and counted in a warning).
fn score_run(args: &EvalArgs, path: &std::path::Path) -> Result<()> {
    let qrels = load_qrels(&args.data, &args.split)?;
    let run = read_run(path)?;
    let unjudged = run.keys().filter(|q| !qrels.contains_key(*q)).count();
    let missing = qrels.keys().filter(|q| !run.contains_key(*q)).count();
    if unjudged > 0 {
        eprintln!(
            "warning: {}: {unjudged} of {} queries have no judgements in {} (not scored)",
            path.display(),
            run.len(),
            args.split
        );
    }
    if missing > 0 {
        eprintln!(
            "warning: {}: {missing} of {} judged queries are not in the run (not scored, as trec_eval without -c)",
            path.display(),
            qrels.len()
        );
    }
    let (means, per_query) = evaluate(&qrels, &run, &Measure::DEFAULT);
    if per_query.is_empty() {
        bail!(
            "{}: no query of the run is judged in {}/qrels/{}.tsv",
            path.display(),
            args.data.display(),
            args.split
        );
    }
    println!("{}  ({} queries)", means_table(&means), per_query.len());
    write_out(args, &run, &means, &per_query, None)
}

/// `--out DIR`: `run.trec` (in trec order) and `metrics.json` (with the
/// first stage's means when the run was reranked).
fn write_out(
    args: &EvalArgs,
    run: &Run,
    means: &BTreeMap<String, f64>,
    per_query: &BTreeMap<String, BTreeMap<String, f64>>,
    first_stage: Option<&BTreeMap<String, f64>>,
) -> Result<()> {
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let mut f = std::io::BufWriter::new(std::fs::File::create(out.join("run.trec"))?);
        write_trec_run(run, "pretext", &mut f)?;
        f.flush()?;
        let retriever = if args.run.is_some() {
            "run"
        } else {
            args.retriever.as_str()
        };
        let mut json = serde_json::json!({
            "model": args.model, "retriever": retriever, "run": args.run, "data": args.data, "split": args.split,
            "metrics": means, "per_query": per_query,
        });
        if let Some(first) = first_stage {
            json["rerank"] = serde_json::json!({
                "model": args.rerank, "depth": args.rerank_depth, "first_stage": first,
            });
        }
        std::fs::write(
            out.join("metrics.json"),
            serde_json::to_string_pretty(&json)? + "\n",
        )?;
    }
    Ok(())
}

/// BM25 over the data set's corpus, self-hits skipped as for dense runs.
fn bm25(args: &EvalArgs, data: &Beir) -> Result<Run> {
    let docs: Vec<(String, String)> = data
        .corpus
        .iter()
        .map(|d| (d.id.clone(), d.text.clone()))
        .collect();
    let config = Bm25Config {
        analyzer: args.analyzer,
        k1: args.k1,
        b: args.b,
        ..Bm25Config::default()
    };
    config
        .validate("bm25")
        .map_err(|e| anyhow::anyhow!("--k1/--b: {e}"))?;
    let index = Bm25Index::build(&docs, config);
    let queries: Vec<(String, String)> = data
        .queries
        .iter()
        .map(|q| (q.id.clone(), q.text.clone()))
        .collect();
    Ok(index
        .search_all(&queries, args.k + 1)
        .into_iter()
        .map(|(q, hits)| {
            let hits: Vec<(String, f32)> = hits
                .into_iter()
                .filter(|(d, _)| *d != q)
                .take(args.k)
                .collect();
            (q, hits)
        })
        .collect())
}

fn dense(args: &EvalArgs, model: &std::path::Path, data: &Beir) -> Result<Run> {
    let model = args.model_opts.load(model)?;
    let encode = |items: &[pretext::eval::beir::Item], side: Side, what: &str| {
        let b = bar(args.quiet, items.len(), what);
        let e = embed_all(&model, items, side, args.model_opts.batch_size, &mut |n| {
            b.set_position(n as u64)
        });
        b.finish_and_clear();
        e
    };
    let docs = encode(&data.corpus, Side::Document, "encoding corpus")?;
    let queries = encode(&data.queries, Side::Query, "encoding queries")?;
    let ann = args.index.ann();
    search(
        &queries,
        &data.queries,
        &docs,
        &data.corpus,
        args.k,
        256,
        ann.as_ref(),
    )
}

/// How the dense retriever searches the corpus embeddings.
#[derive(Debug, Args)]
pub struct IndexOptions {
    /// exact (every document scored) or ann (an HNSW graph, built in
    /// parallel over the corpus embeddings: for corpora past exact search).
    #[arg(long = "index", default_value = "exact", value_parser = SearchIndex::parse, conflicts_with = "run")]
    kind: SearchIndex,
    /// HNSW links per node (`M`).
    #[arg(long, default_value_t = AnnConfig::default().connectivity)]
    ann_m: usize,
    /// HNSW build beam (`efConstruction`).
    #[arg(long, default_value_t = AnnConfig::default().expansion_add)]
    ann_ef_construction: usize,
    /// HNSW search beam (`ef`; raised to `--k` plus a query's own id when below).
    #[arg(long, default_value_t = AnnConfig::default().expansion_search)]
    ann_ef: usize,
}

impl IndexOptions {
    /// The graph's settings when search is approximate.
    fn ann(&self) -> Option<AnnConfig> {
        (self.kind == SearchIndex::Ann).then_some(AnnConfig {
            connectivity: self.ann_m,
            expansion_add: self.ann_ef_construction,
            expansion_search: self.ann_ef,
            ..AnnConfig::default()
        })
    }
}
