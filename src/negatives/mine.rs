//! `pretext mine`: negatives for every pair of a dataset, from BM25, a
//! dense model, random passages or other queries' positives, through the
//! window, mix and false-negative rules, with a statistics report.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use pretext_tasks::bm25::Analyzer;
use pretext_tasks::formats::{parse_pair_line, PairFormat};
use pretext_tasks::negatives::{
    Candidate, CorpusTexts, Kind, Miner, MiningStats, NegativesConfig, Picked, Query, Raters,
    SearchIndex, Source, TextPool,
};
use pretext_tasks::pipeline::doc_rng;
use rayon::prelude::*;

use super::ann::{self, AnnIndex};
use super::cache::EmbeddingCache;
use super::dense::{top_k, Blocks, Embeddings};
use crate::eval::embed_texts;
use crate::model::cross::{probability, PretrainedCrossEncoder};
use crate::model::pretrained::Pretrained;
use crate::tokenize::Side;

/// One query of the input: a pair (one per positive for multi-positive
/// lines) and its answer strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLine {
    /// 1-based line of the input file.
    pub line: usize,
    /// The line's query id (`query_id`, `qid`, `_id` or `id`), if any.
    pub id: Option<String>,
    /// The query.
    pub query: String,
    /// Its positive.
    pub positive: String,
    /// Strings a negative must not contain (the line's `answers` field).
    pub answers: Vec<String>,
}

/// The lines [`read_queries`] skipped under `skip_bad`.
#[derive(Debug, Default)]
pub struct SkippedLines {
    /// How many.
    pub count: usize,
    /// The first one's error.
    pub first: Option<String>,
}

/// Reads a pair dataset in any of the three layouts; an `answers` list of
/// strings on a line is kept for the answer rule. Errors name file and
/// line; a pair whose query or positive is empty (or only whitespace) is
/// one too, since nothing can be mined for it. With `skip_bad` such lines
/// are skipped and counted instead.
pub fn read_queries(path: &Path, skip_bad: bool) -> Result<(Vec<QueryLine>, SkippedLines)> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    let mut skipped = SkippedLines::default();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        match read_line(path, i + 1, line) {
            Ok(lines) => out.extend(lines),
            Err(e) if skip_bad => {
                skipped.count += 1;
                skipped.first.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(e) => return Err(e),
        }
    }
    if out.is_empty() {
        bail!("{}: no pairs", path.display());
    }
    Ok((out, skipped))
}

/// The queries of line `n` (1-based) of `path`.
fn read_line(path: &Path, n: usize, line: &[u8]) -> Result<Vec<QueryLine>> {
    let i = n - 1;
    {
        let at = || format!("{}:{}", path.display(), i + 1);
        let line = std::str::from_utf8(line).with_context(|| format!("{}: invalid UTF-8", at()))?;
        if line.trim().is_empty() {
            return Ok(Vec::new());
        }
        let pairs = parse_pair_line(line).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
        if let Some(p) = pairs
            .iter()
            .find(|p| p.query.trim().is_empty() || p.positive.trim().is_empty())
        {
            let side = if p.query.trim().is_empty() {
                "query"
            } else {
                "positive"
            };
            bail!(
                "{}: the {side} is empty; nothing to mine negatives for",
                at()
            );
        }
        let json = serde_json::from_str::<serde_json::Value>(line)?;
        let id = ["query_id", "qid", "_id", "id"]
            .iter()
            .find_map(|k| match json.get(*k)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        let answers = match json.get("answers") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .with_context(|| format!("{}: `answers` holds a non-string", at()))
                })
                .collect::<Result<_>>()?,
            Some(_) => bail!("{}: `answers` is not a list of strings", at()),
        };
        Ok(pairs
            .into_iter()
            .map(|p| QueryLine {
                line: i + 1,
                id: id.clone(),
                query: p.query,
                positive: p.positive,
                answers: answers.clone(),
            })
            .collect())
    }
}

