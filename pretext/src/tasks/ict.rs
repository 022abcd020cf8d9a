//! The inverse cloze task (Lee et al., 2019, ORQA): a sentence is the query
//! and the block of text around it the positive. The sentence is removed from
//! the block with p = 0.9, so the encoder must learn more than word overlap,
//! yet keeps it sometimes, so exact matches still count.

use std::borrow::Cow;

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use super::{check_prob, check_range, remove_span, Pair, PretextTask, Text};
use crate::corpus::Document;
use crate::segment::{sentences, word_count, Span};

/// A sentence against its surrounding block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InverseCloze {
    /// A block gathers whole sentences up to this many words (ORQA: 288
    /// word pieces, about 200 words).
    pub block_words: usize,
    /// Probability that the query sentence is removed from its block (0.9).
    pub remove_prob: f64,
    /// Query sentences per block.
    pub queries_per_block: usize,
    /// Sentences shorter than this many words are never queries.
    pub min_sentence_words: usize,
    /// Attach the document title to the block (ORQA does).
    pub with_title: bool,
}

impl Default for InverseCloze {
    fn default() -> Self {
        InverseCloze {
            block_words: 200,
            remove_prob: 0.9,
            queries_per_block: 1,
            min_sentence_words: 4,
            with_title: true,
        }
    }
}

impl InverseCloze {
    pub(crate) fn validate(&self) -> Result<(), String> {
        check_prob("ict.remove_prob", self.remove_prob)?;
        check_range("ict.queries_per_block", 1, self.queries_per_block)?;
        check_range("ict.block_words", 1, self.block_words)
    }
}

/// Groups sentences into blocks of at most `limit` words (a longer sentence
/// is a block of its own). Returns ranges of sentence indices.
fn blocks(counts: &[usize], limit: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut start, mut total) = (0, 0);
    for (i, &n) in counts.iter().enumerate() {
        if total > 0 && total + n > limit {
            out.push((start, i));
            start = i;
            total = 0;
        }
        total += n;
    }
    if start < counts.len() {
        out.push((start, counts.len()));
    }
    out
}

impl PretextTask for InverseCloze {
    fn name(&self) -> &'static str {
        "ict"
    }

    fn pairs<'a, R: Rng + ?Sized>(&'a self, doc: &'a Document<'a>, rng: &mut R) -> Vec<Pair<'a>> {
        let text: &'a str = &doc.text;
        let sents = sentences(text);
        let counts: Vec<usize> = sents.iter().map(|s| word_count(s.of(text))).collect();
        let mut out = Vec::new();
        for (first, end) in blocks(&counts, self.block_words) {
            if end - first < 2 {
                continue; // a lone sentence has no context to be found in
            }
            let candidates: Vec<usize> = (first..end)
                .filter(|&i| counts[i] >= self.min_sentence_words)
                .collect();
            let chosen = rand::seq::index::sample(
                rng,
                candidates.len(),
                self.queries_per_block.min(candidates.len()),
            );
            let block = Span::new(sents[first].start, sents[end - 1].end);
            for k in chosen.into_iter() {
                let q = sents[candidates[k]];
                let positive = if rng.random_bool(self.remove_prob) {
                    Text {
                        text: Cow::Owned(remove_span(text, block, q)),
                        title: None,
                        span: Some(block),
                        doc_id: None,
                    }
                } else {
                    Text::slice(text, block)
                };
                out.push(Pair {
                    query: Text::slice(text, q),
                    positive: positive.with_title(doc, self.with_title),
                    negatives: Vec::new(),
                    shared: None,
                    scores: None,
                    task: "ict",
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::testutil::{doc, long_text};
    use rand::SeedableRng;

    #[test]
    fn blocks_respect_the_limit() {
        assert_eq!(
            blocks(&[3, 3, 3, 9, 1], 6),
            vec![(0, 2), (2, 3), (3, 4), (4, 5)]
        );
    }

    #[test]
    fn query_removed_at_about_the_set_rate() {
        let text = long_text(400);
        let d = doc(&text, Some("T"));
        let task = InverseCloze {
            block_words: 60,
            ..Default::default()
        };
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(7);
        let (mut removed, mut total) = (0, 0);
        for _ in 0..10 {
            for p in task.pairs(&d, &mut rng) {
                let block = p.positive.span.unwrap();
                let q = p.query.span.unwrap();
                assert!(block.contains(q), "query sentence outside its block");
                assert_eq!(p.positive.title.as_deref(), Some("T"));
                total += 1;
                if !p.positive.text.contains(&*p.query.text) {
                    removed += 1;
                }
            }
        }
        let rate = removed as f64 / total as f64;
        assert!(total > 500, "too few pairs: {total}");
        assert!(
            (rate - 0.9).abs() < 0.03,
            "removal rate {rate} not near 0.9"
        );
    }
}
