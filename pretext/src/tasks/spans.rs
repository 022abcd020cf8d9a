//! Recurring span retrieval (Ram et al., 2022, Spider): two passages of one
//! article that share a span of 2–10 words are a positive pair. The query is
//! a short window around one occurrence, with the span itself kept only half
//! of the time, so the encoder learns both lexical and semantic matching.

use std::borrow::Cow;
use std::hash::Hasher;

use rand::{Rng, RngExt};
use rustc_hash::{FxHashMap, FxHasher};
use serde::{Deserialize, Serialize};

use super::{check_prob, check_range, remove_span, Pair, PretextTask, Text};
use crate::corpus::Document;
use crate::segment::{passages, words, Passage, Span, WordUnit};
use crate::stopwords::is_stopword;

/// Spider's recurring spans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecurringSpans {
    /// Words per passage (DPR: 100).
    pub passage_words: usize,
    /// Shortest recurring span in words (2).
    pub span_min: usize,
    /// Longest recurring span in words (10).
    pub span_max: usize,
    /// Shortest query window in words (5).
    pub query_min: usize,
    /// Longest query window in words (30).
    pub query_max: usize,
    /// Probability that the span stays in the query (0.5).
    pub keep_span_prob: f64,
    /// Prepend the document title to the positive (Spider does).
    pub with_title: bool,
    /// Add a passage of the same document without the span as a negative.
    pub hard_negative: bool,
    /// At most this many pairs (distinct spans) a document.
    pub max_pairs_per_doc: usize,
}

impl Default for RecurringSpans {
    fn default() -> Self {
        RecurringSpans {
            passage_words: 100,
            span_min: 2,
            span_max: 10,
            query_min: 5,
            query_max: 30,
            keep_span_prob: 0.5,
            with_title: true,
            hard_negative: false,
            max_pairs_per_doc: 4,
        }
    }
}

/// One maximal occurrence of a recurring span.
#[derive(Debug, Clone, Copy)]
struct Occurrence {
    passage: usize,
    word: usize,
}

/// A span that recurs in two or more passages: its length and occurrences.
struct Recurring {
    len: usize,
    occurrences: Vec<Occurrence>,
}

impl RecurringSpans {
    pub(crate) fn validate(&self) -> Result<(), String> {
        check_range("spans.span_min/span_max", self.span_min, self.span_max)?;
        check_range(
            "spans.query_min/query_max",
            self.query_min.max(1),
            self.query_max,
        )?;
        check_range("spans.passage_words", 1, self.passage_words)?;
        check_prob("spans.keep_span_prob", self.keep_span_prob)
    }

    /// The recurring spans of a document, maximal and stopword-free at both
    /// ends, in order of first occurrence.
    fn recurring(&self, hashes: &[u64], stop: &[bool], ps: &[Passage]) -> Vec<Recurring> {
        let (min, max) = (self.span_min, self.span_max);
        let longest = recurring_lengths(hashes, ps, min, max);
        let mut index: FxHashMap<u64, usize> = FxHashMap::default();
        let mut out: Vec<Recurring> = Vec::new();
        let mut occ = Vec::new();
        let mut grams = Vec::with_capacity(max);
        for p in ps {
            // Recurring occurrences in this passage, by start then longest first.
            occ.clear();
            for i in p.words.0..p.words.1 {
                if longest[i] < min || stop[i] {
                    continue;
                }
                grams.clear();
                let mut h = FxHasher::default();
                for &w in &hashes[i..i + longest[i]] {
                    h.write_u64(w);
                    grams.push(h.finish());
                }
                for n in (min..=longest[i]).rev() {
                    if !stop[i + n - 1] {
                        occ.push((i, n, grams[n - 1]));
                    }
                }
            }
            // Drop occurrences inside a longer recurring one: maximal spans only.
            let mut reach = 0;
            for &(i, n, h) in &occ {
                if i + n <= reach {
                    continue;
                }
                reach = i + n;
                let k = *index.entry(h).or_insert_with(|| {
                    out.push(Recurring {
                        len: n,
                        occurrences: Vec::new(),
                    });
                    out.len() - 1
                });
                let r = &mut out[k];
                if r.occurrences.last().is_none_or(|o| o.passage != p.index) {
                    r.occurrences.push(Occurrence {
                        passage: p.index,
                        word: i,
                    });
                }
            }
        }
        out.retain(|r| r.occurrences.len() >= 2);
        out
    }
}

