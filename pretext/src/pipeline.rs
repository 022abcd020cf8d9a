//! Runs a function over every document of a shard in parallel batches and
//! hands the results back in corpus order, so output never depends on the
//! number of threads, and memory is bounded by one batch, not the corpus.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use rand::SeedableRng;
use rayon::prelude::*;

use crate::augment::Augmentations;
use std::sync::mpsc::Receiver;

use crate::corpus::stream::{self, Parsed, Plan, Unit};
use crate::corpus::{Body, Corpus, Cutter, Document, Record, Start};
use crate::error::{Error, Result};
use crate::formats::{flat, line_size_hint, write_pair, write_runs, Lines, PairFormat};
use crate::idf::DocFreq;
use crate::negatives::{MiningStats, PairNegatives};
use crate::shard::Shard;
use crate::tasks::{PretextTask, TaskSpec, Text};

/// The random generator every task and augmentation draws from.
pub type TaskRng = rand::rngs::Xoshiro256PlusPlus;

/// The generator of one document: a function of the run seed and the
/// document's corpus ordinal only (not of threads, batches or shards).
pub fn doc_rng(seed: u64, ordinal: u64) -> TaskRng {
    TaskRng::seed_from_u64(splitmix(
        seed ^ splitmix(ordinal.wrapping_add(0x5851_F42D_4C95_7F2D)),
    ))
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How to walk a corpus.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// The shard to read.
    pub shard: Shard,
    /// Skip (and count) bad records instead of stopping at the first.
    pub skip_bad: bool,
    /// Records per parallel batch.
    pub batch_records: usize,
    /// Bytes per parallel batch (whichever limit comes first).
    pub batch_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            shard: Shard::ALL,
            skip_bad: false,
            batch_records: 4096,
            batch_bytes: 8 << 20,
        }
    }
}

/// What a walk over the corpus saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// Documents read (in the shard, bad ones excluded).
    pub documents: u64,
    /// Bytes of those records.
    pub bytes: u64,
    /// Bad records (and empty files) skipped.
    pub skipped: u64,
    /// The first few skipped records' errors, for the report.
    pub skipped_examples: Vec<String>,
}

/// How many skipped records are quoted in a [`ReadReport`].
const EXAMPLES: usize = 5;

