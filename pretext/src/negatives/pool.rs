//! Negatives for a stream of pairs (`pretext pairs`, and the trainer's
//! producer thread): the corpus held as texts, a BM25 index over it when
//! the source asks for one, and gold negatives made by the pair's own task
//! on another document.

use std::borrow::Cow;
use std::sync::Arc;

use rand::Rng;

use super::select::{Candidate, Kind, Miner, Query, Raters, TextPool};
use super::stats::MiningStats;
use super::{NegativesConfig, Source};
use crate::bm25::{Analyzer, Bm25Index, TokenTerms};
use crate::corpus::{Corpus, Document};
use crate::error::{Error, Result};
use crate::formats::flat;
use crate::pipeline::{doc_rng, for_each_batch, ReadOptions};
use crate::tasks::{PretextTask, TaskSpec};

/// A corpus held as texts (`title text`), with ids and ordinals, for
/// random access by document number.
#[derive(Debug, Clone, Default)]
pub struct CorpusTexts {
    /// Document ids.
    pub ids: Vec<String>,
    /// Titles (empty when none).
    pub titles: Vec<String>,
    /// Document texts without the title.
    pub bodies: Vec<String>,
    /// `title text`, as documents are matched and encoded.
    pub texts: Vec<String>,
    /// Corpus ordinals, ascending.
    pub ordinals: Vec<u64>,
}

impl CorpusTexts {
    /// Reads the documents of `read`'s shard.
    pub fn load(corpus: &Corpus, read: ReadOptions) -> Result<CorpusTexts> {
        let mut out = CorpusTexts::default();
        for_each_batch(
            corpus,
            read,
            |d| {
                (
                    d.id.to_string(),
                    d.title.as_deref().unwrap_or("").to_string(),
                    d.text.to_string(),
                    d.ordinal,
                )
            },
            |batch, _| {
                for (id, title, body, ordinal) in batch {
                    out.texts.push(if title.is_empty() {
                        body.clone()
                    } else {
                        format!("{title} {body}")
                    });
                    out.ids.push(id);
                    out.titles.push(title);
                    out.bodies.push(body);
                    out.ordinals.push(ordinal);
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// Documents held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The document number of corpus ordinal `ordinal`.
    pub fn item_of(&self, ordinal: u64) -> Option<u32> {
        self.ordinals.binary_search(&ordinal).ok().map(|i| i as u32)
    }

    /// A BM25 index of the documents (`title text`), by document number.
    pub fn bm25(&self, config: crate::bm25::Bm25Config) -> Bm25Index {
        Bm25Index::build(&self.id_texts(), config)
    }

    /// [`CorpusTexts::bm25`], and every token of the documents with its
    /// term ([`TokenTerms`]).
    pub fn bm25_with_tokens(&self, config: crate::bm25::Bm25Config) -> (Bm25Index, TokenTerms) {
        Bm25Index::build_with_tokens(&self.id_texts(), config)
    }

    fn id_texts(&self) -> Vec<(String, String)> {
        self.ids
            .iter()
            .cloned()
            .zip(self.texts.iter().cloned())
            .collect()
    }

    /// Document `item` as the tasks see it.
    pub fn document(&self, item: u32) -> Document<'_> {
        let i = item as usize;
        Document {
            id: Cow::Borrowed(&self.ids[i]),
            title: (!self.titles[i].is_empty()).then(|| Cow::Borrowed(self.titles[i].as_str())),
            text: Cow::Borrowed(&self.bodies[i]),
            ordinal: self.ordinals[i],
            line: None,
            source: 0,
        }
    }
}

impl TextPool for CorpusTexts {
    fn len(&self) -> usize {
        self.ids.len()
    }
    fn text(&self, item: u32) -> Cow<'_, str> {
        Cow::Borrowed(&self.texts[item as usize])
    }
}

/// Gold negatives of a pretext-task stream: the positive the task makes
/// from document `item` (the positive of another query).
struct GoldPool<'a> {
    corpus: &'a CorpusTexts,
    task: &'a TaskSpec,
    seed: u64,
}

/// Salt of the generator gold positives are drawn with, so they differ from
/// the pairs the document gives in the stream itself.
const GOLD_SALT: u64 = 0x601d_601d_601d_601d;

impl TextPool for GoldPool<'_> {
    fn len(&self) -> usize {
        self.corpus.len()
    }
    fn text(&self, item: u32) -> Cow<'_, str> {
        let doc = self.corpus.document(item);
        let mut rng = doc_rng(self.seed ^ GOLD_SALT, doc.ordinal);
        let pairs = self.task.pairs(&doc, &mut rng);
        Cow::Owned(
            pairs
                .first()
                .map(|p| flat(&p.positive).into_owned())
                .unwrap_or_default(),
        )
    }
}

