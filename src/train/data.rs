//! The training data stream: a producer thread turns a pretext task over a
//! corpus (or a pair dataset on disk) into tokenized batches while the
//! device computes. The order is a function of the seed alone, so a resumed
//! run skips the batches it has seen and continues with the same ones.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{anyhow, Context, Result};
use pretext_tasks::augment::Augmentations;
use pretext_tasks::corpus::{Corpus, CorpusConfig, Format};
use pretext_tasks::formats::{flat, parse_pair_line, OwnedPair};
use pretext_tasks::negatives::{MiningStats, PairNegatives};
use pretext_tasks::pipeline::{doc_rng, for_each_batch, ReadOptions};
use pretext_tasks::tasks::{PretextTask, TaskSpec};
use pretext_tasks::Error as DataError;
use rand::{RngExt, SeedableRng};

use crate::tokenize::{PairTokenizer, Side, TokenBatch};

/// Where training pairs come from.
// One value per run, moved once into the data thread: boxing the task's
// variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum PairSource {
    /// A pretext task over a corpus.
    Task {
        /// The corpus.
        corpus: Corpus,
        /// The task.
        task: TaskSpec,
        /// Augmentations after the task.
        augment: Augmentations,
        /// Shard and bad-record handling.
        read: ReadOptions,
        /// Documents kept out of training (the self-supervised dev set's).
        held_out: Option<crate::train::dev::HeldOut>,
        /// Which documents' pairs may share a batch (`batch.group_by`).
        groups: Grouping,
    },
    /// A pair dataset (sentence-transformers, FlagEmbedding or Tevatron JSONL).
    File {
        /// The dataset, read as JSONL.
        corpus: Corpus,
        /// Skip bad lines instead of stopping.
        skip_bad: bool,
    },
}

/// The group of a document under `batch.group_by`.
#[derive(Debug, Clone, Default)]
pub enum Grouping {
    /// No grouping.
    #[default]
    None,
    /// The document's source file.
    File,
    /// Its cluster, by corpus ordinal ([`crate::train::cluster`]).
    Cluster(Arc<rustc_hash::FxHashMap<u64, u32>>),
}

impl Grouping {
    /// The group of `doc`, if grouping.
    fn of(&self, doc: &pretext_tasks::corpus::Document<'_>) -> Option<u64> {
        match self {
            Grouping::None => None,
            Grouping::File => Some(u64::from(doc.source)),
            Grouping::Cluster(c) => c.get(&doc.ordinal).map(|&c| u64::from(c)),
        }
    }
}

impl PairSource {
    /// Opens a pair dataset file or folder.
    pub fn file(path: &std::path::Path, skip_bad: bool) -> Result<PairSource> {
        // Lines are read whole, as plain-text documents, and parsed here: the
        // reader still cuts, maps and locates them.
        let config = CorpusConfig {
            format: Format::Text,
            ..CorpusConfig::default()
        };
        let corpus = Corpus::open(path, config)
            .with_context(|| format!("opening pairs {}", path.display()))?;
        Ok(PairSource::File { corpus, skip_bad })
    }
}

/// The consistency filter on the stream (`train.filter`): pairs are
/// judged `pool` at a time by a frozen model, before shuffling.
pub struct PairFilter {
    /// The judging model.
    pub model: crate::model::pretrained::Pretrained,
    /// Rank the positive must reach among the pool's positives.
    pub top_k: usize,
    /// Pairs judged together.
    pub pool: usize,
    /// Pairs kept and dropped so far.
    pub counts: Arc<Mutex<crate::filter::Filtered>>,
}

/// A tokenized training batch.
pub struct Batch {
    /// Queries.
    pub queries: TokenBatch,
    /// Positives.
    pub positives: TokenBatch,
    /// Hard negatives, `batch × n` rows, and which of them exist (0/1).
    pub hard: Option<(TokenBatch, Vec<u32>)>,
    /// Queries' texts (LTRe's lexical teacher scores them with BM25).
    pub query_texts: Vec<String>,
    /// Positives' texts (dense mining checks candidates against them).
    pub positive_texts: Vec<String>,
    /// Corpus ordinal of the document each pair came from, when known.
    pub sources: Vec<Option<u64>>,
    /// Teacher scores of each pair's positive and its own first
    /// `train.hard_negatives` negatives, when every pair of the batch
    /// carries them (`scores` in the pair file, or the `spar` task's).
    pub scores: Option<BatchScores>,
}