/// A JSON object with its keys in the given order (serde_json's map sorts
/// them, and `negative_10` would come before `negative_2`):
/// sentence-transformers reads dataset columns by position.
fn ordered_object(fields: &[(String, serde_json::Value)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", serde_json::Value::String(k.clone())))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// The distinct positives of `queries` as a corpus (ids `pos-N`), the pool
/// sentence-transformers' miner uses when no corpus is given.
pub fn positives_as_corpus(queries: &[QueryLine]) -> CorpusTexts {
    let mut seen = HashMap::new();
    let mut c = CorpusTexts::default();
    for q in queries {
        if seen.insert(q.positive.as_str(), ()).is_none() {
            c.ids.push(format!("pos-{}", c.ids.len()));
            c.titles.push(String::new());
            c.bodies.push(q.positive.clone());
            c.texts.push(q.positive.clone());
            c.ordinals.push(c.ordinals.len() as u64);
        }
    }
    c
}

/// How a mining run is set up besides the `[negatives]` rules.
#[derive(Clone)]
pub struct MineSettings {
    /// The rules and the source.
    pub negatives: NegativesConfig,
    /// The dense retriever's model folder (source `dense`).
    pub model: Option<PathBuf>,
    /// Seed of every draw.
    pub seed: u64,
    /// Where models run.
    pub device: Device,
    /// Texts per encoding batch.
    pub batch_size: usize,
    /// Input length cap of the encoders.
    pub max_len: Option<usize>,
    /// Run the dense encoders' dense layers in int8 (`--int8`; CPU only).
    pub int8: bool,
    /// Corpus embedding cache.
    pub cache: Option<EmbeddingCache>,
    /// Search block sizes.
    pub blocks: Blocks,
}

/// Hears about the stages of a run.
pub trait MineProgress {
    /// A stage of `total` units starts.
    fn stage(&mut self, name: &str, total: usize);
    /// `done` units of the stage are done.
    fn advance(&mut self, done: usize);
}

/// Ignores progress.
pub struct Quiet;

impl MineProgress for Quiet {
    fn stage(&mut self, _: &str, _: usize) {}
    fn advance(&mut self, _: usize) {}
}

/// What a run produced.
pub struct Mined {
    /// Negatives per query, in input order.
    pub picks: Vec<Vec<Picked>>,
    /// The report.
    pub stats: MiningStats,
    /// Whether the corpus embeddings came from the cache (dense runs).
    pub cache_hit: Option<bool>,
}

/// Loads a dense encoder as the settings ask (device, length, int8).
fn load_model(dir: &Path, s: &MineSettings) -> Result<Pretrained> {
    let mut model = Pretrained::load(dir, &s.device, s.max_len)?;
    if s.int8 {
        model.quantize()?;
    }
    Ok(model)
}

/// Encoded corpus of a model, through the cache when there is one: the
/// embeddings, whether the cache had them, and their cache key.
fn corpus_embeddings(
    model_dir: &Path,
    model: &Pretrained,
    texts: &[String],
    s: &MineSettings,
    progress: &mut dyn MineProgress,
) -> Result<(Embeddings, bool, Option<String>)> {
    let key = match &s.cache {
        Some(_) => Some(EmbeddingCache::key(model_dir, s.max_len, s.int8, texts)?),
        None => None,
    };
    if let (Some(c), Some(k)) = (&s.cache, &key) {
        if let Some(e) = c.load(k)? {
            return Ok((e, true, key));
        }
    }
    progress.stage("encoding corpus", texts.len());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t = embed_texts(model, &refs, Side::Document, s.batch_size, &mut |n| {
        progress.advance(n)
    })?;
    let e = Embeddings::from_tensor(&t)?;
    Ok(match (&s.cache, &key) {
        (Some(c), Some(k)) => (c.store(k, &e)?, false, key),
        _ => (e, false, key),
    })
}

fn embed(model: &Pretrained, texts: &[&str], side: Side, s: &MineSettings) -> Result<Tensor> {
    embed_texts(model, texts, side, s.batch_size, &mut |_| {})
}

fn normalized_rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(crate::model::l2_normalize(t)?
        .to_device(&Device::Cpu)?
        .to_vec2::<f32>()?)
}

/// Each query's candidates from a TREC run: the run's hits for the query's
/// id (else its line number) in trec order, cut at `depth`, mapped to the
/// corpus by document id, and the positive's own score when the run lists
/// it (the margin rules need it). Hits naming documents the corpus lacks
/// are an error, as is a run that lists none of the queries.
fn run_candidates(
    path: &Path,
    queries: &[QueryLine],
    corpus: &CorpusTexts,
    item_of: &HashMap<&str, u32>,
    depth: usize,
) -> Result<Vec<(Vec<Candidate>, Option<f32>)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut run = crate::eval::beir::parse_trec_run(&text, &path.display().to_string())?;
    run.values_mut()
        .for_each(|hits| crate::eval::metrics::trec_order(hits));
    let item: HashMap<&str, u32> = corpus
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i as u32))
        .collect();
    let mut found = 0;
    let mut out = Vec::with_capacity(queries.len());
    for q in queries {
        let hits =
            q.id.as_ref()
                .and_then(|id| run.get(id))
                .or_else(|| run.get(&q.line.to_string()));
        let Some(hits) = hits else {
            out.push((Vec::new(), None));
            continue;
        };
        found += 1;
        let own = item_of.get(q.positive.as_str());
        let mut candidates = Vec::with_capacity(depth.min(hits.len()));
        let mut positive = None;
        for (doc, score) in hits {
            let Some(&i) = item.get(doc.as_str()) else {
                bail!(
                    "{}: document `{doc}` (query `{}`) is not in the corpus",
                    path.display(),
                    q.id.clone().unwrap_or_else(|| q.line.to_string())
                );
            };
            if Some(&i) == own {
                positive = Some(*score);
            }
            if candidates.len() < depth {
                candidates.push(Candidate {
                    item: i,
                    score: *score,
                });
            }
        }
        out.push((candidates, positive));
    }
    if found == 0 {
        bail!(
            "{}: none of the {} queries is in the run (its query ids must be the pair file's query ids or its 1-based line numbers)",
            path.display(),
            queries.len()
        );
    }
    Ok(out)
}

