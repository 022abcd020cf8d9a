//! BM25 as Anserini (and pyserini) run it, by default: k1 = 0.9, b = 0.4,
//! Anserini's `DefaultEnglishAnalyzer` (UAX #29 words, possessives dropped,
//! lower-casing, Lucene's 33 stopwords, Porter stemming) and Lucene's
//! `BM25Similarity` to the bit (lossy one-byte document lengths, float
//! arithmetic in Lucene's order, ties broken by document id): see
//! [`lucene`]. An inverted index built in parallel, saved as one
//! little-endian file and memory-mapped back, and top-k search in parallel.
//!
//! The analyzer pretext used first stays available as
//! [`AnalyzerKind::Nltk`]: NLTK's 153 stopwords, no possessive filter,
//! exact document lengths and Robertson's `idf · tf·(k1+1) / (tf + k1·(1 −
//! b + b·dl/avgdl))` (Lucene ≥ 8 drops the constant `(k1+1)`, which changes
//! no ranking).

use std::io::Write;
use std::path::Path;

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::corpus::FileBytes;
use crate::error::{Error, Result};
use crate::segment::{words, WordUnit};
use crate::stopwords::is_stopword;

mod dense;
pub mod lucene;
mod postings;
mod search;

use postings::Postings;
pub use search::Traversal;

/// How text becomes terms, and the scoring constants.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bm25Config {
    /// Whose analysis and scoring: Lucene's (Anserini's default) or the
    /// NLTK-stopword analyzer with exact lengths.
    pub analyzer: AnalyzerKind,
    /// Term-frequency saturation (Anserini: 0.9).
    pub k1: f32,
    /// Length normalisation (Anserini: 0.4).
    pub b: f32,
    /// Lower-case terms.
    pub lowercase: bool,
    /// Drop English stopwords (the analyzer's list: Lucene's 33 words, or
    /// NLTK's 153).
    pub stopwords: bool,
    /// How words are stemmed.
    pub stemmer: Stemming,
}

/// Which analysis chain and scoring an index uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnalyzerKind {
    /// Anserini's `DefaultEnglishAnalyzer` and Lucene's `BM25Similarity`,
    /// operation for operation, so runs match pyserini's ([`lucene`]).
    #[default]
    Lucene,
    /// pretext's first analyzer: UAX #29 words, full Unicode lower-casing,
    /// NLTK's stopwords, no possessive filter; exact document lengths over
    /// every document, Robertson's `(k1+1)` factor, ties to the lower
    /// document number.
    Nltk,
}

impl std::str::FromStr for AnalyzerKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<AnalyzerKind, String> {
        match s {
            "lucene" => Ok(AnalyzerKind::Lucene),
            "nltk" => Ok(AnalyzerKind::Nltk),
            other => Err(format!(
                "unknown BM25 analyzer {other:?} (expected lucene or nltk)"
            )),
        }
    }
}

/// The stemmer of the analyzer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stemming {
    /// Porter's 1980 algorithm as Lucene's `PorterStemFilter` runs it (with
    /// the departures of Porter's own reference code), so terms match
    /// Anserini's and pyserini's: the `nltk-porter` crate in `Martin` mode,
    /// tested against Lucene's stems of 6,000 words.
    #[default]
    Porter,
    /// Snowball English ("Porter2"), `rust-stemmers`.
    Porter2,
    /// No stemming.
    None,
}

impl std::str::FromStr for Stemming {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Stemming, String> {
        match s {
            "porter" => Ok(Stemming::Porter),
            "porter2" => Ok(Stemming::Porter2),
            "none" => Ok(Stemming::None),
            other => Err(format!(
                "unknown stemmer {other:?} (expected porter, porter2 or none)"
            )),
        }
    }
}

impl Bm25Config {
    /// Checks the scoring constants: `k1` finite and non-negative, `b` in
    /// `[0, 1]` (outside it the length norm turns negative and rankings
    /// invert). `field` names the setting in the error (`negatives.bm25`,
    /// `--k1`).
    pub fn validate(&self, field: &str) -> Result<(), String> {
        if !(self.k1.is_finite() && self.k1 >= 0.0) {
            return Err(format!(
                "{field}.k1 = {} must be a finite number >= 0 (Anserini: 0.9)",
                self.k1
            ));
        }
        if !(0.0..=1.0).contains(&self.b) {
            return Err(format!(
                "{field}.b = {} must be in [0, 1] (Anserini: 0.4)",
                self.b
            ));
        }
        Ok(())
    }
}

impl Default for Bm25Config {
    fn default() -> Self {
        Bm25Config {
            analyzer: AnalyzerKind::Lucene,
            k1: 0.9,
            b: 0.4,
            lowercase: true,
            stopwords: true,
            stemmer: Stemming::Porter,
        }
    }
}

/// Turns text into terms.
pub struct Analyzer {
    config: Bm25Config,
    stemmer: Stemmer,
}

/// A built stemmer.
enum Stemmer {
    Porter(nltk_porter::PorterStemmer),
    Porter2(rust_stemmers::Stemmer),
    None,
}