/// For each word, the length of the longest gram starting there (`min` to
/// `max` words, within its passage) that occurs in two or more passages; 0
/// if none does.
///
/// Grows grams a word at a time, Apriori-style: a gram can recur only if
/// both of its one-word-shorter parts do, so each round past the first
/// hashes only the grams extending a recurring one, and long grams, which
/// seldom recur, cost almost nothing. A gram's hash is an FxHasher fed its
/// words' hashes in order, the state kept per start and extended by one
/// word per round.
fn recurring_lengths(hashes: &[u64], ps: &[Passage], min: usize, max: usize) -> Vec<usize> {
    let words = hashes.len();
    let mut passage = vec![(0, 0); words];
    for p in ps {
        passage[p.words.0..p.words.1].fill((p.index, p.words.1));
    }
    let mut states = vec![FxHasher::default(); words];
    let mut frontier: Vec<usize> = Vec::with_capacity(words);
    for (i, state) in states.iter_mut().enumerate() {
        if i + min <= passage[i].1 {
            hashes[i..i + min - 1]
                .iter()
                .for_each(|&w| state.write_u64(w));
            frontier.push(i);
        }
    }
    let mut longest = vec![0; words];
    let mut grown = Vec::with_capacity(words);
    // Per distinct gram of this round, an index into `holders`: (first
    // passage holding it, held by another passage too). Candidates keep the
    // index, so the second look needs no hashing.
    let mut seen: FxHashMap<u64, u32> = FxHashMap::default();
    let mut holders: Vec<(usize, bool)> = Vec::with_capacity(words);
    for n in min..=max {
        seen.clear();
        seen.reserve(frontier.len());
        holders.clear();
        grown.clear();
        for &i in &frontier {
            let (p, end) = passage[i];
            // The gram must fit in its passage, and its tail (the gram of
            // n - 1 words one word on) must recur too.
            if i + n > end || (n > min && longest[i + 1] < n - 1) {
                continue;
            }
            states[i].write_u64(hashes[i + n - 1]);
            let k = *seen.entry(states[i].finish()).or_insert_with(|| {
                holders.push((p, false));
                holders.len() as u32 - 1
            });
            let e = &mut holders[k as usize];
            e.1 |= e.0 != p;
            grown.push((i, k));
        }
        frontier.clear();
        for &(i, k) in &grown {
            if holders[k as usize].1 {
                longest[i] = n;
                frontier.push(i);
            }
        }
        if frontier.is_empty() {
            break;
        }
    }
    longest
}