/// Each query's candidates, best first, up to `negatives.range_max`.
pub struct Retrieved {
    /// Candidates per query, in input order.
    pub ranked: Vec<Vec<Candidate>>,
    /// The retriever's score of each query's positive, when it has one.
    pub positive_scores: Vec<Option<f32>>,
    /// Whether the corpus embeddings came from the cache (dense runs).
    pub cache_hit: Option<bool>,
}

/// Each document's number by its text (with or without its title).
pub fn items_by_text(corpus: &CorpusTexts) -> HashMap<&str, u32> {
    corpus
        .texts
        .iter()
        .chain(&corpus.bodies)
        .enumerate()
        .map(|(i, t)| (t.as_str(), (i % corpus.len()) as u32))
        .collect()
}

/// The retrieval stage of `negatives.source` (BM25, dense, a run file) for
/// `queries` over `corpus`; random and gold sources retrieve nothing.
pub fn retrieve(
    queries: &[QueryLine],
    corpus: &CorpusTexts,
    item_of: &HashMap<&str, u32>,
    s: &MineSettings,
    progress: &mut dyn MineProgress,
) -> Result<Retrieved> {
    let c = &s.negatives;
    let qtexts: Vec<&str> = queries.iter().map(|q| q.query.as_str()).collect();
    let ptexts: Vec<&str> = queries.iter().map(|q| q.positive.as_str()).collect();
    let mut cache_hit = None;
    let (ranked, positive_scores): (Vec<Vec<Candidate>>, Vec<Option<f32>>) = match c.source {
        Source::Bm25 => {
            progress.stage("indexing (BM25)", corpus.len());
            let index = corpus.bm25(c.bm25);
            progress.advance(corpus.len());
            let analyzer = Analyzer::new(c.bm25);
            progress.stage("searching (BM25)", queries.len());
            queries
                .par_iter()
                .map(|q| {
                    let hits = index
                        .search_docs(&analyzer, &q.query, c.range_max)
                        .into_iter()
                        .map(|(item, score)| Candidate { item, score })
                        .collect();
                    (
                        hits,
                        Some(index.score_text(&analyzer, &q.query, &q.positive)),
                    )
                })
                .unzip()
        }
        Source::Dense => {
            let dir = s
                .model
                .as_ref()
                .context("the dense retriever needs a model folder (--model)")?;
            let model = load_model(dir, s)?;
            let (docs, hit, key) = corpus_embeddings(dir, &model, &corpus.texts, s, progress)?;
            cache_hit = Some(hit);
            progress.stage("searching (dense)", queries.len());
            let q = embed(&model, &qtexts, Side::Query, s)?;
            let p = embed(&model, &ptexts, Side::Document, s)?;
            let pos: Vec<f32> = q
                .mul(&p)?
                .sum(1)?
                .to_device(&Device::Cpu)?
                .to_vec1::<f32>()?;
            let hits = match c.index {
                SearchIndex::Exact => top_k(&q, &docs, c.range_max, s.blocks, &s.device)?,
                SearchIndex::Ann => {
                    progress.stage("linking (HNSW)", docs.rows());
                    let mut tell = |n| progress.advance(n);
                    let index = match (&s.cache, &key) {
                        (Some(cache), Some(key)) => {
                            let path = cache.file(&ann::cache_name(key, &c.ann));
                            AnnIndex::cached(&path, &docs, &c.ann, &mut tell)?.0
                        }
                        _ => AnnIndex::build(&docs, &c.ann, &mut tell)?,
                    };
                    progress.stage("searching (HNSW)", queries.len());
                    let hits = index.top_k(&q, &docs, c.range_max, &c.ann)?;
                    progress.advance(queries.len());
                    hits
                }
            };
            (hits, pos.into_iter().map(Some).collect())
        }
        Source::Run => {
            let path = c
                .run
                .as_ref()
                .context("the run retriever needs a TREC run file (--run FILE)")?;
            progress.stage("reading the run", queries.len());
            let ranked = run_candidates(path, queries, corpus, item_of, c.range_max)?;
            progress.advance(queries.len());
            ranked.into_iter().unzip()
        }
        Source::Random | Source::Gold => {
            (vec![Vec::new(); queries.len()], vec![None; queries.len()])
        }
        Source::None => bail!("no negative source: choose bm25, dense, random or gold"),
    };
    Ok(Retrieved {
        ranked,
        positive_scores,
        cache_hit,
    })
}