impl std::fmt::Debug for PairNegatives {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairNegatives")
            .field("config", &self.config)
            .field("documents", &self.corpus.len())
            .finish()
    }
}

/// Fills the negatives of pairs from a stream, by the `[negatives]` section.
pub struct PairNegatives {
    config: NegativesConfig,
    corpus: Arc<CorpusTexts>,
    /// The index, with the corpus's tokens: queries and positives cut from
    /// the corpus are analysed by lookup ([`TokenTerms`]).
    bm25: Option<(Bm25Index, TokenTerms)>,
    analyzer: Analyzer,
    task: Option<TaskSpec>,
    seed: u64,
}

impl PairNegatives {
    /// Prepares `config` over `corpus`; builds the BM25 index for `bm25`.
    /// `task` makes gold negatives (`None`: pairs come from a file, where
    /// `gold` is `pretext mine`'s job).
    pub fn new(
        config: NegativesConfig,
        corpus: Arc<CorpusTexts>,
        task: Option<TaskSpec>,
        seed: u64,
    ) -> Result<PairNegatives> {
        config.validate().map_err(Error::Config)?;
        match config.source {
            Source::Dense => {
                return Err(Error::Config(
                    "negatives.source = \"dense\" needs a model: use `pretext mine --retriever dense`, or `pretext train` (ANCE refresh)".into(),
                ))
            }
            Source::Run => {
                return Err(Error::Config(
                    "negatives.source = \"run\" is read by `pretext mine --retriever run --run FILE`; train on the pair file it writes".into(),
                ))
            }
            Source::Gold if task.is_none() => {
                return Err(Error::Config(
                    "negatives.source = \"gold\" on a pair file: mine the file with `pretext mine` (gold takes other queries' positives)".into(),
                ))
            }
            _ => {}
        }
        if corpus.is_empty() && config.source != Source::None {
            return Err(Error::Config(
                "negatives: the corpus has no documents".into(),
            ));
        }
        let bm25 = (config.source == Source::Bm25).then(|| corpus.bm25_with_tokens(config.bm25));
        Ok(PairNegatives {
            analyzer: Analyzer::new(config.bm25),
            config,
            corpus,
            bm25,
            task,
            seed,
        })
    }

    /// The settings.
    pub fn config(&self) -> &NegativesConfig {
        &self.config
    }

    /// Negatives of one pair. `source` is the corpus ordinal of the document
    /// the pair was made from (never a negative), when known.
    pub fn negatives(
        &self,
        query: &str,
        positive: &str,
        source: Option<u64>,
        rng: &mut impl Rng,
        stats: &mut MiningStats,
    ) -> Vec<String> {
        if self.config.source == Source::None {
            return Vec::new();
        }
        let (ranked, positive_score) = match &self.bm25 {
            Some((index, known)) => (
                index
                    .search_docs_known(&self.analyzer, known, query, self.config.range_max)
                    .into_iter()
                    .map(|(item, score)| Candidate { item, score })
                    .collect(),
                Some(index.score_text_known(&self.analyzer, known, query, positive)),
            ),
            None => (Vec::new(), None),
        };
        let q = Query {
            positive,
            positive_score,
            answers: &[],
            exclude: source.and_then(|o| self.corpus.item_of(o)),
        };
        let corpus: &CorpusTexts = &self.corpus;
        let picked = match (&self.task, self.config.source) {
            (Some(task), Source::Gold) => {
                let gold = GoldPool {
                    corpus,
                    task,
                    seed: self.seed,
                };
                let mined = Miner::new(&self.config).mine(
                    &q,
                    &ranked,
                    corpus,
                    (&gold, Kind::Gold),
                    Raters::default(),
                    rng,
                    stats,
                );
                return mined
                    .into_iter()
                    .map(|p| gold.text(p.item).into_owned())
                    .collect();
            }
            _ => Miner::new(&self.config).mine(
                &q,
                &ranked,
                corpus,
                (corpus, Kind::Random),
                Raters::default(),
                rng,
                stats,
            ),
        };
        picked
            .into_iter()
            .map(|p| corpus.texts[p.item as usize].clone())
            .collect()
    }
}
