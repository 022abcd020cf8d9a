//! SPAR's lexical teacher (Chen et al., 2021, "Salient Phrase Aware Dense
//! Retrieval"): a dense model learns to imitate BM25 by training on
//! pseudo-queries whose positives and negatives are BM25's own top-k
//! passages of the corpus, with BM25's scores attached for distillation
//! (`train.teacher`). Here the pseudo-queries are the `pseudo-query`
//! task's (title, first sentence, salient chunk), so no labels and no
//! generation model are needed.
//!
//! The task needs the whole corpus, not just the document at hand: the
//! caller builds a [`LexicalIndex`] once ([`crate::pipeline::ready_task`]
//! does) and hands it over with [`Spar::set_index`].

use std::borrow::Cow;
use std::sync::Arc;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Pair, PretextTask, PseudoQuery, Text};
use crate::bm25::{Analyzer, Bm25Config, Bm25Index, TokenTerms};
use crate::corpus::Document;
use crate::formats::flat;
use crate::negatives::CorpusTexts;

/// A BM25 index over a corpus, with the texts it returns and the terms of
/// their tokens (pseudo-queries are made of them).
pub struct LexicalIndex {
    texts: CorpusTexts,
    index: Bm25Index,
    tokens: TokenTerms,
    analyzer: Analyzer,
}

impl LexicalIndex {
    /// Indexes `texts` with `config`.
    pub fn new(texts: CorpusTexts, config: Bm25Config) -> LexicalIndex {
        let (index, tokens) = texts.bm25_with_tokens(config);
        LexicalIndex {
            index,
            tokens,
            analyzer: Analyzer::new(config),
            texts,
        }
    }

    /// The documents of the corpus.
    pub fn texts(&self) -> &CorpusTexts {
        &self.texts
    }

    /// BM25's top `k` documents for `query`: document numbers and scores,
    /// best first.
    pub fn search(&self, query: &str, k: usize) -> Vec<(u32, f32)> {
        self.index
            .search_docs_known(&self.analyzer, &self.tokens, query, k)
    }
}

impl std::fmt::Debug for LexicalIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LexicalIndex")
            .field("documents", &self.texts.ids.len())
            .finish()
    }
}

/// Pseudo-queries paired with BM25's top-k passages, scored by BM25.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Spar {
    /// How the pseudo-queries are made (the `pseudo-query` task's settings;
    /// its positives are dropped, BM25 chooses them).
    pub queries: PseudoQuery,
    /// Passages per query: BM25's best is the positive, the next
    /// `top_k − 1` are its negatives, all with their BM25 scores.
    pub top_k: usize,
    /// BM25 parameters and analyzer.
    pub bm25: Bm25Config,
    /// The corpus index; set by the caller before use.
    #[serde(skip)]
    pub index: Option<Arc<LexicalIndex>>,
}

impl Default for Spar {
    fn default() -> Self {
        Spar {
            queries: PseudoQuery::default(),
            top_k: 8,
            bm25: Bm25Config::default(),
            index: None,
        }
    }
}

impl PartialEq for Spar {
    fn eq(&self, o: &Self) -> bool {
        self.queries == o.queries && self.top_k == o.top_k && self.bm25 == o.bm25
    }
}

impl Spar {
    pub(crate) fn validate(&self) -> Result<(), String> {
        self.queries.validate()?;
        if !(2..=1000).contains(&self.top_k) {
            return Err(format!(
                "spar.top_k = {} must be in 2..=1000 (a positive and at least one negative)",
                self.top_k
            ));
        }
        Ok(())
    }

    /// Hands the task its corpus index.
    pub fn set_index(&mut self, index: Arc<LexicalIndex>) {
        self.index = Some(index);
    }

    /// Passage `item` of the corpus, borrowed from the index: a document's
    /// pairs hold 24 passages by default, and copying them was a tenth of
    /// the task's time.
    fn passage(texts: &CorpusTexts, item: u32) -> Text<'_> {
        let i = item as usize;
        let title = &texts.titles[i];
        Text {
            text: Cow::Borrowed(&texts.bodies[i]),
            title: (!title.is_empty()).then_some(Cow::Borrowed(title.as_str())),
            span: None,
            doc_id: Some(Cow::Borrowed(&texts.ids[i])),
        }
    }
}

impl PretextTask for Spar {
    fn name(&self) -> &'static str {
        "spar"
    }

    /// Without an index (a caller that skipped [`Spar::set_index`]) there is
    /// nothing to rank against, and the task makes no pairs.
    fn pairs<'a, R: Rng + ?Sized>(&'a self, doc: &'a Document<'a>, rng: &mut R) -> Vec<Pair<'a>> {
        let Some(index) = &self.index else {
            return Vec::new();
        };
        let texts = index.texts();
        let mut out = Vec::new();
        for p in self.queries.pairs(doc, rng) {
            let query = flat(&p.query).into_owned();
            let ranked = index.search(&query, self.top_k);
            // A query with a single match teaches no ranking.
            if ranked.len() < 2 {
                continue;
            }
            out.push(Pair {
                query: Text {
                    text: Cow::Owned(query),
                    title: None,
                    span: p.query.span,
                    doc_id: None,
                },
                positive: Spar::passage(texts, ranked[0].0),
                negatives: ranked[1..]
                    .iter()
                    .map(|&(item, _)| Spar::passage(texts, item))
                    .collect(),
                shared: None,
                scores: Some(ranked.iter().map(|&(_, s)| s).collect()),
                task: "spar",
            });
        }
        out
    }
}
