//! Negatives for training pairs: where candidates come from (random
//! passages, gold positives of other queries, BM25, a dense model), which
//! ranks are eligible, how hard and easy ones mix, and which candidates are
//! dropped as likely false negatives.
//!
//! Ranking is a retriever's job (BM25 here, dense search in the `pretext`
//! crate); this module owns the rules both share, so a BM25 run and a dense
//! run of `pretext mine` differ only in their candidate lists.

pub mod pool;
pub mod select;
pub mod stats;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::bm25::Bm25Config;

pub use pool::{CorpusTexts, PairNegatives};
pub use select::{Candidate, Kind, Mined, Miner, Picked, Query, Raters, Rule, TextPool};
pub use stats::{MiningStats, Summary};

/// Where negatives come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// No mined negatives (in-batch and queue only).
    #[default]
    None,
    /// Random passages of the corpus.
    Random,
    /// Positives of other queries.
    Gold,
    /// BM25's top candidates that are not the positive.
    Bm25,
    /// A dense model's top candidates by exact search (in training: an
    /// ANCE-style index refreshed every `refresh_every` steps).
    Dense,
    /// Any retriever's ranking, read from a TREC run file (`run`):
    /// Elasticsearch, pyserini, Vespa, `pretext bm25 search`.
    Run,
}

impl Source {
    /// Names accepted in configs and on the command line.
    pub const NAMES: [&'static str; 6] = ["none", "random", "gold", "bm25", "dense", "run"];

    /// Whether candidates come from a ranking (and the window applies).
    pub fn ranked(self) -> bool {
        matches!(self, Source::Bm25 | Source::Dense | Source::Run)
    }
}

impl std::str::FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Source::NAMES
            .iter()
            .position(|n| *n == s)
            .map(|i| {
                [
                    Source::None,
                    Source::Random,
                    Source::Gold,
                    Source::Bm25,
                    Source::Dense,
                    Source::Run,
                ][i]
            })
            .ok_or_else(|| {
                format!(
                    "negative source `{s}`: expected one of {}",
                    Source::NAMES.join(", ")
                )
            })
    }
}

/// How hard negatives are drawn from the eligible candidates of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sampling {
    /// The best-ranked eligible candidates.
    #[default]
    Top,
    /// Uniformly among the eligible candidates (kept in rank order).
    Random,
}

/// Which encoder re-encodes the corpus at an ANCE refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefreshEncoder {
    /// The trained document tower.
    #[default]
    Model,
    /// The MoCo momentum (key) encoder, when the run has one.
    Momentum,
}

/// How dense search finds each query's nearest documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchIndex {
    /// Every document scored (matrix products in blocks): the true top k.
    #[default]
    Exact,
    /// An HNSW graph ([`AnnConfig`]): a small share of the documents
    /// scored, most of the true top k found; for corpora past exact search.
    Ann,
}

impl SearchIndex {
    /// The names, as configs and flags spell them.
    pub const NAMES: [&'static str; 2] = ["exact", "ann"];

    /// From a flag value.
    pub fn parse(s: &str) -> Result<SearchIndex, String> {
        match s {
            "exact" => Ok(SearchIndex::Exact),
            "ann" => Ok(SearchIndex::Ann),
            _ => Err(format!(
                "index `{s}`: expected one of {}",
                SearchIndex::NAMES.join(", ")
            )),
        }
    }
}

/// The HNSW graph of approximate search (Malkov and Yashunin, 2016).
/// Larger values find more of the true neighbours for more time: `M`
/// (links per node) and the build's beam for the graph's quality, the
/// search's beam for each query's recall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnnConfig {
    /// Links per node (HNSW's `M`).
    pub connectivity: usize,
    /// Candidates kept while linking a new node (`efConstruction`).
    pub expansion_add: usize,
    /// Candidates kept while searching (`ef`); raised to `k` when below it.
    pub expansion_search: usize,
    /// How the graph stores its vectors: `f32`, `f16` or `i8` (a quarter
    /// of the memory traffic per distance; hits are rescored from the f32
    /// embeddings either way).
    pub scalar: AnnScalar,
}