impl Analyzer {
    /// An analyzer for `config`.
    pub fn new(config: Bm25Config) -> Analyzer {
        Analyzer {
            config,
            stemmer: match config.stemmer {
                Stemming::Porter => {
                    Stemmer::Porter(nltk_porter::PorterStemmer::new(nltk_porter::Mode::Martin))
                }
                Stemming::Porter2 => Stemmer::Porter2(rust_stemmers::Stemmer::create(
                    rust_stemmers::Algorithm::English,
                )),
                Stemming::None => Stemmer::None,
            },
        }
    }

    /// The terms of `text`, in order.
    pub fn terms(&self, text: &str) -> Vec<String> {
        self.tokens(text)
            .into_iter()
            .filter_map(|w| self.term(w))
            .collect()
    }

    /// The tokens of `text`: `StandardTokenizer`'s under Lucene's analyzer
    /// ([`lucene::tokens`]), UAX #29 words holding a letter or digit under
    /// the NLTK one.
    pub fn tokens<'t>(&self, text: &'t str) -> Vec<&'t str> {
        match self.config.analyzer {
            AnalyzerKind::Lucene => lucene::tokens(text),
            AnalyzerKind::Nltk => words(text, WordUnit::Unicode)
                .into_iter()
                .map(|w| w.of(text))
                .collect(),
        }
    }

    /// The term of one token (`None` for a stopword).
    pub fn term(&self, word: &str) -> Option<String> {
        match self.config.analyzer {
            AnalyzerKind::Lucene => {
                let word = lucene::strip_possessive(word);
                let w = if self.config.lowercase {
                    lucene::lowercase(word)
                } else {
                    word.to_string()
                };
                if self.config.stopwords && lucene::is_stop_word(&w) {
                    return None;
                }
                Some(self.stem(w))
            }
            AnalyzerKind::Nltk => {
                let w = if self.config.lowercase {
                    word.to_lowercase()
                } else {
                    word.to_string()
                };
                if self.config.stopwords && is_stopword(&w) {
                    return None;
                }
                Some(self.stem(w))
            }
        }
    }

    fn stem(&self, w: String) -> String {
        match &self.stemmer {
            Stemmer::Porter(p) => p.stem(&w),
            Stemmer::Porter2(p) => p.stem(&w).into_owned(),
            Stemmer::None => w,
        }
    }
}

/// The documents of one chunk, analysed with the chunk's own vocabulary.
struct Chunk<'d> {
    /// Local term id → term.
    vocab: Vec<String>,
    /// Per document: its length in terms and its (local term, tf), sorted.
    docs: Vec<(u32, Vec<(u32, u32)>)>,
    /// Every token of the chunk with its local term (`None`: a stopword),
    /// when asked for ([`Bm25Index::build_with_tokens`]).
    tokens: Option<FxHashMap<&'d str, Option<u32>>>,
}

/// Analyses a chunk of documents. A word seen before in the chunk is looked
/// up, not lower-cased and stemmed again: most occurrences are repeats, and
/// stemming was most of the indexing time.
fn analyze_chunk<'d>(
    analyzer: &Analyzer,
    docs: &'d [(String, String)],
    keep_tokens: bool,
) -> Chunk<'d> {
    let mut words: FxHashMap<&str, Option<u32>> = FxHashMap::default();
    let mut ids: FxHashMap<String, u32> = FxHashMap::default();
    let mut vocab = Vec::new();
    let mut counts: FxHashMap<u32, u32> = FxHashMap::default();
    let mut out = Vec::with_capacity(docs.len());
    for (_, text) in docs {
        let mut len = 0u32;
        for word in analyzer.tokens(text) {
            let id = match words.get(word) {
                Some(id) => *id,
                None => {
                    let id = analyzer.term(word).map(|t| {
                        *ids.entry(t).or_insert_with_key(|t| {
                            vocab.push(t.clone());
                            (vocab.len() - 1) as u32
                        })
                    });
                    words.insert(word, id);
                    id
                }
            };
            if let Some(id) = id {
                len += 1;
                *counts.entry(id).or_insert(0) += 1;
            }
        }
        let mut c: Vec<(u32, u32)> = counts.drain().collect();
        c.sort_unstable();
        out.push((len, c));
    }
    Chunk {
        vocab,
        docs: out,
        tokens: keep_tokens.then_some(words),
    }
}

/// Every distinct token of an index's texts with the number of its term
/// (`None`: a stopword), so that a query made of the corpus's own words
/// (`spar`'s pseudo-queries) is analysed by lookups: lower-casing,
/// stemming and the vocabulary's binary search were two fifths of such a
/// search. A token not in the map is analysed as usual. It holds every
/// distinct token once, far less than the texts it comes from.
#[derive(Debug, Default)]
pub struct TokenTerms(FxHashMap<Box<str>, Option<u32>>);