/// Calls `work` on every document of the shard, in parallel, and `consume`
/// on each batch of results in corpus order. `consume` also sees the
/// batch's own report (bytes and documents, for progress; records skipped).
///
/// Mapped files are cut in place; streamed ones (compressed, WET,
/// MediaWiki) are decompressed and parsed on threads of their own, a few
/// files ahead of the walk (so a folder of dumps decompresses in
/// parallel), and their documents take ordinals in the same file order.
pub fn for_each_batch<'c, T, W, C>(
    corpus: &'c Corpus,
    opts: ReadOptions,
    work: W,
    mut consume: C,
) -> Result<ReadReport>
where
    T: Send,
    W: Fn(&Document<'_>) -> T + Sync,
    C: FnMut(Vec<T>, &ReadReport) -> Result<()>,
{
    let mut walk = Walk {
        corpus,
        opts,
        work: &work,
        consume: &mut consume,
        report: ReadReport::default(),
    };
    let sep = corpus.config().doc_sep;
    let full = |items: &[Item<'_>], bytes: usize| {
        items.len() >= opts.batch_records || bytes >= opts.batch_bytes
    };
    // Bad records found while cutting (empty files) wait in the batch so
    // they are reported in corpus order, after the documents before them.
    let mut batch: Vec<Item<'c>> = Vec::with_capacity(opts.batch_records);
    let mut batch_bytes = 0;
    let mut ordinal = 0u64;
    let mut ahead = Ahead::new(corpus, (opts.batch_bytes / 8).clamp(1 << 12, 1 << 20));
    for (i, source) in corpus.sources().iter().enumerate() {
        let index = i as u32;
        let stream = match &source.body {
            Body::Mapped(bytes) => {
                let mut cutter = Cutter::new(bytes, index, sep, Start::file(ordinal), true);
                let mut any = false;
                for r in &mut cutter {
                    any = true;
                    if opts.shard.contains(r.ordinal) {
                        batch_bytes += r.bytes.len();
                        batch.push(Item::Record(r));
                    }
                    if full(&batch, batch_bytes) {
                        walk.run(&mut batch)?;
                        batch_bytes = 0;
                    }
                }
                ordinal = cutter.ordinal();
                if !any {
                    batch.push(Item::Bad(Error::EmptyFile {
                        path: source.path.clone(),
                    }));
                }
                continue;
            }
            Body::Streamed(_) => ahead.take(i),
        };
        walk.run(&mut batch)?;
        batch_bytes = 0;
        let mut any = false;
        let mut finished = false;
        for unit in stream {
            let mut items = Vec::new();
            let mut bytes = 0;
            match unit {
                Unit::Bytes {
                    data,
                    offset,
                    line,
                    ends_file,
                } => {
                    let start = Start {
                        offset,
                        line,
                        ordinal,
                    };
                    let mut cutter = Cutter::new(&data, index, sep, start, ends_file);
                    for r in &mut cutter {
                        any = true;
                        if opts.shard.contains(r.ordinal) {
                            bytes += r.bytes.len();
                            items.push(Item::Record(r));
                        }
                        if full(&items, bytes) {
                            walk.run(&mut items)?;
                            bytes = 0;
                        }
                    }
                    ordinal = cutter.ordinal();
                    walk.run(&mut items)?;
                }
                Unit::Docs(docs) => {
                    for doc in docs {
                        any = true;
                        let o = ordinal;
                        ordinal += 1;
                        if opts.shard.contains(o) {
                            items.push(match doc {
                                Ok(doc) => Item::Parsed {
                                    doc,
                                    ordinal: o,
                                    source: index,
                                },
                                Err(e) => Item::Bad(e),
                            });
                        }
                    }
                    walk.run(&mut items)?;
                }
                Unit::Failed(e) => {
                    any = true;
                    items.push(Item::Bad(e));
                    walk.run(&mut items)?;
                }
                Unit::Done => finished = true,
            }
        }
        if !finished {
            return Err(Error::Io {
                path: source.path.clone(),
                source: std::io::Error::other("the file's reader thread stopped before its end"),
            });
        }
        if !any {
            batch.push(Item::Bad(Error::EmptyFile {
                path: source.path.clone(),
            }));
        }
    }
    walk.run(&mut batch)?;
    Ok(walk.report)
}

/// One thing to turn into a document.
enum Item<'a> {
    /// A record cut from a file's bytes.
    Record(Record<'a>),
    /// A document a structured reader parsed, with its ordinal.
    Parsed {
        doc: Parsed,
        ordinal: u64,
        source: u32,
    },
    /// A record or file that went wrong, in its place.
    Bad(Error),
}

impl Item<'_> {
    /// Parses the item and runs `work` on it: the result and its bytes.
    fn run<T>(&self, corpus: &Corpus, work: &impl Fn(&Document<'_>) -> T) -> Result<(T, usize)> {
        match self {
            Item::Record(r) => corpus.document(r).map(|d| (work(&d), r.bytes.len())),
            Item::Parsed {
                doc,
                ordinal,
                source,
            } => {
                let d = Document {
                    id: Cow::Borrowed(&doc.id),
                    title: doc.title.as_deref().map(Cow::Borrowed),
                    text: Cow::Borrowed(&doc.text),
                    ordinal: *ordinal,
                    line: Some(doc.line),
                    source: *source,
                };
                Ok((work(&d), doc.text.len()))
            }
            Item::Bad(_) => unreachable!("bad items are taken out before parsing"),
        }
    }
}

/// The walk's state: runs batches and keeps the report.
struct Walk<'w, W, C> {
    corpus: &'w Corpus,
    opts: ReadOptions,
    work: &'w W,
    consume: &'w mut C,
    report: ReadReport,
}

