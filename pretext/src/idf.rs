//! Document frequencies of lower-cased words over a corpus: what makes a word
//! salient (AugTriever's salient spans) rather than merely frequent.

use std::borrow::Cow;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::segment::{words, WordUnit};

/// Lower-cases without allocating when the word already is (most are).
pub fn lower(word: &str) -> Cow<'_, str> {
    if word.is_ascii() {
        return match word.bytes().any(|b| b.is_ascii_uppercase()) {
            true => Cow::Owned(word.to_ascii_lowercase()),
            false => Cow::Borrowed(word),
        };
    }
    if word.chars().any(char::is_uppercase) {
        Cow::Owned(word.to_lowercase())
    } else {
        Cow::Borrowed(word)
    }
}

/// How many documents hold each lower-cased word.
#[derive(Debug, Clone, Default)]
pub struct DocFreq {
    docs: u64,
    df: FxHashMap<String, u64>,
}

impl DocFreq {
    /// Counts the words of one document.
    pub fn from_text(text: &str) -> DocFreq {
        let unique: FxHashSet<Cow<str>> = words(text, WordUnit::Unicode)
            .iter()
            .map(|w| lower(w.of(text)))
            .collect();
        let df = unique.into_iter().map(|w| (w.into_owned(), 1)).collect();
        DocFreq { docs: 1, df }
    }

    /// Adds another set of counts (to fold per-thread counts together).
    pub fn merge(mut self, other: DocFreq) -> DocFreq {
        let (mut big, small) = if self.df.len() >= other.df.len() {
            (std::mem::take(&mut self), other)
        } else {
            (other, self)
        };
        big.docs += small.docs;
        for (w, n) in small.df {
            match big.df.get_mut(&w) {
                Some(c) => *c += n,
                None => {
                    big.df.insert(w, n);
                }
            }
        }
        big
    }

    /// Documents counted.
    pub fn docs(&self) -> u64 {
        self.docs
    }

    /// Documents holding `word` (lower-cased).
    pub fn df(&self, word: &str) -> u64 {
        self.df.get(word).copied().unwrap_or(0)
    }

    /// BM25's (Robertson–Spärck Jones) idf, always positive as in Lucene:
    /// `ln(1 + (N - df + 0.5) / (df + 0.5))`.
    pub fn idf(&self, word: &str) -> f64 {
        let (n, df) = (self.docs as f64, self.df(word) as f64);
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_documents_not_occurrences() {
        let df = DocFreq::from_text("a a b")
            .merge(DocFreq::from_text("B c"))
            .merge(DocFreq::default());
        assert_eq!(df.docs(), 2);
        assert_eq!(
            (df.df("a"), df.df("b"), df.df("c"), df.df("z")),
            (1, 2, 1, 0)
        );
        assert!(df.idf("c") > df.idf("b") && df.idf("b") > 0.0);
    }
}
