//! Neighbouring text (Neelakantan et al., 2022, CPT): adjacent pieces of one
//! document are a positive pair, on the premise that text next to each other
//! is about the same thing.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{check_range, Pair, PretextTask, Text};
use crate::corpus::Document;
use crate::segment::{passages, words, WordUnit};

/// Piece `i` against piece `i + 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Neighbors {
    /// Words per piece.
    pub piece_words: usize,
    /// A piece shorter than this (the document's last) pairs with nothing.
    pub min_words: usize,
    /// Step between consecutive pairs: 1 pairs every piece with the next
    /// (each piece in two pairs), 2 gives disjoint pairs.
    pub stride: usize,
    /// At most this many pairs a document (0: no limit).
    pub max_pairs_per_doc: usize,
    /// Attach the document title to the positive.
    pub with_title: bool,
    /// What a word is: whitespace-separated by default, as DPR counts its
    /// 100-word passages (and twice as fast as UAX #29 words).
    pub unit: WordUnit,
}

impl Default for Neighbors {
    fn default() -> Self {
        Neighbors {
            piece_words: 100,
            min_words: 8,
            stride: 1,
            max_pairs_per_doc: 0,
            with_title: false,
            unit: WordUnit::Whitespace,
        }
    }
}

impl Neighbors {
    pub(crate) fn validate(&self) -> Result<(), String> {
        check_range(
            "neighbors.min_words/piece_words",
            self.min_words.max(1),
            self.piece_words,
        )?;
        check_range("neighbors.stride", 1, self.stride)
    }
}

impl PretextTask for Neighbors {
    fn name(&self) -> &'static str {
        "neighbors"
    }

    fn pairs<'a, R: Rng + ?Sized>(&'a self, doc: &'a Document<'a>, _rng: &mut R) -> Vec<Pair<'a>> {
        let text: &'a str = &doc.text;
        let pieces = passages(&words(text, self.unit), self.piece_words);
        let limit = if self.max_pairs_per_doc == 0 {
            usize::MAX
        } else {
            self.max_pairs_per_doc
        };
        pieces
            .windows(2)
            .step_by(self.stride.max(1))
            .filter(|w| w[1].words.1 - w[1].words.0 >= self.min_words)
            .take(limit)
            .map(|w| Pair {
                query: Text::slice(text, w[0].span),
                positive: Text::slice(text, w[1].span).with_title(doc, self.with_title),
                negatives: Vec::new(),
                shared: None,
                scores: None,
                task: "neighbors",
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::testutil::{doc, long_text};
    use rand::SeedableRng;

    #[test]
    fn pairs_are_adjacent_pieces() {
        let text = long_text(100);
        let d = doc(&text, None);
        let task = Neighbors {
            piece_words: 30,
            ..Default::default()
        };
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
        let pairs = task.pairs(&d, &mut rng);
        assert!(pairs.len() > 10);
        for p in &pairs {
            let (q, pos) = (p.query.span.unwrap(), p.positive.span.unwrap());
            assert!(q.end <= pos.start, "query must precede its positive");
            let gap = &text[q.end..pos.start];
            assert!(
                words(gap, WordUnit::Unicode).is_empty(),
                "pieces not adjacent: {gap:?}"
            );
            assert_eq!(words(&p.query.text, WordUnit::Unicode).len(), 30);
        }
        let disjoint = Neighbors {
            piece_words: 30,
            stride: 2,
            ..Default::default()
        };
        assert_eq!(disjoint.pairs(&d, &mut rng).len(), pairs.len().div_ceil(2));
    }
}