impl<T, W, C> Walk<'_, W, C>
where
    T: Send,
    W: Fn(&Document<'_>) -> T + Sync,
    C: FnMut(Vec<T>, &ReadReport) -> Result<()>,
{
    /// Runs `work` over `items` in parallel and hands the results on in
    /// order; empties `items`.
    fn run(&mut self, items: &mut Vec<Item<'_>>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let (corpus, work) = (self.corpus, self.work);
        let results: Vec<Result<(T, usize)>> = items
            .par_drain(..)
            .map(|item| match item {
                Item::Bad(e) => Err(e),
                item => item.run(corpus, work),
            })
            .collect();
        let mut out = Vec::with_capacity(results.len());
        let mut delta = ReadReport::default();
        let mut failure = None;
        for r in results {
            match r {
                Ok((t, bytes)) => {
                    out.push(t);
                    delta.documents += 1;
                    delta.bytes += bytes as u64;
                }
                Err(e) => {
                    if let Err(e) = skip_or_fail(e, self.opts, &mut delta) {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
        let report = &mut self.report;
        report.documents += delta.documents;
        report.bytes += delta.bytes;
        report.skipped += delta.skipped;
        let room = EXAMPLES.saturating_sub(report.skipped_examples.len());
        report
            .skipped_examples
            .extend(delta.skipped_examples.iter().take(room).cloned());
        // Documents before a fatal record are still handed on: nothing
        // read correctly is lost.
        (self.consume)(out, &delta)?;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The streamed files being read ahead of the walk, in file order.
struct Ahead<'c> {
    corpus: &'c Corpus,
    chunk: usize,
    /// Next source to consider starting.
    next: usize,
    running: std::collections::VecDeque<(usize, Receiver<Unit>)>,
    window: usize,
}

impl<'c> Ahead<'c> {
    fn new(corpus: &'c Corpus, chunk: usize) -> Self {
        Ahead {
            corpus,
            chunk,
            next: 0,
            running: Default::default(),
            window: rayon::current_num_threads().clamp(1, 8),
        }
    }

    /// The units of streamed source `i` (the walk takes them in order),
    /// starting the files after it up to the window.
    fn take(&mut self, i: usize) -> Receiver<Unit> {
        self.next = self.next.max(i);
        self.start();
        let (at, rx) = self.running.pop_front().expect("source i was started");
        debug_assert_eq!(at, i);
        self.start();
        rx
    }

    fn start(&mut self) {
        let sources = self.corpus.sources();
        while self.running.len() < self.window && self.next < sources.len() {
            let i = self.next;
            self.next += 1;
            if let Body::Streamed(streamed) = &sources[i].body {
                let plan = Plan {
                    path: sources[i].path.clone(),
                    streamed: *streamed,
                    format: sources[i].format,
                    sep: self.corpus.config().doc_sep,
                    chunk: self.chunk,
                };
                self.running.push_back((i, stream::spawn(plan)));
            }
        }
    }
}

fn skip_or_fail(e: Error, opts: ReadOptions, report: &mut ReadReport) -> Result<()> {
    if !(opts.skip_bad && e.is_bad_record()) {
        return Err(e);
    }
    report.skipped += 1;
    if report.skipped_examples.len() < EXAMPLES {
        report.skipped_examples.push(e.to_string());
    }
    Ok(())
}

/// Counts document frequencies over the whole corpus (every shard, so all
/// shards score words alike), for tasks that ask for them.
pub fn doc_freq(corpus: &Corpus, skip_bad: bool) -> Result<DocFreq> {
    let opts = ReadOptions {
        skip_bad,
        ..ReadOptions::default()
    };
    let mut total = DocFreq::default();
    for_each_batch(
        corpus,
        opts,
        |d| DocFreq::from_text(&d.text),
        |batch, _| {
            let merged = batch
                .into_par_iter()
                .reduce(DocFreq::default, DocFreq::merge);
            total = std::mem::take(&mut total).merge(merged);
            Ok(())
        },
    )?;
    Ok(total)
}

/// `task` ready to run on `corpus`: given the corpus's document
/// frequencies when it scores words against them, and a BM25 index of the
/// corpus when it ranks it (`spar`). Every caller (`pairs`,
/// training, mining) readies its task here, so the statistics are counted
/// one way, once, and a bad record is an error rather than a task silently
/// left without them.
pub fn ready_task(task: &TaskSpec, corpus: &Corpus, skip_bad: bool) -> Result<TaskSpec> {
    let mut task = task.clone();
    if task.needs_doc_freq() {
        task.set_doc_freq(Arc::new(doc_freq(corpus, skip_bad)?));
    }
    if let Some(bm25) = task.needs_index() {
        let read = ReadOptions {
            skip_bad,
            ..ReadOptions::default()
        };
        let texts = crate::negatives::CorpusTexts::load(corpus, read)?;
        task.set_index(Arc::new(crate::tasks::LexicalIndex::new(texts, bm25)));
    }
    Ok(task)
}

/// `augment` ready to run on `corpus`: given the corpus's document
/// frequencies when one of its augmentations reads them (`salient-mask`'s
/// `rare` cue).
pub fn ready_augment(
    augment: &Augmentations,
    corpus: &Corpus,
    skip_bad: bool,
) -> Result<Augmentations> {
    let mut a = augment.clone();
    if a.needs_doc_freq() && a.doc_freq.0.is_none() {
        a.doc_freq = crate::augment::CorpusStats(Some(Arc::new(doc_freq(corpus, skip_bad)?)));
    }
    Ok(a)
}

/// The size from which a document's lines are reserved up front.
const LARGE_LINES: usize = 64 << 10;

/// A complete `pairs` job.
#[derive(Debug, Clone)]
pub struct PairsJob {
    /// The task.
    pub task: TaskSpec,
    /// Augmentations applied after the task.
    pub augment: Augmentations,
    /// Run seed.
    pub seed: u64,
    /// Output layout.
    pub format: PairFormat,
    /// Add doc id, task and offsets to every line.
    pub with_meta: bool,
    /// Corpus walk options.
    pub read: ReadOptions,
    /// Negatives added to every pair (random, gold or BM25), if any.
    pub negatives: Option<Arc<PairNegatives>>,
}

/// Salt of the generator negatives are drawn with, so adding negatives
/// leaves the pairs themselves unchanged.
const NEGATIVES_SALT: u64 = 0x0e9a_71e5_0e9a_71e5;

/// What a `pairs` job did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairsSummary {
    /// The corpus walk.
    pub read: ReadReport,
    /// Pairs written.
    pub pairs: u64,
    /// Pairs per task name.
    pub per_task: BTreeMap<&'static str, u64>,
    /// What negative sampling saw (when the job adds negatives).
    pub negatives: MiningStats,
}

/// Progress of a job, batch by batch: documents, bytes and pairs so far.
pub trait Progress {
    /// Called after each batch is written.
    fn update(&mut self, documents: u64, bytes: u64, pairs: u64);
}

impl<F: FnMut(u64, u64, u64)> Progress for F {
    fn update(&mut self, documents: u64, bytes: u64, pairs: u64) {
        self(documents, bytes, pairs)
    }
}

impl PairsJob {
    /// The task's name, for messages.
    pub fn task_name(&self) -> &'static str {
        self.task.name()
    }

    /// Generates the pairs of the corpus shard and writes them to `out`.
    pub fn run(
        &self,
        corpus: &Corpus,
        out: &mut dyn Write,
        progress: &mut dyn Progress,
    ) -> Result<PairsSummary> {
        self.task.validate().map_err(Error::Config)?;
        self.augment.validate().map_err(Error::Config)?;
        let task = ready_task(&self.task, corpus, self.read.skip_bad)?;
        let augment = ready_augment(&self.augment, corpus, self.read.skip_bad)?;
        let mut summary = PairsSummary::default();
        let known = task
            .known_texts()
            .map(|k| k as &dyn crate::formats::KnownTexts);
        let work = |doc: &Document<'_>| {
            let mut rng = doc_rng(self.seed, doc.ordinal);
            let mut neg_rng = doc_rng(self.seed ^ NEGATIVES_SALT, doc.ordinal);
            let mut stats = MiningStats::default();
            let mut pairs = task.pairs(doc, &mut rng);
            // A large buffer is sized once: lines of ~100 KB a document
            // grown by doubling were copied and faulted in again and again.
            // Small ones grow faster than they are estimated, and a task
            // with known texts (`spar`) borrows its passages: its own bytes
            // are small.
            let hint: usize = match known {
                Some(_) => 0,
                None => pairs.iter().map(line_size_hint).sum(),
            };
            let mut buf = Lines::with_capacity(if hint >= LARGE_LINES { hint } else { 0 });
            let mut names = Vec::with_capacity(pairs.len());
            for (i, pair) in pairs.iter_mut().enumerate() {
                augment.apply(pair, &mut rng);
                if let Some(n) = &self.negatives {
                    let found = n.negatives(
                        &flat(&pair.query),
                        &flat(&pair.positive),
                        Some(doc.ordinal),
                        &mut neg_rng,
                        &mut stats,
                    );
                    pair.negatives.extend(found.into_iter().map(|t| Text {
                        text: Cow::Owned(t),
                        title: None,
                        span: None,
                        doc_id: None,
                    }));
                }
                write_pair(&mut buf, self.format, doc, i, pair, self.with_meta, known);
                names.push(pair.task);
            }
            (buf, names, stats)
        };
        let opts = ReadOptions {
            batch_bytes: (self.read.batch_bytes / task.output_factor()).max(1),
            ..self.read
        };
        let read = for_each_batch(corpus, opts, work, |batch, delta| {
            // The batch's lines in one run of vectored writes: borrowed
            // passages go from the index to the output without a copy.
            write_runs(out, batch.iter().flat_map(|(lines, _, _)| lines.runs()))
                .map_err(Error::Write)?;
            for (_, names, stats) in batch {
                summary.negatives.merge(stats);
                summary.pairs += names.len() as u64;
                for n in names {
                    *summary.per_task.entry(n).or_insert(0) += 1;
                }
            }
            summary.read.documents += delta.documents;
            summary.read.bytes += delta.bytes;
            progress.update(summary.read.documents, summary.read.bytes, summary.pairs);
            Ok(())
        })?;
        out.flush().map_err(Error::Write)?;
        summary.read = read;
        Ok(summary)
    }
}