impl TokenTerms {
    /// Distinct tokens held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An in-memory or memory-mapped BM25 index.
pub struct Bm25Index {
    config: Bm25Config,
    /// Sorted vocabulary; a term's position numbers its postings.
    terms: Vec<String>,
    /// Document numbers and term frequencies of every term, compressed.
    postings: Postings,
    /// Length (in terms) of each document.
    lengths: Vec<u32>,
    /// Document ids, by document number.
    ids: Vec<String>,
    /// Collection statistics.
    stats: Stats,
    /// The common terms' frequencies by document, made when a search
    /// first needs them ([`dense`]).
    dense: std::sync::OnceLock<dense::DenseTerms>,
}

/// What scoring needs beyond the postings, derived from the lengths.
struct Stats {
    /// Documents counted by the idf and the mean length: those with a term
    /// (Lucene's `docCount`), or every document (the NLTK analyzer).
    doc_count: u64,
    /// Mean document length over them.
    avgdl: f32,
    /// Lucene: each document's length as its stored byte.
    norms: Vec<u8>,
    /// Lucene: the reciprocal length norm of each byte.
    cache: [f32; 256],
}

impl Stats {
    fn of(config: &Bm25Config, lengths: &[u32]) -> Stats {
        let total: u64 = lengths.iter().map(|&l| u64::from(l)).sum();
        match config.analyzer {
            AnalyzerKind::Lucene => {
                let doc_count = lengths.iter().filter(|&&l| l > 0).count() as u64;
                let avgdl = lucene::avgdl(total, doc_count);
                Stats {
                    doc_count,
                    avgdl,
                    norms: lengths.iter().map(|&l| lucene::length_to_byte(l)).collect(),
                    cache: lucene::norm_cache(config.k1, config.b, avgdl),
                }
            }
            AnalyzerKind::Nltk => {
                let n = lengths.len();
                Stats {
                    doc_count: n as u64,
                    avgdl: (total as f64 as f32 / n.max(1) as f32).max(f32::MIN_POSITIVE),
                    norms: Vec::new(),
                    cache: [0.0; 256],
                }
            }
        }
    }
}

/// Format 4: the header (the JSON of [`Bm25Config`]), terms, ids and
/// lengths, then the postings in blocks (per term its first block and
/// document count; per block its last document, byte start and bit
/// widths; the packed bytes), and a BLAKE3 hash of every byte before it.
const MAGIC: &[u8; 8] = b"PRTXBM2\x04";
/// Format 3: format 2 with the analyzer named, postings as flat 32-bit
/// arrays; refused with a request to rebuild.
const MAGIC_V3: &[u8; 8] = b"PRTXBM2\x03";
/// Format 2: the layout of format 1 followed by a BLAKE3 hash of every
/// byte before it. Its header has no analyzer: it was the NLTK one, and a
/// rebuild is asked for rather than a guess.
const MAGIC_V2: &[u8; 8] = b"PRTXBM2\x02";
/// Format 1 (no checksum), named in the error that asks for a rebuild.
const MAGIC_V1: &[u8; 8] = b"PRTXBM25";
const HASH_LEN: usize = 32;

impl Bm25Index {
    /// Indexes `(id, text)` documents in parallel: chunks are analysed with
    /// their own vocabularies, merged into one sorted vocabulary, and the
    /// postings laid out term by term in document order.
    pub fn build(docs: &[(String, String)], config: Bm25Config) -> Bm25Index {
        Bm25Index::build_inner(docs, config, false).0
    }

    /// [`Bm25Index::build`], and every token of the texts with its term
    /// for [`Bm25Index::search_docs_known`].
    pub fn build_with_tokens(
        docs: &[(String, String)],
        config: Bm25Config,
    ) -> (Bm25Index, TokenTerms) {
        let (index, tokens) = Bm25Index::build_inner(docs, config, true);
        (index, tokens.unwrap_or_default())
    }

    fn build_inner(
        docs: &[(String, String)],
        config: Bm25Config,
        keep_tokens: bool,
    ) -> (Bm25Index, Option<TokenTerms>) {
        let analyzer = Analyzer::new(config);
        let size = (docs.len() / (rayon::current_num_threads() * 8)).clamp(64, 16_384);
        let chunks: Vec<Chunk> = docs
            .par_chunks(size)
            .map(|c| analyze_chunk(&analyzer, c, keep_tokens))
            .collect();
        let mut vocab: Vec<&str> = chunks
            .iter()
            .flat_map(|c| c.vocab.iter().map(String::as_str))
            .collect();
        vocab.par_sort_unstable();
        vocab.dedup();
        // Local term ids of each chunk → global ones.
        let global: Vec<Vec<u32>> = chunks
            .par_iter()
            .map(|c| {
                c.vocab
                    .iter()
                    .map(|t| vocab.binary_search(&t.as_str()).expect("merged") as u32)
                    .collect()
            })
            .collect();
        let mut df = vec![0u64; vocab.len()];
        for (c, g) in chunks.iter().zip(&global) {
            for (_, terms) in &c.docs {
                for (t, _) in terms {
                    df[g[*t as usize] as usize] += 1;
                }
            }
        }
        let mut offsets = Vec::with_capacity(vocab.len() + 1);
        offsets.push(0u64);
        for d in &df {
            offsets.push(offsets.last().unwrap() + d);
        }
        let total = *offsets.last().unwrap() as usize;
        let (mut pdocs, mut ptfs) = (vec![0u32; total], vec![0u32; total]);
        let mut fill: Vec<u64> = offsets[..vocab.len()].to_vec();
        let mut lengths = Vec::with_capacity(docs.len());
        let mut doc = 0u32;
        for (c, g) in chunks.iter().zip(&global) {
            for (len, terms) in &c.docs {
                for (t, tf) in terms {
                    let i = g[*t as usize] as usize;
                    let at = fill[i] as usize;
                    pdocs[at] = doc;
                    ptfs[at] = *tf;
                    fill[i] += 1;
                }
                lengths.push(*len);
                doc += 1;
            }
        }
        let postings = Postings::compress(&offsets, &pdocs, &ptfs);
        drop((pdocs, ptfs));
        let tokens = keep_tokens.then(|| {
            let mut all: FxHashMap<Box<str>, Option<u32>> = FxHashMap::default();
            for (c, g) in chunks.iter().zip(&global) {
                for (&word, id) in c.tokens.iter().flatten() {
                    if !all.contains_key(word) {
                        all.insert(word.into(), id.map(|l| g[l as usize]));
                    }
                }
            }
            TokenTerms(all)
        });
        let index = Bm25Index {
            stats: Stats::of(&config, &lengths),
            config,
            postings,
            lengths,
            ids: docs.iter().map(|(id, _)| id.clone()).collect(),
            terms: vocab.into_iter().map(str::to_string).collect(),
            dense: std::sync::OnceLock::new(),
        }
        .bounded()
        .expect("postings built here are well formed");
        (index, tokens)
    }