impl PretextTask for RecurringSpans {
    fn name(&self) -> &'static str {
        "spans"
    }

    fn pairs<'a, R: Rng + ?Sized>(&'a self, doc: &'a Document<'a>, rng: &mut R) -> Vec<Pair<'a>> {
        let text: &'a str = &doc.text;
        let ws = words(text, WordUnit::Unicode);
        let ps = passages(&ws, self.passage_words);
        if ps.len() < 2 {
            return Vec::new();
        }
        let mut lower = String::new();
        let (hashes, stop): (Vec<u64>, Vec<bool>) = ws
            .iter()
            .map(|w| {
                let word = w.of(text);
                // Most words are lower-case ASCII already: hashed in place.
                let lowered = if !word.bytes().any(|b| b.is_ascii_uppercase()) && word.is_ascii() {
                    word
                } else {
                    lower.clear();
                    word.chars()
                        .flat_map(char::to_lowercase)
                        .for_each(|c| lower.push(c));
                    &lower
                };
                let mut h = FxHasher::default();
                h.write(lowered.as_bytes());
                (h.finish(), is_stopword(lowered))
            })
            .unzip();
        let recurring = self.recurring(&hashes, &stop, &ps);
        let amount = self.max_pairs_per_doc.min(recurring.len());
        let chosen = rand::seq::index::sample(rng, recurring.len(), amount);
        let mut out = Vec::with_capacity(amount);
        for k in chosen.into_iter() {
            let r = &recurring[k];
            let q = r.occurrences[rng.random_range(0..r.occurrences.len())];
            let others: Vec<&Occurrence> = r
                .occurrences
                .iter()
                .filter(|o| o.passage != q.passage)
                .collect();
            let pos = others[rng.random_range(0..others.len())];
            // Query: a window of 5-30 words of the query passage around the span.
            let p = ps[q.passage];
            let len = rng
                .random_range(self.query_min..=self.query_max)
                .max(r.len)
                .min(p.words.1 - p.words.0);
            let lo = (q.word + r.len).saturating_sub(len).max(p.words.0);
            let hi = q.word.min(p.words.1 - len);
            let start = rng.random_range(lo..=hi);
            let window = Span::covering(&ws[start..start + len]).expect("len >= 1");
            let span = Span::covering(&ws[q.word..q.word + r.len]).expect("len >= 2");
            let keep = rng.random_bool(self.keep_span_prob);
            let query = match keep {
                false if window != span => Text {
                    text: Cow::Owned(remove_span(text, window, span)),
                    title: None,
                    span: Some(window),
                    doc_id: None,
                },
                _ => Text::slice(text, window),
            };
            let mut negatives = Vec::new();
            if self.hard_negative {
                let needle = &hashes[q.word..q.word + r.len];
                let without: Vec<&Passage> = ps
                    .iter()
                    .filter(|c| {
                        !hashes[c.words.0..c.words.1]
                            .windows(r.len)
                            .any(|w| w == needle)
                    })
                    .collect();
                if !without.is_empty() {
                    let n = without[rng.random_range(0..without.len())];
                    negatives.push(Text::slice(text, n.span).with_title(doc, self.with_title));
                }
            }
            out.push(Pair {
                query,
                positive: Text::slice(text, ps[pos.passage].span).with_title(doc, self.with_title),
                negatives,
                shared: Some(span),
                scores: None,
                task: "spans",
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::testutil::doc;
    use rand::SeedableRng;

    fn lower_words(t: &str) -> Vec<String> {
        words(t, WordUnit::Unicode)
            .iter()
            .map(|s| s.of(t).to_lowercase())
            .collect()
    }

    const TEXT: &str = "The Eiffel Tower stands in Paris and draws many visitors. \
        Engineers built it for a fair. It was criticised at first. \
        Later the Eiffel Tower became a symbol of France and of Paris itself.";

    #[test]
    fn every_pair_shares_a_maximal_span() {
        let d = doc(TEXT, Some("Eiffel Tower"));
        let task = RecurringSpans {
            passage_words: 10,
            max_pairs_per_doc: 10,
            ..Default::default()
        };
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(3);
        let mut spans = std::collections::BTreeSet::new();
        for _ in 0..50 {
            for p in task.pairs(&d, &mut rng) {
                let span = lower_words(p.shared.unwrap().of(TEXT));
                let pos = lower_words(&p.positive.text);
                assert!(
                    pos.windows(span.len()).any(|w| w == span),
                    "{span:?} not in positive"
                );
                assert!(p.positive.span != p.query.span);
                assert!(p.query.span.unwrap().contains(p.shared.unwrap()));
                assert_eq!(p.positive.title.as_deref(), Some("Eiffel Tower"));
                assert!(!is_stopword(&span[0]) && !is_stopword(span.last().unwrap()));
                spans.insert(span.join(" "));
            }
        }
        // "eiffel tower" is maximal; "tower" alone is too short, and "paris"
        // is one word. Nothing else recurs across passages.
        assert_eq!(spans.into_iter().collect::<Vec<_>>(), ["eiffel tower"]);
    }

    #[test]
    fn span_kept_about_half_the_time_and_negatives_lack_it() {
        let d = doc(TEXT, None);
        let task = RecurringSpans {
            passage_words: 10,
            hard_negative: true,
            ..Default::default()
        };
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(5);
        let (mut kept, mut total) = (0, 0);
        for _ in 0..2000 {
            for p in task.pairs(&d, &mut rng) {
                total += 1;
                let q = lower_words(&p.query.text).join(" ");
                kept += q.contains("eiffel tower") as usize;
                let n = lower_words(&p.negatives[0].text).join(" ");
                assert!(!n.contains("eiffel tower"));
                let qw = lower_words(&p.query.text).len();
                assert!(qw <= 30 && (qw >= 3 || q.contains("eiffel tower")));
            }
        }
        let rate = kept as f64 / total as f64;
        assert!((rate - 0.5).abs() < 0.05, "span kept at rate {rate}");
    }

    #[test]
    fn single_passage_documents_give_nothing() {
        let d = doc("short text short text", None);
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
        assert!(RecurringSpans::default().pairs(&d, &mut rng).is_empty());
    }
}