/// The precision of the vectors an HNSW graph holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnnScalar {
    /// As the embeddings.
    #[default]
    F32,
    /// Half precision.
    F16,
    /// 8-bit integers (for unit vectors: each coordinate times 127).
    I8,
}

impl Default for AnnConfig {
    fn default() -> Self {
        AnnConfig {
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 256,
            scalar: AnnScalar::F32,
        }
    }
}

impl AnnConfig {
    /// Checks what serde cannot; `section` names the fields in errors.
    pub fn validate(&self, section: &str) -> Result<(), String> {
        for (name, v, min) in [
            ("connectivity", self.connectivity, 2),
            ("expansion_add", self.expansion_add, 1),
            ("expansion_search", self.expansion_search, 1),
        ] {
            if v < min {
                return Err(format!("{section}.{name} = {v} must be at least {min}"));
            }
        }
        Ok(())
    }
}

/// The `[negatives]` section shared by `pairs`, `mine` and `train`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NegativesConfig {
    /// `none`, `random`, `gold`, `bm25`, `dense` or `run`.
    pub source: Source,
    /// Negatives per query.
    pub count: usize,
    /// Ranked sources: skip this many best candidates (EBR: 100).
    pub range_min: usize,
    /// Ranked sources: consider candidates up to this rank (EBR: 500).
    pub range_max: usize,
    /// `top` or `random` within the window.
    pub sampling: Sampling,
    /// Easy (random) negatives per hard one, blended in (EBR: up to 100).
    pub easy_ratio: f64,
    /// At most this many hard negatives per positive (EBR: 2; 0: no cap).
    pub max_hard: usize,
    /// Drop a candidate scoring above the positive's score minus this.
    pub absolute_margin: Option<f32>,
    /// Drop a candidate scoring above the positive's score times
    /// `1 − relative_margin` (as sentence-transformers' miner).
    pub relative_margin: Option<f32>,
    /// Drop a candidate whose text contains the positive's text.
    pub drop_positive_text: bool,
    /// Drop a candidate that contains one of the query's answer strings.
    pub drop_answers: bool,
    /// The dense retriever's model folder (`pairs` and `mine`; training
    /// searches with the model it trains).
    pub model: Option<PathBuf>,
    /// Where corpus embeddings are cached (dense and rescoring).
    pub cache_dir: PathBuf,
    /// A second encoder that rates candidates (RocketQA's denoising).
    pub rescore: Option<PathBuf>,
    /// Drop a candidate the rescorer rates above this (cosine similarity).
    pub rescore_threshold: f32,
    /// A cross-encoder folder that rates hard candidates (RocketQA's
    /// denoising: its probability of relevance, `sigmoid` of its score).
    pub rescore_ce: Option<PathBuf>,
    /// Drop a hard candidate the cross-encoder gives a probability of
    /// relevance above this (RocketQA keeps negatives below 0.1).
    pub ce_max_score: f32,
    /// Training with `dense`: re-encode the corpus every this many steps.
    pub refresh_every: usize,
    /// Training with `dense`: `model` or `momentum` encodes the corpus.
    pub refresh_encoder: RefreshEncoder,
    /// BM25 settings of the `bm25` source.
    pub bm25: Bm25Config,
    /// The TREC run file of the `run` source (`qid Q0 docid rank score
    /// tag`); its query ids are the pair file's (`query_id`, `qid`, `_id`
    /// or `id` on a line), else the lines' 1-based numbers.
    pub run: Option<PathBuf>,
    /// Dense source: `exact` or `ann` search of the corpus embeddings.
    pub index: SearchIndex,
    /// Dense source with `index = "ann"`: the HNSW graph's settings.
    pub ann: AnnConfig,
}