    /// Checks the postings against the documents and records each block's
    /// largest impact, which pruned search needs.
    fn bounded(mut self) -> std::result::Result<Bm25Index, String> {
        let (config, stats, lengths) = (&self.config, &self.stats, &self.lengths);
        let n = self.ids.len();
        // One loop per analyzer, so the match is not in the loop.
        match config.analyzer {
            AnalyzerKind::Lucene => self.postings.check_and_bound(n, |tf, doc| {
                tf as f32 * stats.cache[stats.norms[doc as usize] as usize]
            }),
            AnalyzerKind::Nltk => self
                .postings
                .check_and_bound(n, |tf, doc| search::impact(config, stats, lengths, tf, doc)),
        }?;
        Ok(self)
    }

    /// Documents indexed.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Scoring settings.
    pub fn config(&self) -> Bm25Config {
        self.config
    }

    /// The top `k` documents for `query`: (document id, score), best first.
    pub fn search(&self, analyzer: &Analyzer, query: &str, k: usize) -> Vec<(String, f32)> {
        self.search_docs(analyzer, query, k)
            .into_iter()
            .map(|(d, s)| (self.ids[d as usize].clone(), s))
            .collect()
    }

    /// The query's terms and how often each occurs: Lucene's analyzer
    /// scores each distinct term once, boosted by its count (Anserini's
    /// bag-of-words query); the NLTK one scores every occurrence.
    #[cfg(test)]
    fn query_terms(&self, analyzer: &Analyzer, query: &str) -> Vec<(String, u32)> {
        let terms = analyzer.terms(query);
        match self.config.analyzer {
            AnalyzerKind::Nltk => terms.into_iter().map(|t| (t, 1)).collect(),
            AnalyzerKind::Lucene => {
                let mut out: Vec<(String, u32)> = Vec::with_capacity(terms.len());
                for t in terms {
                    match out.iter_mut().find(|(u, _)| *u == t) {
                        Some((_, c)) => *c += 1,
                        None => out.push((t, 1)),
                    }
                }
                out
            }
        }
    }

    /// The query's terms found in the index, by number, with how often
    /// each occurs, as [`Bm25Index::query_terms`] counts them (in order of
    /// first occurrence). A token `known` holds is looked up rather than
    /// analysed.
    fn query_term_ids(
        &self,
        analyzer: &Analyzer,
        query: &str,
        known: Option<&TokenTerms>,
    ) -> Vec<(usize, u32)> {
        let mut out: Vec<(usize, u32)> = Vec::new();
        for token in analyzer.tokens(query) {
            let id = match known.and_then(|k| k.0.get(token)) {
                Some(id) => id.map(|i| i as usize),
                None => analyzer.term(token).and_then(|t| self.term_index(&t)),
            };
            let Some(id) = id else {
                continue;
            };
            match self.config.analyzer {
                AnalyzerKind::Nltk => out.push((id, 1)),
                AnalyzerKind::Lucene => match out.iter_mut().find(|(u, _)| *u == id) {
                    Some((_, c)) => *c += 1,
                    None => out.push((id, 1)),
                },
            }
        }
        out
    }