/// Teacher scores of a batch: a pair may have fewer scored negatives than
/// `train.hard_negatives` (a `spar` query BM25 matches in only three
/// documents, a pair file line with two negatives), and its other
/// candidates, absent or mined, are left out of the teacher's loss.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchScores {
    /// `batch × (1 + n)` row-major: the positive's score, then each
    /// negative's (0 where unknown).
    pub values: Vec<f32>,
    /// `batch × n`: 1 where the teacher scored that negative.
    pub known: Vec<u32>,
}

/// A pair in the stream: the texts and the document it came from.
struct StreamPair {
    pair: OwnedPair,
    source: Option<u64>,
    /// Its batch group (`batch.group_by`).
    group: Option<u64>,
}

impl super::compose::Keyed for StreamPair {
    fn query(&self) -> &str {
        &self.pair.query
    }
    fn positive(&self) -> &str {
        &self.pair.positive
    }
    fn document(&self) -> Option<u64> {
        self.source
    }
    fn group(&self) -> Option<u64> {
        self.group
    }
}

/// Stream settings.
#[derive(Debug, Clone, Copy)]
pub struct StreamConfig {
    /// Seed of the task, the augmentations and the shuffle.
    pub seed: u64,
    /// Pairs per batch.
    pub batch_size: usize,
    /// Pairs held for shuffling (1: corpus order).
    pub shuffle_buffer: usize,
    /// Hard negatives per query taken from the pairs (0: none); with mined
    /// negatives, the pair's own come first and the mined ones after.
    pub hard_negatives: usize,
    /// Of those, the pair's own negatives kept before mined ones are added.
    pub own_negatives: usize,
    /// Batches already consumed (resume): generated again and dropped.
    pub skip_batches: usize,
    /// This rank: batches hold `batch_size / world` pairs, the rank's share.
    pub rank: usize,
    /// Ranks sharing each batch.
    pub world: usize,
    /// Which pairs may share a batch.
    pub rules: crate::config::BatchSection,
}

/// Receives batches from the producer thread.
pub struct BatchStream {
    rx: Receiver<Result<Batch>>,
    handle: Option<JoinHandle<()>>,
}

impl BatchStream {
    /// Starts the producer; `negatives` adds mined negatives to every pair
    /// and reports what it saw to `stats`.
    pub fn start(
        source: PairSource,
        tokenizer: PairTokenizer,
        config: StreamConfig,
        negatives: Option<(Arc<PairNegatives>, Arc<Mutex<MiningStats>>)>,
        filter: Option<PairFilter>,
    ) -> Result<BatchStream> {
        let (tx, rx) = sync_channel(4);
        let handle = std::thread::Builder::new()
            .name("pretext-data".into())
            .spawn(move || {
                let err_tx = tx.clone();
                if let Err(e) = produce(source, tokenizer, config, negatives, filter, tx) {
                    let _ = err_tx.send(Err(e));
                }
            })
            .context("starting the data thread")?;
        Ok(BatchStream {
            rx,
            handle: Some(handle),
        })
    }