/// Mines negatives for `queries` from `corpus`.
pub fn mine(
    queries: &[QueryLine],
    corpus: &CorpusTexts,
    s: &MineSettings,
    progress: &mut dyn MineProgress,
) -> Result<Mined> {
    let c = &s.negatives;
    c.validate().map_err(anyhow::Error::msg)?;
    if corpus.is_empty() {
        bail!("the corpus has no documents");
    }
    let qtexts: Vec<&str> = queries.iter().map(|q| q.query.as_str()).collect();
    let item_of = items_by_text(corpus);
    let Retrieved {
        ranked,
        positive_scores,
        cache_hit,
    } = retrieve(queries, corpus, &item_of, s, progress)?;
    // RocketQA-style denoising: the second encoder's cosine similarity.
    let rescore: Option<(Vec<Vec<f32>>, Embeddings)> = match &c.rescore {
        Some(dir) => {
            let model = load_model(dir, s)?;
            let (docs, _, _) = corpus_embeddings(dir, &model, &corpus.texts, s, progress)?;
            let d = crate::model::l2_normalize(&docs.block(0, docs.rows(), &Device::Cpu)?)?;
            let docs = Embeddings::from_tensor(&d)?;
            Some((
                normalized_rows(&embed(&model, &qtexts, Side::Query, s)?)?,
                docs,
            ))
        }
        None => None,
    };
    let cross = match &c.rescore_ce {
        Some(dir) => Some(cross_probabilities(
            dir, queries, &ranked, corpus, s, progress,
        )?),
        None => None,
    };
    let gold: Vec<String> = queries.iter().map(|q| q.positive.clone()).collect();
    progress.stage("mining", queries.len());
    let miner = Miner::new(c);
    let results: Vec<(Vec<Picked>, MiningStats)> = queries
        .par_iter()
        .enumerate()
        .map(|(i, q)| {
            let mut rng = doc_rng(s.seed, i as u64);
            let mut stats = MiningStats::default();
            let (easy, kind, exclude): (&dyn TextPool, Kind, Option<u32>) = match c.source {
                Source::Gold => (&gold, Kind::Gold, Some(i as u32)),
                _ => (
                    corpus,
                    Kind::Random,
                    item_of.get(q.positive.as_str()).copied(),
                ),
            };
            let query = Query {
                positive: &q.positive,
                positive_score: positive_scores[i],
                answers: &q.answers,
                exclude,
            };
            let rate = rescore.as_ref().map(|(qs, docs)| {
                let qv = &qs[i];
                move |item: u32| -> f32 {
                    docs.row(item as usize)
                        .iter()
                        .zip(qv)
                        .map(|(a, b)| a * b)
                        .sum()
                }
            });
            let rate_cross = cross.as_ref().map(|all| {
                let mine = &all[i];
                // Every candidate of the window was rated.
                move |item: u32| mine.get(&item).copied().unwrap_or(1.0)
            });
            let raters = Raters {
                encoder: rate.as_ref().map(|f| f as &dyn Fn(u32) -> f32),
                cross: rate_cross.as_ref().map(|f| f as &dyn Fn(u32) -> f32),
            };
            let picks = miner.mine(
                &query,
                &ranked[i],
                corpus,
                (easy, kind),
                raters,
                &mut rng,
                &mut stats,
            );
            (picks, stats)
        })
        .collect();
    let mut stats = MiningStats::default();
    let mut picks = Vec::with_capacity(results.len());
    for (p, st) in results {
        picks.push(p);
        stats.merge(st);
    }
    progress.advance(queries.len());
    Ok(Mined {
        picks,
        stats,
        cache_hit,
    })
}