    /// A query term's weight: `count · idf` (Lucene's boost times idf), or
    /// the idf alone (NLTK: occurrences are scored one by one).
    fn weight(&self, stats: &Stats, count: u32, df: usize) -> f32 {
        match self.config.analyzer {
            AnalyzerKind::Lucene => count as f32 * lucene::idf(df as u64, stats.doc_count),
            AnalyzerKind::Nltk => {
                let (n, df) = (stats.doc_count as f32, df as f32);
                (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
            }
        }
    }

    /// A term's score in document `doc` at frequency `tf`.
    #[inline]
    fn score(&self, stats: &Stats, weight: f32, tf: u32, doc: usize) -> f32 {
        match self.config.analyzer {
            AnalyzerKind::Lucene => search::lucene_score(stats, weight, tf, doc),
            AnalyzerKind::Nltk => self.robertson(stats, weight, tf, self.lengths[doc]),
        }
    }

    /// Robertson's BM25 term score with an exact length (the NLTK analyzer).
    fn robertson(&self, stats: &Stats, idf: f32, tf: u32, len: u32) -> f32 {
        let Bm25Config { k1, b, .. } = self.config;
        let tf = tf as f32;
        let norm = k1 * (1.0 - b + b * len as f32 / stats.avgdl);
        idf * tf * (k1 + 1.0) / (tf + norm)
    }

    /// The score `text` would get for `query` as a document of this index
    /// (the index's statistics; the text need not be indexed). Mining uses
    /// it for the positive, to apply score margins.
    pub fn score_text(&self, analyzer: &Analyzer, query: &str, text: &str) -> f32 {
        self.score_text_with(analyzer, None, query, text)
    }

    /// [`Bm25Index::score_text`] with the tokens `known` holds looked up
    /// rather than analysed (a positive cut from the corpus): the same
    /// score. Stemming every word of a long positive was a third of
    /// mining its negatives.
    pub fn score_text_known(
        &self,
        analyzer: &Analyzer,
        known: &TokenTerms,
        query: &str,
        text: &str,
    ) -> f32 {
        self.score_text_with(analyzer, Some(known), query, text)
    }

    fn score_text_with(
        &self,
        analyzer: &Analyzer,
        known: Option<&TokenTerms>,
        query: &str,
        text: &str,
    ) -> f32 {
        if self.ids.is_empty() {
            return 0.0;
        }
        let stats = &self.stats;
        // The text's length in terms (indexed or not) and the frequency of
        // each indexed one, by number.
        let mut tf: FxHashMap<usize, u32> = FxHashMap::default();
        let mut len = 0u32;
        for token in analyzer.tokens(text) {
            let id = match known.and_then(|k| k.0.get(token)) {
                Some(Some(id)) => Some(*id as usize),
                // A token without a term (a stopword).
                Some(None) => continue,
                None => match analyzer.term(token) {
                    Some(t) => self.term_index(&t),
                    None => continue,
                },
            };
            len += 1;
            if let Some(id) = id {
                *tf.entry(id).or_insert(0) += 1;
            }
        }
        let mut total = 0f64;
        for (t, count) in self.query_term_ids(analyzer, query, known) {
            let Some(&f) = tf.get(&t) else {
                continue;
            };
            let weight = self.weight(stats, count, self.postings.df(t));
            total += f64::from(match self.config.analyzer {
                AnalyzerKind::Lucene => {
                    let norm = stats.cache[lucene::length_to_byte(len) as usize];
                    lucene::term_score(weight, f as f32, norm)
                }
                AnalyzerKind::Nltk => self.robertson(stats, weight, f, len),
            });
        }
        total as f32
    }

    /// The id of document number `doc`.
    pub fn id(&self, doc: u32) -> &str {
        &self.ids[doc as usize]
    }

    /// The number of `term`, if indexed.
    fn term_index(&self, term: &str) -> Option<usize> {
        self.terms.binary_search_by(|x| x.as_str().cmp(term)).ok()
    }

    /// Searches many queries in parallel.
    pub fn search_all(
        &self,
        queries: &[(String, String)],
        k: usize,
    ) -> Vec<(String, Vec<(String, f32)>)> {
        self.search_all_with(queries, k, Traversal::MaxScore)
    }

    /// [`Bm25Index::search_all`] with a chosen traversal.
    pub fn search_all_with(
        &self,
        queries: &[(String, String)],
        k: usize,
        traversal: Traversal,
    ) -> Vec<(String, Vec<(String, f32)>)> {
        let analyzer = Analyzer::new(self.config);
        queries
            .par_iter()
            .map(|(id, q)| {
                let hits = self.search_docs_with(&analyzer, q, k, traversal);
                let hits = hits
                    .into_iter()
                    .map(|(d, s)| (self.ids[d as usize].clone(), s));
                (id.clone(), hits.collect())
            })
            .collect()
    }

    /// Writes the index to one file (written to a temporary name, renamed;
    /// the temporary file is removed if writing fails), ending with a BLAKE3
    /// hash of its contents.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let written = self
            .write_to(&tmp)
            .and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io)
    }

