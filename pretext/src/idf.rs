//! Document frequencies of lower-cased words over a corpus: what makes a word
//! salient (AugTriever's salient spans) rather than merely frequent.

use std::hash::Hasher;

use rustc_hash::{FxHashMap, FxHashSet, FxHasher};

use crate::segment::{words, WordUnit};

/// `word` lower-cased: itself when it already is (most words are), else
/// written into `buf`, which the caller keeps across a document's words so
/// the loop allocates once rather than once per capitalised word.
pub fn lower<'a>(word: &'a str, buf: &'a mut String) -> &'a str {
    if word.is_ascii() {
        if !word.bytes().any(|b| b.is_ascii_uppercase()) {
            return word;
        }
        buf.clear();
        buf.push_str(word);
        buf.make_ascii_lowercase();
        return buf;
    }
    if !word.chars().any(char::is_uppercase) {
        return word;
    }
    *buf = word.to_lowercase();
    buf
}

/// A lower-cased word's key in [`DocFreq`]: its 64-bit hash. Counting and
/// looking words up by hash rather than by string spares the per-word
/// string comparisons and copies that dominated the corpus statistics
/// pass and `pseudo-query`'s salience scores; two distinct words sharing a
/// key (odds near 10^-8 for a million-word vocabulary) would only share a
/// document frequency.
pub fn word_key(lowered: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(lowered.as_bytes());
    h.finish()
}

/// How many documents hold each lower-cased word.
#[derive(Debug, Clone, Default)]
pub struct DocFreq {
    docs: u64,
    df: FxHashMap<u64, u64>,
}

impl DocFreq {
    /// Counts the words of one document.
    pub fn from_text(text: &str) -> DocFreq {
        let mut buf = String::new();
        let unique: FxHashSet<u64> = words(text, WordUnit::Unicode)
            .iter()
            .map(|w| word_key(lower(w.of(text), &mut buf)))
            .collect();
        let df = unique.into_iter().map(|w| (w, 1)).collect();
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
            *big.df.entry(w).or_insert(0) += n;
        }
        big
    }

    /// Documents counted.
    pub fn docs(&self) -> u64 {
        self.docs
    }

    /// Documents holding `word` (lower-cased).
    pub fn df(&self, word: &str) -> u64 {
        self.df_of(word_key(word))
    }

    /// Documents holding the word of `key` ([`word_key`]).
    pub fn df_of(&self, key: u64) -> u64 {
        self.df.get(&key).copied().unwrap_or(0)
    }

    /// BM25's (Robertson–Spärck Jones) idf, always positive as in Lucene:
    /// `ln(1 + (N - df + 0.5) / (df + 0.5))`.
    pub fn idf(&self, word: &str) -> f64 {
        self.idf_of(word_key(word))
    }

    /// [`DocFreq::idf`] of the word of `key` ([`word_key`]).
    pub fn idf_of(&self, key: u64) -> f64 {
        let (n, df) = (self.docs as f64, self.df_of(key) as f64);
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
