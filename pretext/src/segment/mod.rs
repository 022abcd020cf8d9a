//! Segmentation into words, sentences and passages, as byte spans into the
//! original text, so every piece a task hands out can point back to where it
//! came from (and stays a zero-copy slice when nothing rewrites it).

mod lines;
mod sentence;
mod word;

use serde::{Deserialize, Serialize};

pub(crate) use lines::word_pieces;
pub(crate) use word::unicode_words;

/// A byte range `start..end` into a document's text, on char boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// `start..end`.
    pub fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end);
        Span { start, end }
    }

    /// The spanned text.
    pub fn of<'t>(&self, text: &'t str) -> &'t str {
        &text[self.start..self.end]
    }

    /// From the first span's start to the last one's end (`None` if empty).
    pub fn covering(spans: &[Span]) -> Option<Span> {
        Some(Span::new(spans.first()?.start, spans.last()?.end))
    }

    /// Whether `other` lies within this span.
    pub fn contains(&self, other: Span) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the span is empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// What counts as a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WordUnit {
    /// Unicode words (UAX #29 via unicode-segmentation): punctuation and
    /// spaces are not words.
    #[default]
    Unicode,
    /// Runs of non-whitespace: punctuation stays attached; about twice as fast.
    Whitespace,
}

/// The words of `text` as spans.
pub fn words(text: &str, unit: WordUnit) -> Vec<Span> {
    match unit {
        WordUnit::Unicode => {
            let mut out = Vec::with_capacity(text.len() / 6);
            unicode_words(text, |s| out.push(s));
            out
        }
        WordUnit::Whitespace => whitespace_words(text),
    }
}

/// How many Unicode words `text` has, without collecting them.
pub fn word_count(text: &str) -> usize {
    let mut n = 0;
    unicode_words(text, |_| n += 1);
    n
}

fn whitespace_words(text: &str) -> Vec<Span> {
    let mut out = Vec::with_capacity(text.len() / 6);
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push(Span::new(s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(Span::new(s, text.len()));
    }
    out
}

/// The sentences of `text` (UAX #29), trimmed, empty ones dropped.
pub fn sentences(text: &str) -> Vec<Span> {
    sentence_iter(text).collect()
}

/// The same, lazily: a task that needs the first sentence only stops early.
pub fn sentence_iter(text: &str) -> impl Iterator<Item = Span> + '_ {
    sentence::sentence_bounds(text).filter_map(|(i, s)| {
        let lead = s.len() - s.trim_start().len();
        let trimmed = s.trim();
        (!trimmed.is_empty()).then(|| Span::new(i + lead, i + lead + trimmed.len()))
    })
}

/// A passage: consecutive words of one document (DPR-style).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passage {
    /// Index of the passage within its document.
    pub index: usize,
    /// Word indices `first..last+1` into the document's word list.
    pub words: (usize, usize),
    /// Bytes from the first word's start to the last word's end.
    pub span: Span,
}

/// Groups `words` into passages of `size` words (the last may be shorter).
pub fn passages(words: &[Span], size: usize) -> Vec<Passage> {
    let size = size.max(1);
    words
        .chunks(size)
        .enumerate()
        .map(|(index, chunk)| Passage {
            index,
            words: (index * size, index * size + chunk.len()),
            span: Span::covering(chunk).expect("chunks are non-empty"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn words_and_sentences() {
        let t = "Hello, wörld! It's 3.14 — ok.  Next one?";
        let w: Vec<&str> = words(t, WordUnit::Unicode)
            .iter()
            .map(|s| s.of(t))
            .collect();
        assert_eq!(w, ["Hello", "wörld", "It's", "3.14", "ok", "Next", "one"]);
        let w: Vec<&str> = words(t, WordUnit::Whitespace)
            .iter()
            .map(|s| s.of(t))
            .collect();
        assert_eq!(
            w,
            ["Hello,", "wörld!", "It's", "3.14", "—", "ok.", "Next", "one?"]
        );
        let s: Vec<&str> = sentences(t).iter().map(|s| s.of(t)).collect();
        assert_eq!(s, ["Hello, wörld!", "It's 3.14 — ok.", "Next one?"]);
    }

    #[test]
    fn passages_group_words() {
        let t = "a b c d e f g";
        let w = words(t, WordUnit::Unicode);
        let p = passages(&w, 3);
        assert_eq!(p.len(), 3);
        assert_eq!(p[1].span.of(t), "d e f");
        assert_eq!(p[2].words, (6, 7));
    }

    proptest! {
        #[test]
        fn spans_are_on_char_boundaries(t in "\\PC{0,200}") {
            for unit in [WordUnit::Unicode, WordUnit::Whitespace] {
                for s in words(&t, unit) {
                    prop_assert!(t.is_char_boundary(s.start) && t.is_char_boundary(s.end));
                    prop_assert!(!s.of(&t).is_empty());
                }
            }
            for s in sentences(&t) {
                prop_assert!(!s.of(&t).trim().is_empty());
            }
        }
    }
}