    fn write_to(&self, tmp: &Path) -> std::io::Result<()> {
        let mut f = HashingWriter {
            out: std::io::BufWriter::new(std::fs::File::create(tmp)?),
            hash: blake3::Hasher::new(),
        };
        let mut w = |bytes: &[u8]| f.write(bytes);
        w(MAGIC)?;
        let config = serde_json::to_vec(&self.config).expect("plain struct");
        w(&(config.len() as u64).to_le_bytes())?;
        w(&config)?;
        let strings = |w: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
                       v: &[String]|
         -> std::io::Result<()> {
            w(&(v.len() as u64).to_le_bytes())?;
            for s in v {
                w(&(s.len() as u32).to_le_bytes())?;
                w(s.as_bytes())?;
            }
            Ok(())
        };
        strings(&mut w, &self.terms)?;
        strings(&mut w, &self.ids)?;
        let p = self.postings.parts();
        let len = |w: &mut dyn FnMut(&[u8]) -> std::io::Result<()>, n: usize| {
            w(&(n as u64).to_le_bytes())
        };
        len(&mut w, self.lengths.len())?;
        self.lengths.iter().try_for_each(|x| w(&x.to_le_bytes()))?;
        len(&mut w, p.term_blocks.len())?;
        p.term_blocks.iter().try_for_each(|x| w(&x.to_le_bytes()))?;
        len(&mut w, p.df.len())?;
        p.df.iter().try_for_each(|x| w(&x.to_le_bytes()))?;
        len(&mut w, p.last.len())?;
        p.last.iter().try_for_each(|x| w(&x.to_le_bytes()))?;
        len(&mut w, p.start.len())?;
        p.start.iter().try_for_each(|x| w(&x.to_le_bytes()))?;
        len(&mut w, p.bits.len())?;
        p.bits.iter().try_for_each(|x| w(x))?;
        len(&mut w, p.payload.len())?;
        w(p.payload)?;
        let hash = f.hash.finalize();
        f.out.write_all(hash.as_bytes())?;
        f.out.flush()
    }

    /// Reads an index written by [`Bm25Index::save`] (memory-mapped, then
    /// decoded). The checksum must match and the structure must hold
    /// (offsets start at 0, never decrease and end at the postings' length;
    /// every posting names a document that exists; terms are sorted and
    /// distinct): a truncated, corrupted, foreign or extended file is an
    /// error naming the file, never a panic or a silently wrong ranking.
    pub fn load(path: &Path) -> Result<Bm25Index> {
        let bytes = FileBytes::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |why: &str| {
            Error::Config(format!(
                "{}: not a valid pretext BM25 index ({why})",
                path.display()
            ))
        };
        match bytes.get(..8) {
            Some(m) if m == MAGIC => {}
            Some(m) if m == MAGIC_V3 => {
                return Err(bad(
                    "written by an older pretext, before compressed postings; rebuild it with `pretext bm25 index`",
                ))
            }
            Some(m) if m == MAGIC_V2 => {
                return Err(bad(
                    "written by an older pretext, before the Lucene analyzer; rebuild it with `pretext bm25 index` (add `--analyzer nltk` for the old one)",
                ))
            }
            Some(m) if m == MAGIC_V1 => {
                return Err(bad(
                    "written by an older pretext without a checksum; rebuild it with `pretext bm25 index`",
                ))
            }
            _ => return Err(bad("wrong magic or too short")),
        }
        let body_len = bytes
            .len()
            .checked_sub(HASH_LEN)
            .ok_or_else(|| bad("too short"))?;
        let (body, hash) = bytes.split_at(body_len);
        if blake3::hash(body).as_bytes() != hash {
            return Err(bad(
                "checksum mismatch: the file is corrupted, truncated or has bytes appended",
            ));
        }
        let mut r = Reader { bytes: body, at: 8 };
        let n = r.u64().ok_or_else(|| bad("truncated"))? as usize;
        let config: Bm25Config = serde_json::from_slice(r.take(n).ok_or_else(|| bad("truncated"))?)
            .map_err(|_| bad("bad header"))?;
        let terms = r.strings().ok_or_else(|| bad("truncated terms"))?;
        let ids = r.strings().ok_or_else(|| bad("truncated ids"))?;
        let lengths = r.u32s().ok_or_else(|| bad("truncated lengths"))?;
        let term_blocks = r.u64s().ok_or_else(|| bad("truncated postings"))?;
        let df = r.u32s().ok_or_else(|| bad("truncated postings"))?;
        let last = r.u32s().ok_or_else(|| bad("truncated postings"))?;
        let start = r.u64s().ok_or_else(|| bad("truncated postings"))?;
        let n = r.u64().ok_or_else(|| bad("truncated postings"))? as usize;
        let bits: Vec<[u8; 2]> = r
            .take(n.checked_mul(2).ok_or_else(|| bad("truncated postings"))?)
            .ok_or_else(|| bad("truncated postings"))?
            .chunks_exact(2)
            .map(|c| [c[0], c[1]])
            .collect();
        let n = r.u64().ok_or_else(|| bad("truncated postings"))? as usize;
        let payload_at = r.at;
        r.take(n).ok_or_else(|| bad("truncated postings"))?;
        if r.at != body.len() {
            return Err(bad("unexpected bytes after the postings"));
        }
        if lengths.len() != ids.len() || df.len() != terms.len() {
            return Err(bad("inconsistent sizes"));
        }
        if terms.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("terms not sorted"));
        }
        config.validate("the index's bm25").map_err(|e| bad(&e))?;
        let parts = postings::Parts {
            term_blocks: &term_blocks,
            df: &df,
            last: &last,
            start: &start,
            bits: &bits,
            payload: &[],
        };
        let postings = Postings::from_parts(parts, bytes, payload_at..payload_at + n);
        Bm25Index {
            stats: Stats::of(&config, &lengths),
            config,
            terms,
            postings,
            lengths,
            ids,
            dense: std::sync::OnceLock::new(),
        }
        .bounded()
        .map_err(|e| bad(&e))
    }
}