/// The cross-encoder's probability of relevance (`sigmoid` of its score)
/// of every candidate in each query's rank window, by pool item: RocketQA's
/// denoising asks it of hard candidates only, and these are all of them.
fn cross_probabilities(
    dir: &std::path::Path,
    queries: &[QueryLine],
    ranked: &[Vec<Candidate>],
    corpus: &CorpusTexts,
    s: &MineSettings,
    progress: &mut dyn MineProgress,
) -> Result<Vec<rustc_hash::FxHashMap<u32, f32>>> {
    let ce = PretrainedCrossEncoder::load(dir, &s.device, None)
        .with_context(|| format!("loading the cross-encoder {}", dir.display()))?;
    let c = &s.negatives;
    progress.stage("rating (cross-encoder)", queries.len());
    let mut out = Vec::with_capacity(queries.len());
    for (i, (q, cands)) in queries.iter().zip(ranked).enumerate() {
        let lo = c.range_min.min(cands.len());
        let hi = c.range_max.min(cands.len());
        let window = &cands[lo..hi];
        let pairs: Vec<(&str, &str)> = window
            .iter()
            .map(|cand| (q.query.as_str(), corpus.texts[cand.item as usize].as_str()))
            .collect();
        let scores = ce.score(&pairs, s.batch_size)?;
        out.push(
            window
                .iter()
                .zip(scores)
                .map(|(cand, r)| (cand.item, probability(r)))
                .collect(),
        );
        progress.advance(i + 1);
    }
    Ok(out)
}

/// Output layouts of `pretext mine`: the three pair formats, or ids with
/// ranks and scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MineFormat {
    /// A pair dataset layout.
    Pairs(PairFormat),
    /// `{"line", "query", "positive_id", "negatives": [{"id", "rank", "score", "kind"}]}`.
    Ids,
}

impl std::str::FromStr for MineFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "ids" {
            return Ok(MineFormat::Ids);
        }
        Ok(MineFormat::Pairs(s.parse().map_err(|e| {
            anyhow::anyhow!("{e} (or `ids` for ids with ranks and scores)")
        })?))
    }
}

/// Writes the mined dataset, one line per query.
/// BM25 as a lexical teacher (SPAR's Λ, Chen et al., 2021): the BM25
/// score of each query against its positive and against each of its mined
/// negatives, with the corpus's statistics, for distillation
/// (`mine --teacher-scores bm25`; `train.teacher` learns from them).
pub fn bm25_teacher_scores(
    queries: &[QueryLine],
    corpus: &CorpusTexts,
    mined: &Mined,
    config: pretext_tasks::bm25::Bm25Config,
) -> Vec<Vec<f32>> {
    let index = corpus.bm25(config);
    let analyzer = Analyzer::new(config);
    queries
        .par_iter()
        .zip(&mined.picks)
        .map(|(q, picks)| {
            scored_texts(queries, corpus, q, picks)
                .map(|t| index.score_text(&analyzer, &q.query, t))
                .collect()
        })
        .collect()
}

/// A query's positive, then each of its picked negatives' texts: what a
/// teacher scores for it.
fn scored_texts<'a>(
    queries: &'a [QueryLine],
    corpus: &'a CorpusTexts,
    q: &'a QueryLine,
    picks: &'a [Picked],
) -> impl Iterator<Item = &'a str> + 'a {
    std::iter::once(q.positive.as_str()).chain(picks.iter().map(|p| match p.kind {
        Kind::Gold => queries[p.item as usize].positive.as_str(),
        _ => corpus.texts[p.item as usize].as_str(),
    }))
}

