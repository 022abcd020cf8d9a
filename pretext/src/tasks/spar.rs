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
use std::sync::{Arc, OnceLock};

use rand::Rng;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::{Pair, PretextTask, PseudoQuery, Text};
use crate::bm25::{Analyzer, Bm25Config, Bm25Index, TokenTerms};
use crate::corpus::Document;
use crate::formats::{flat, Escaped, EscapedTexts, KnownTexts};
use crate::negatives::CorpusTexts;

/// A BM25 index over a corpus, with the texts it returns and the terms of
/// their tokens (pseudo-queries are made of them).
pub struct LexicalIndex {
    texts: CorpusTexts,
    index: Bm25Index,
    tokens: TokenTerms,
    analyzer: Analyzer,
    /// The passages JSON-escaped, made when first written
    /// ([`KnownTexts`]): a task that only trains never pays for them.
    escaped: OnceLock<EscapedPassages>,
}

/// The corpus's titles and texts escaped, and each text's document number
/// by the address of its string.
struct EscapedPassages {
    texts: EscapedTexts,
    by_address: FxHashMap<usize, u32>,
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
            escaped: OnceLock::new(),
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

impl KnownTexts for LexicalIndex {
    /// The escaped passage when `t` borrows document `i`'s very strings,
    /// as [`Spar`]'s passages do: the same address and length is the same
    /// bytes. A rewritten text (an augmentation's) is owned elsewhere and
    /// is not found.
    fn escaped(&self, t: &Text<'_>) -> Option<Escaped<'_>> {
        let Cow::Borrowed(body) = &t.text else {
            return None;
        };
        let known = self.escaped.get_or_init(|| {
            let texts = &self.texts;
            EscapedPassages {
                texts: EscapedTexts::new(
                    texts
                        .titles
                        .iter()
                        .zip(&texts.bodies)
                        .map(|(a, b)| (a.as_str(), b.as_str())),
                ),
                // Empty strings share one dangling address: never found.
                by_address: (texts.bodies.iter().enumerate())
                    .filter(|(_, b)| !b.is_empty())
                    .map(|(i, b)| (b.as_ptr() as usize, i as u32))
                    .collect(),
            }
        });
        let i = *known.by_address.get(&(body.as_ptr() as usize))? as usize;
        let same = |a: &str, b: &str| a.as_ptr() == b.as_ptr() && a.len() == b.len();
        let title = &self.texts.titles[i];
        let title_same = match &t.title {
            None => title.is_empty(),
            Some(Cow::Borrowed(x)) => !x.is_empty() && same(x, title),
            Some(Cow::Owned(_)) => false,
        };
        (same(body, &self.texts.bodies[i]) && title_same).then(|| known.texts.get(i))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{line_size_hint, write_pair, Lines, PairFormat};

    const PLAIN: &str = "plain text ";

    fn index() -> LexicalIndex {
        // The second text is long enough to be borrowed when written.
        let plain = PLAIN.repeat(40);
        let (titles, bodies) = (
            ["Quotes \"here\"", "", ""],
            ["a line\nwith \\ and \"quotes\"\u{1}", plain.trim_end(), ""],
        );
        let texts = CorpusTexts {
            ids: vec!["a".into(), "b\"".into(), "c".into()],
            titles: titles.map(String::from).to_vec(),
            bodies: bodies.map(String::from).to_vec(),
            texts: (0..3)
                .map(|i| format!("{} {}", titles[i], bodies[i]).trim().to_string())
                .collect(),
            ordinals: vec![0, 1, 2],
        };
        LexicalIndex::new(texts, Bm25Config::default())
    }

    /// A passage is known only when it borrows the corpus's very strings;
    /// a copy, a slice, another title or an empty text is escaped anew.
    #[test]
    fn known_passages_are_found_by_identity_only() {
        let index = index();
        let texts = index.texts();
        let (p0, p1) = (Spar::passage(texts, 0), Spar::passage(texts, 1));
        assert_eq!(
            index.escaped(&p0),
            Some(Escaped {
                title: br#"Quotes \"here\""#,
                text: br#"a line\nwith \\ and \"quotes\"\u0001"#,
            })
        );
        assert_eq!(
            index.escaped(&p1),
            Some(Escaped {
                title: b"",
                text: PLAIN.repeat(40).trim_end().as_bytes(),
            })
        );
        let not_known = [
            Text {
                text: Cow::Owned(texts.bodies[0].clone()),
                ..p0.clone()
            },
            Text {
                text: Cow::Borrowed(&texts.bodies[0][..6]),
                ..p0.clone()
            },
            Text {
                title: None,
                ..p0.clone()
            },
            Text {
                title: Some(Cow::Owned(texts.titles[0].clone())),
                ..p0.clone()
            },
            Text {
                title: Some(Cow::Borrowed("a title")),
                ..p1.clone()
            },
            Spar::passage(texts, 2),
        ];
        for t in &not_known {
            assert_eq!(index.escaped(t), None, "{t:?}");
        }
    }

    /// Lines written with the index's escaped passages are the bytes of
    /// lines escaped anew, in every layout, known sides or not.
    #[test]
    fn known_passages_write_the_same_lines() {
        let index = index();
        let texts = index.texts();
        let mut sides: Vec<Text> = (0..3).map(|i| Spar::passage(texts, i)).collect();
        sides.push(Text {
            text: Cow::Owned(texts.bodies[0].replace('\n', "\t")),
            ..Spar::passage(texts, 0)
        });
        let pair = Pair {
            query: Text {
                text: Cow::Borrowed("with \"quotes\""),
                title: None,
                span: None,
                doc_id: None,
            },
            positive: sides[0].clone(),
            negatives: sides[1..].to_vec(),
            shared: None,
            scores: Some(vec![3.0, 2.0, 1.0, 0.5]),
            task: "spar",
        };
        let doc = texts.document(1);
        for format in [
            PairFormat::SentenceTransformers,
            PairFormat::Flag,
            PairFormat::Tevatron,
        ] {
            let (mut anew, mut copied) = (Lines::default(), Lines::default());
            write_pair(&mut anew, format, &doc, 0, &pair, true, None);
            write_pair(&mut copied, format, &doc, 0, &pair, true, Some(&index));
            // The hint a writer reserves by holds the whole line.
            assert!(line_size_hint(&pair) >= anew.len(), "{format}");
            // The known passages are borrowed, not copied: more runs.
            assert_eq!(anew.runs().count(), 1, "{format}");
            assert!(copied.runs().count() > 1, "{format}");
            assert_eq!(
                String::from_utf8(copied.to_vec()).unwrap(),
                String::from_utf8(anew.to_vec()).unwrap(),
                "{format}"
            );
        }
    }
}