/// A buffered writer that hashes what it writes.
struct HashingWriter<W: Write> {
    out: W,
    hash: blake3::Hasher,
}

impl<W: Write> HashingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hash.update(bytes);
        self.out.write_all(bytes)
    }
}

struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Option<&'b [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u32s(&mut self) -> Option<Vec<u32>> {
        let n = self.u64()? as usize;
        let raw = self.take(n.checked_mul(4)?)?;
        Some(
            raw.chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
        )
    }
    fn u64s(&mut self) -> Option<Vec<u64>> {
        let n = self.u64()? as usize;
        let raw = self.take(n.checked_mul(8)?)?;
        Some(
            raw.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        )
    }
    fn strings(&mut self) -> Option<Vec<String>> {
        let n = self.u64()? as usize;
        (0..n)
            .map(|_| {
                let len = self.u32()? as usize;
                String::from_utf8(self.take(len)?.to_vec()).ok()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> Vec<(String, String)> {
        [
            ("a", "The cat sat on the mat."),
            (
                "b",
                "Dogs and cats are running in the park, cats everywhere!",
            ),
            ("c", "A treatise on quantum chromodynamics."),
            ("d", "cat"),
        ]
        .iter()
        .map(|(i, t)| (i.to_string(), t.to_string()))
        .collect()
    }

    #[test]
    fn analyzer_lowercases_drops_stopwords_and_stems() {
        let a = Analyzer::new(Bm25Config::default());
        assert_eq!(a.terms("The Cats are RUNNING"), ["cat", "run"]);
        let raw = Analyzer::new(Bm25Config {
            stopwords: false,
            stemmer: Stemming::None,
            ..Default::default()
        });
        assert_eq!(raw.terms("The Cats"), ["the", "cats"]);
    }

    #[test]
    fn porter_stems_as_lucene_does() {
        // Lucene's PorterStemFilter's stems of 6,000 words of the shipped
        // corpora (tests/fixtures/porter/make_expected.py, via pyserini).
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/porter/lucene_porter.tsv"
        );
        let fixture = std::fs::read_to_string(path).unwrap();
        let porter = Analyzer::new(Bm25Config {
            stopwords: false,
            ..Default::default()
        });
        let porter2 = Analyzer::new(Bm25Config {
            stopwords: false,
            stemmer: Stemming::Porter2,
            ..Default::default()
        });
        let (mut words, mut differ) = (0, 0);
        for line in fixture.lines() {
            let (word, stem) = line.split_once('\t').unwrap();
            assert_eq!(porter.term(word).as_deref(), Some(stem), "{word}");
            differ += usize::from(porter2.term(word).as_deref() != Some(stem));
            words += 1;
        }
        assert_eq!(words, 6000);
        // Porter2 is a different algorithm: the option is real.
        assert!(differ > 100, "porter2 differs on {differ} words");
        assert_eq!("porter2".parse::<Stemming>(), Ok(Stemming::Porter2));
        assert!("snowball".parse::<Stemming>().is_err());
    }

    #[test]
    fn scores_match_the_formula_and_rank() {
        let idx = Bm25Index::build(&docs(), Bm25Config::default());
        let a = Analyzer::new(idx.config());
        let hits = idx.search(&a, "cats", 10);
        let ids: Vec<&str> = hits.iter().map(|h| h.0.as_str()).collect();
        assert_eq!(ids.len(), 3, "c has no cat");
        // Hand computation for d ("cat", length 1): N = 4, df = 3.
        let lengths = [3.0f32, 6.0, 3.0, 1.0]; // cat sat mat / dog cat run park cat everywher / treatis quantum chromodynam / cat
        let avgdl = lengths.iter().sum::<f32>() / 4.0;
        let idf = (1.0f32 + (4.0 - 3.0 + 0.5) / (3.0 + 0.5)).ln();
        // Lucene's formula has no (k1 + 1); the NLTK analyzer's has.
        let want_d = idf * 1.0 / (1.0 + 0.9 * (0.6 + 0.4 * 1.0 / avgdl));
        let got_d = hits.iter().find(|h| h.0 == "d").unwrap().1;
        assert!((got_d - want_d).abs() < 1e-5, "{got_d} vs {want_d}");
        let nltk = Bm25Config {
            analyzer: AnalyzerKind::Nltk,
            ..Default::default()
        };
        let old = Bm25Index::build(&docs(), nltk).search(&Analyzer::new(nltk), "cats", 10);
        let got_d = old.iter().find(|h| h.0 == "d").unwrap().1;
        assert!((got_d - 1.9 * want_d).abs() < 1e-5, "{got_d} vs {want_d}");
        assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1));
        assert_eq!(idx.search(&a, "zebra", 10), vec![]);
        assert_eq!(idx.search(&a, "cat", 1).len(), 1);
    }

    #[test]
    fn ties_cut_at_k_go_to_the_smaller_ids() {
        // Ten identical documents and two better ones: the top 5 are the
        // two, then the three lexicographically smallest ids of the tie
        // (Anserini's order), whatever the indexing order.
        let mut docs: Vec<(String, String)> = ["j", "b", "h", "a", "e", "i", "c", "g", "f", "d"]
            .iter()
            .map(|i| (i.to_string(), "cat dog".to_string()))
            .collect();
        docs.push(("z".into(), "cat cat dog".into()));
        docs.push(("y".into(), "cat cat cat dog".into()));
        docs.push(("x".into(), "bird".into()));
        let idx = Bm25Index::build(&docs, Bm25Config::default());
        let a = Analyzer::new(idx.config());
        let ids: Vec<String> = idx.search(&a, "cat", 5).into_iter().map(|h| h.0).collect();
        assert_eq!(ids, ["y", "z", "a", "b", "c"]);
        assert_eq!(idx.search(&a, "cat", 0), vec![]);
        assert_eq!(idx.search(&a, "cat", 100).len(), 12);
    }

    #[test]
    fn save_load_round_trip_and_corrupt_files() {
        let idx = Bm25Index::build(
            &docs(),
            Bm25Config {
                k1: 1.2,
                b: 0.75,
                ..Default::default()
            },
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.bm25");
        idx.save(&p).unwrap();
        let back = Bm25Index::load(&p).unwrap();
        let a = Analyzer::new(back.config());
        assert_eq!(back.config().k1, 1.2);
        assert_eq!(
            back.search(&a, "quantum cats", 4),
            idx.search(&a, "quantum cats", 4)
        );
        let bytes = std::fs::read(&p).unwrap();
        for cut in [0, 5, 20, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            assert!(Bm25Index::load(&p).is_err(), "cut at {cut} loaded");
        }
        // Every flipped byte, a block of 0xFF, appended garbage: errors
        // naming the file (the checksum), never a panic or a wrong ranking.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            std::fs::write(&p, &b).unwrap();
            let e = Bm25Index::load(&p)
                .err()
                .unwrap_or_else(|| panic!("byte {i} flipped loaded"));
            assert!(e.to_string().contains("i.bm25"), "{e}");
        }
        let mut b = bytes.clone();
        let mid = b.len() / 2;
        b[mid..mid + 16].fill(0xff);
        std::fs::write(&p, &b).unwrap();
        assert!(Bm25Index::load(&p).is_err());
        let mut b = bytes.clone();
        b.extend_from_slice(b"garbage");
        std::fs::write(&p, &b).unwrap();
        let e = Bm25Index::load(&p).err().expect("refused").to_string();
        assert!(e.contains("checksum"), "{e}");
    }

    /// `body` (a saved index without its hash) with a fresh hash: a file
    /// whose bytes are intact but whose structure is not.
    fn rehash(mut body: Vec<u8>) -> Vec<u8> {
        let h = blake3::hash(&body);
        body.extend_from_slice(h.as_bytes());
        body
    }

    #[test]
    fn a_well_checksummed_index_with_a_broken_structure_is_refused() {
        let idx = Bm25Index::build(&docs(), Bm25Config::default());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.bm25");
        idx.save(&p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let body = bytes[..bytes.len() - HASH_LEN].to_vec();
        // Where the block arrays' values start, counted back from the end.
        let parts = idx.postings.parts();
        let nb = parts.last.len();
        let bits_at = body.len() - 8 - parts.payload.len() - 2 * nb;
        let start_at = bits_at - 8 - 8 * (nb + 1);
        let last_at = start_at - 8 - 4 * nb;
        // Block starts that decrease, and that run past the postings.
        let mut b = body.clone();
        b[start_at + 8..start_at + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&p, rehash(b)).unwrap();
        let e = Bm25Index::load(&p).err().expect("refused").to_string();
        assert!(e.contains("offsets"), "{e}");
        // A block ending at a document that does not exist.
        let mut b = body.clone();
        b[last_at..last_at + 4].copy_from_slice(&1000u32.to_le_bytes());
        std::fs::write(&p, rehash(b)).unwrap();
        let e = Bm25Index::load(&p).err().expect("refused").to_string();
        assert!(e.contains("document 1000"), "{e}");
        // A block ending off its recorded last document.
        let mut b = body.clone();
        let other = (parts.last[0] + 1) % idx.len() as u32;
        b[last_at..last_at + 4].copy_from_slice(&other.to_le_bytes());
        std::fs::write(&p, rehash(b)).unwrap();
        assert!(Bm25Index::load(&p).is_err());
        // A bit width over 32.
        let mut b = body.clone();
        b[bits_at] = 40;
        std::fs::write(&p, rehash(b)).unwrap();
        assert!(Bm25Index::load(&p).is_err());
        // Bytes between the postings and the hash.
        let mut b = body.clone();
        b.extend_from_slice(&[0; 8]);
        std::fs::write(&p, rehash(b)).unwrap();
        assert!(Bm25Index::load(&p).is_err());
        // An index of an old format asks for a rebuild.
        for magic in [MAGIC_V1, MAGIC_V3] {
            let mut b = body.clone();
            b[..8].copy_from_slice(magic);
            std::fs::write(&p, rehash(b)).unwrap();
            let e = Bm25Index::load(&p).err().expect("refused").to_string();
            assert!(e.contains("rebuild"), "{e}");
        }
    }
}