/// A cross-encoder as the teacher (RocketQA, and the MS MARCO hard-negative
/// datasets sentence-transformers' MarginMSE trains on): its relevance
/// score (the raw logit, as those datasets keep it) of each query against
/// its positive and each of its mined negatives, `batch_size` pairs at a
/// time; `progress` is told how many queries are done.
pub fn cross_encoder_teacher_scores(
    queries: &[QueryLine],
    corpus: &CorpusTexts,
    mined: &Mined,
    ce: &PretrainedCrossEncoder,
    batch_size: usize,
    progress: &mut dyn MineProgress,
) -> Result<Vec<Vec<f32>>> {
    progress.stage("teacher scores (cross-encoder)", queries.len());
    let mut pairs = Vec::new();
    let mut lens = Vec::with_capacity(queries.len());
    for (q, picks) in queries.iter().zip(&mined.picks) {
        let before = pairs.len();
        pairs.extend(scored_texts(queries, corpus, q, picks).map(|t| (q.query.as_str(), t)));
        lens.push(pairs.len() - before);
    }
    // Scored in blocks of whole queries, so the bar moves.
    let mut out = Vec::with_capacity(queries.len());
    let (mut at, mut done) = (0, 0);
    for block in lens.chunks(64) {
        let n: usize = block.iter().sum();
        let mut scores = ce.score(&pairs[at..at + n], batch_size)?.into_iter();
        for &len in block {
            out.push(scores.by_ref().take(len).collect());
        }
        at += n;
        done += block.len();
        progress.advance(done);
    }
    Ok(out)
}

/// Writes the mined dataset, one line per query; with `scores` (one list
/// per query: the positive's, then each negative's) each line carries its
/// teacher scores as the layout keeps them (`scores`; `pos_scores` and
/// `neg_scores`; a `score` in each Tevatron passage).
pub fn write_mined(
    out: &mut dyn Write,
    format: MineFormat,
    queries: &[QueryLine],
    corpus: &CorpusTexts,
    mined: &Mined,
    scores: Option<&[Vec<f32>]>,
) -> Result<()> {
    use serde_json::{json, Value};
    let text = |p: &Picked| -> &str {
        match p.kind {
            Kind::Gold => &queries[p.item as usize].positive,
            _ => &corpus.texts[p.item as usize],
        }
    };
    let id = |p: &Picked| -> String {
        match p.kind {
            Kind::Gold => format!("positive-of-line-{}", queries[p.item as usize].line),
            _ => corpus.ids[p.item as usize].clone(),
        }
    };
    let passage = |p: &Picked| -> Value {
        match p.kind {
            Kind::Gold => json!({"docid": id(p), "title": "", "text": text(p)}),
            _ => {
                let i = p.item as usize;
                json!({"docid": corpus.ids[i], "title": corpus.titles[i], "text": corpus.bodies[i]})
            }
        }
    };
    for (i, (q, picks)) in queries.iter().zip(&mined.picks).enumerate() {
        let row = match format {
            MineFormat::Pairs(PairFormat::SentenceTransformers) => {
                let mut fields = vec![
                    ("anchor".to_string(), json!(q.query)),
                    ("positive".to_string(), json!(q.positive)),
                ];
                for (j, p) in picks.iter().enumerate() {
                    fields.push((format!("negative_{}", j + 1), json!(text(p))));
                }
                if let Some(s) = scores {
                    fields.push(("scores".to_string(), json!(s[i])));
                }
                out.write_all(ordered_object(&fields).as_bytes())?;
                out.write_all(b"\n")?;
                continue;
            }
            MineFormat::Pairs(PairFormat::Flag) => json!({
                "query": q.query, "pos": [q.positive],
                "neg": picks.iter().map(text).collect::<Vec<_>>(),
            }),
            MineFormat::Pairs(PairFormat::Tevatron) => json!({
                "query_id": format!("{}", i + 1),
                "query": q.query,
                "positive_passages": [{"docid": "", "title": "", "text": q.positive}],
                "negative_passages": picks.iter().map(passage).collect::<Vec<_>>(),
            }),
            MineFormat::Ids => json!({
                "line": q.line,
                "query": q.query,
                "negatives": picks.iter().map(|p| json!({
                    "id": id(p), "rank": p.rank, "score": p.score, "kind": p.kind,
                })).collect::<Vec<_>>(),
            }),
        };
        let row = match (scores, format, row) {
            (Some(s), MineFormat::Pairs(PairFormat::Flag), mut row) => {
                row["pos_scores"] = json!([s[i][0]]);
                row["neg_scores"] = json!(s[i][1..]);
                row
            }
            (Some(s), MineFormat::Pairs(PairFormat::Tevatron), mut row) => {
                row["positive_passages"][0]["score"] = json!(s[i][0]);
                for (j, v) in s[i][1..].iter().enumerate() {
                    row["negative_passages"][j]["score"] = json!(v);
                }
                row
            }
            (_, _, row) => row,
        };
        serde_json::to_writer(&mut *out, &row)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