    /// The next batch.
    pub fn next_batch(&mut self) -> Result<Batch> {
        self.rx
            .recv()
            .map_err(|_| anyhow!("the data thread stopped"))?
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        // Closing the channel stops the producer at its next send.
        let (_, rx) = sync_channel(1);
        drop(std::mem::replace(&mut self.rx, rx));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The consumer hung up: not an error, the run is over.
fn stopped() -> DataError {
    DataError::Write(std::io::Error::other("training finished"))
}

struct Batcher {
    tokenizer: PairTokenizer,
    config: StreamConfig,
    tx: SyncSender<Result<Batch>>,
    rng: rand::rngs::Xoshiro256PlusPlus,
    buffer: Vec<StreamPair>,
    composer: super::compose::Composer<StreamPair>,
    emitted: usize,
    /// The consistency filter and the pairs waiting for its judgement.
    filter: Option<(PairFilter, Vec<StreamPair>)>,
}

impl Batcher {
    /// Takes a pair from the task or file: straight in, or through the
    /// consistency filter when there is one.
    fn push(&mut self, pair: StreamPair) -> Result<(), DataError> {
        match &mut self.filter {
            Some((f, waiting)) => {
                waiting.push(pair);
                if waiting.len() >= f.pool {
                    self.judge()?;
                }
                Ok(())
            }
            None => self.admit(pair),
        }
    }

    /// Judges the pairs waiting for the filter and admits the kept ones.
    fn judge(&mut self) -> Result<(), DataError> {
        let Some((f, waiting)) = &mut self.filter else {
            return Ok(());
        };
        let pool = std::mem::take(waiting);
        if pool.is_empty() {
            return Ok(());
        }
        let q: Vec<&str> = pool.iter().map(|p| p.pair.query.as_str()).collect();
        let p: Vec<&str> = pool.iter().map(|p| p.pair.positive.as_str()).collect();
        let keep = crate::filter::consistent(&f.model, &q, &p, f.top_k, 64)
            .map_err(|e| DataError::Config(format!("train.filter: {e:#}")))?;
        {
            let mut counts = f.counts.lock().expect("filter counts");
            let kept = keep.iter().filter(|&&k| k).count();
            counts.kept += kept;
            counts.dropped += keep.len() - kept;
        }
        for (pair, keep) in pool.into_iter().zip(keep) {
            if keep {
                self.admit(pair)?;
            }
        }
        Ok(())
    }

    fn admit(&mut self, pair: StreamPair) -> Result<(), DataError> {
        self.buffer.push(pair);
        if self.buffer.len() >= self.config.shuffle_buffer.max(1) {
            let i = self.rng.random_range(0..self.buffer.len());
            let pair = self.buffer.swap_remove(i);
            let full = self.composer.offer(pair).map_err(DataError::Config)?;
            for pairs in full {
                self.emitted += 1;
                if self.emitted > self.config.skip_batches {
                    let share = pairs.len() / self.config.world.max(1);
                    let start = self.config.rank * share;
                    let batch = self.tokenize(&pairs[start..start + share]);
                    self.tx.send(batch).map_err(|_| stopped())?;
                }
            }
        }
        Ok(())
    }

    fn tokenize(&self, stream: &[StreamPair]) -> Result<Batch> {
        let pairs: Vec<&OwnedPair> = stream.iter().map(|p| &p.pair).collect();
        let q: Vec<&str> = pairs.iter().map(|p| p.query.as_str()).collect();
        let p: Vec<&str> = pairs.iter().map(|p| p.positive.as_str()).collect();
        let n = self.config.hard_negatives;
        let hard = if n > 0 {
            let mut texts = Vec::with_capacity(pairs.len() * n);
            let mut present = Vec::with_capacity(pairs.len() * n);
            for pair in &pairs {
                for i in 0..n {
                    let neg = pair.negatives.get(i);
                    texts.push(neg.map_or("", String::as_str));
                    present.push(neg.is_some() as u32);
                }
            }
            Some((self.tokenizer.encode(Side::Document, &texts)?, present))
        } else {
            None
        };
        Ok(Batch {
            queries: self.tokenizer.encode(Side::Query, &q)?,
            positives: self.tokenizer.encode(Side::Document, &p)?,
            hard,
            query_texts: q.iter().map(|s| s.to_string()).collect(),
            positive_texts: p.iter().map(|s| s.to_string()).collect(),
            sources: stream.iter().map(|p| p.source).collect(),
            scores: teacher_scores(&pairs, self.config.own_negatives),
        })
    }
}

/// Salt of the generator mined negatives are drawn with.
const NEGATIVES_SALT: u64 = 0x0e9a_71e5_7a41_0000;

/// Keeps the pair's first `own` negatives and appends mined ones.
fn with_mined(
    mut pair: OwnedPair,
    source: Option<u64>,
    own: usize,
    negatives: Option<&(Arc<PairNegatives>, Arc<Mutex<MiningStats>>)>,
    rng: &mut impl rand::Rng,
) -> StreamPair {
    if let Some((n, total)) = negatives {
        pair.negatives.truncate(own);
        let mut stats = MiningStats::default();
        let mined = n.negatives(&pair.query, &pair.positive, source, rng, &mut stats);
        pair.negatives.extend(mined);
        total.lock().expect("mining stats").merge(stats);
    }
    StreamPair {
        pair,
        source,
        group: None,
    }
}

/// The teacher scores of the positive and the first `own` negatives of
/// every pair, row after row, if every pair has a score for its positive.
fn teacher_scores(pairs: &[&OwnedPair], own: usize) -> Option<BatchScores> {
    let mut values = Vec::with_capacity(pairs.len() * (own + 1));
    let mut known = Vec::with_capacity(pairs.len() * own);
    for p in pairs {
        let s = p.scores.as_ref().filter(|s| !s.is_empty())?;
        // Scores beyond the pair's own negatives would belong to none of
        // its candidates.
        let scored = (s.len() - 1).min(own).min(p.negatives.len());
        values.push(s[0]);
        for i in 0..own {
            values.push(if i < scored { s[i + 1] } else { 0.0 });
            known.push(u32::from(i < scored));
        }
    }
    Some(BatchScores { values, known })
}

/// Bad records the stream skipped under `--skip-bad`: reported once, after
/// the first pass over the data (later passes read the same records).
#[derive(Default)]
struct Skipped {
    /// Records skipped: unreadable ones and pair lines that did not parse.
    count: u64,
    /// The first skipped record's error.
    first: Option<String>,
}

impl Skipped {
    /// Takes in the records the reader skipped in one batch.
    fn saw_read(&mut self, batch: &pretext_tasks::pipeline::ReadReport) {
        self.count += batch.skipped;
        if self.first.is_none() {
            self.first = batch.skipped_examples.first().cloned();
        }
    }

    fn saw_parse(&mut self, error: String) {
        self.count += 1;
        self.first.get_or_insert(error);
    }

    fn report(&self) {
        if let Some(first) = &self.first {
            eprintln!(
                "warning: skipped {} bad training records (--skip-bad); the first: {first}",
                self.count
            );
        }
    }
}

fn produce(
    source: PairSource,
    tokenizer: PairTokenizer,
    config: StreamConfig,
    negatives: Option<(Arc<PairNegatives>, Arc<Mutex<MiningStats>>)>,
    filter: Option<PairFilter>,
    tx: SyncSender<Result<Batch>>,
) -> Result<()> {
    let negatives = negatives.as_ref();
    let mut batcher = Batcher {
        tokenizer,
        config,
        tx,
        rng: rand::rngs::Xoshiro256PlusPlus::seed_from_u64(config.seed ^ 0x5eed_da7a),
        buffer: Vec::new(),
        composer: super::compose::Composer::new(config.rules, config.batch_size),
        emitted: 0,
        filter: filter.map(|f| (f, Vec::new())),
    };
    let mut skipped = Skipped::default();
    for epoch in 0u64.. {
        let before =
            batcher.emitted * config.batch_size + batcher.composer.held() + batcher.buffer.len();
        let result = match &source {
            PairSource::Task {
                corpus,
                task,
                augment,
                read,
                held_out,
                groups,
            } => {
                let seed = config
                    .seed
                    .wrapping_add(epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let work = |doc: &pretext_tasks::corpus::Document<'_>| {
                    if held_out.is_some_and(|h| h.contains(doc.ordinal)) {
                        return Vec::new();
                    }
                    let mut rng = doc_rng(seed, doc.ordinal);
                    let mut neg_rng = doc_rng(seed ^ NEGATIVES_SALT, doc.ordinal);
                    let mut pairs = task.pairs(doc, &mut rng);
                    pairs
                        .iter_mut()
                        .map(|p| {
                            augment.apply(p, &mut rng);
                            let pair = OwnedPair {
                                scores: p.scores.take(),
                                query: flat(&p.query).into_owned(),
                                positive: flat(&p.positive).into_owned(),
                                negatives: p
                                    .negatives
                                    .iter()
                                    .map(|n| flat(n).into_owned())
                                    .collect(),
                            };
                            let mut p = with_mined(
                                pair,
                                Some(doc.ordinal),
                                config.own_negatives,
                                negatives,
                                &mut neg_rng,
                            );
                            p.group = groups.of(doc);
                            p
                        })
                        .collect::<Vec<_>>()
                };
                for_each_batch(corpus, *read, work, |batch, report| {
                    skipped.saw_read(report);
                    batch
                        .into_iter()
                        .flatten()
                        .try_for_each(|p| batcher.push(p))
                })
                .map(|_| ())
            }
            PairSource::File { corpus, skip_bad } => {
                let opts = ReadOptions {
                    skip_bad: *skip_bad,
                    ..ReadOptions::default()
                };
                let salt = config.seed ^ NEGATIVES_SALT ^ epoch.wrapping_mul(0x9E37_79B9);
                let parse = |doc: &pretext_tasks::corpus::Document<'_>| {
                    let mut rng = doc_rng(salt, doc.ordinal);
                    parse_pair_line(&doc.text)
                        .map(|pairs| {
                            pairs
                                .into_iter()
                                .map(|p| {
                                    with_mined(p, None, config.own_negatives, negatives, &mut rng)
                                })
                                .collect::<Vec<_>>()
                        })
                        .map_err(|e| format!("{}: {e}", doc.place()))
                };
                for_each_batch(corpus, opts, parse, |batch, report| {
                    skipped.saw_read(report);
                    for pairs in batch {
                        match pairs {
                            Ok(pairs) => pairs.into_iter().try_for_each(|p| batcher.push(p))?,
                            Err(e) if *skip_bad => skipped.saw_parse(e),
                            Err(e) => return Err(DataError::Config(format!("pair dataset: {e}"))),
                        }
                    }
                    Ok(())
                })
                .map(|_| ())
            }
        };
        if epoch == 0 {
            skipped.report();
        }
        // The epoch's last pairs are judged in a smaller pool.
        let result = result.and_then(|()| batcher.judge());
        match result {
            Err(DataError::Write(e)) if e.to_string() == "training finished" => return Ok(()),
            Err(e) => return Err(e.into()),
            Ok(()) => {}
        }
        let after =
            batcher.emitted * config.batch_size + batcher.composer.held() + batcher.buffer.len();
        if after == before {
            if let Some((f, _)) = &batcher.filter {
                let c = *f.counts.lock().expect("filter counts");
                if c.dropped > 0 {
                    return Err(anyhow!(
                        "the training data gives no pairs: the consistency filter (train.filter, top {}) dropped all {} of them; raise train.filter.top_k or drop the filter",
                        f.top_k,
                        c.dropped
                    ));
                }
            }
            return Err(match &source {
                PairSource::Task { task, corpus, .. } => anyhow!(
                    "the training data gives no pairs: the {} task made none from {}: {}",
                    task.name(),
                    corpus
                        .sources()
                        .first()
                        .map_or(String::new(), |s| s.path.display().to_string()),
                    task.needs()
                ),
                PairSource::File { .. } => anyhow!("the training data gives no pairs"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(negatives: usize, scores: Option<Vec<f32>>) -> OwnedPair {
        OwnedPair {
            query: "q".into(),
            positive: "p".into(),
            negatives: (0..negatives).map(|i| format!("n{i}")).collect(),
            scores,
        }
    }

    #[test]
    fn teacher_scores_mark_the_candidates_they_score() {
        let full = pair(3, Some(vec![9.0, 8.0, 7.0, 6.0]));
        // A spar query BM25 matched in two documents: one scored negative.
        let short = pair(1, Some(vec![5.0, 4.0]));
        // Two own negatives and a mined third: the third has no score.
        let mined = pair(3, Some(vec![3.0, 2.0, 1.0]));
        let t = teacher_scores(&[&full, &short, &mined], 3).unwrap();
        assert_eq!(
            t.values,
            [9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 0.0, 0.0, 3.0, 2.0, 1.0, 0.0]
        );
        assert_eq!(t.known, [1, 1, 1, 1, 0, 0, 1, 1, 0]);
        // A pair without any score leaves the batch without a teacher.
        assert!(teacher_scores(&[&full, &pair(3, None)], 3).is_none());
    }
}