impl Default for NegativesConfig {
    fn default() -> Self {
        NegativesConfig {
            source: Source::None,
            count: 1,
            range_min: 0,
            range_max: 100,
            sampling: Sampling::Top,
            easy_ratio: 0.0,
            max_hard: 0,
            absolute_margin: None,
            relative_margin: None,
            drop_positive_text: true,
            drop_answers: true,
            model: None,
            cache_dir: PathBuf::from(".pretext-cache"),
            rescore: None,
            rescore_threshold: 0.9,
            rescore_ce: None,
            ce_max_score: 0.1,
            refresh_every: 100,
            refresh_encoder: RefreshEncoder::Model,
            bm25: Bm25Config::default(),
            run: None,
            index: SearchIndex::Exact,
            ann: AnnConfig::default(),
        }
    }
}

impl NegativesConfig {
    /// Refuses the second opinions (`rescore`, `rescore_ce`) where
    /// negatives are drawn on the fly, pair by pair (`where_`: training, a
    /// pair stream), which rates nothing: they would be ignored. They rate
    /// a whole mined list in `pretext mine`.
    pub fn raters_need_mine(&self, where_: &str) -> Result<(), String> {
        let set: Vec<&str> = [
            ("negatives.rescore", self.rescore.is_some()),
            ("negatives.rescore_ce", self.rescore_ce.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        if set.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{} rates mined candidates in `pretext mine` (--rescore, --rescore-ce), not in {where_}: mine the pairs first and give the file to train.pairs",
            set.join(" and ")
        ))
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.index == SearchIndex::Exact && self.ann != AnnConfig::default() {
            return Err(
                "negatives.ann sets the HNSW graph of negatives.index = \"ann\"; the index is \"exact\": set index = \"ann\" or remove [negatives.ann]"
                    .into(),
            );
        }
        if self.index == SearchIndex::Ann {
            if self.source != Source::Dense {
                let source = format!("{:?}", self.source).to_lowercase();
                return Err(format!(
                    "negatives.index = \"ann\" searches dense embeddings: it needs negatives.source = \"dense\", not \"{source}\""
                ));
            }
            self.ann.validate("negatives.ann")?;
        }
        if self.source == Source::None {
            return Ok(());
        }
        if self.source == Source::Bm25 {
            self.bm25.validate("negatives.bm25")?;
        }
        if self.count == 0 {
            return Err("negatives.count must be at least 1".into());
        }
        if self.source.ranked() && self.range_max <= self.range_min {
            return Err(format!(
                "negatives.range_max = {} must be above negatives.range_min = {}",
                self.range_max, self.range_min
            ));
        }
        if !(self.easy_ratio >= 0.0 && self.easy_ratio.is_finite()) {
            return Err(format!(
                "negatives.easy_ratio = {} must be a finite number >= 0",
                self.easy_ratio
            ));
        }
        if let Some(m) = self.absolute_margin.filter(|m| m.is_nan() || *m < 0.0) {
            return Err(format!("negatives.absolute_margin = {m} must be >= 0"));
        }
        if let Some(m) = self.relative_margin.filter(|m| !(0.0..1.0).contains(m)) {
            return Err(format!("negatives.relative_margin = {m} must be in [0, 1)"));
        }
        if !(0.0..=1.0).contains(&self.ce_max_score) {
            return Err(format!(
                "negatives.ce_max_score = {} is a probability: it must be in [0, 1]",
                self.ce_max_score
            ));
        }
        if self.source == Source::Run && self.run.is_none() {
            return Err(
                "negatives.source = \"run\" needs negatives.run = \"FILE.trec\" (mine: --run FILE)"
                    .into(),
            );
        }
        if self.source == Source::Dense && self.refresh_every == 0 {
            return Err("negatives.refresh_every must be at least 1".into());
        }
        Ok(())
    }
}
