//! Document frequencies of lower-cased words over a corpus: what makes a word
//! salient (AugTriever's salient spans) rather than merely frequent.

use std::sync::OnceLock;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::segment::{words, Span, WordUnit};
use crate::swar::{at_least, splat};

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

/// A lower-cased word's key in [`DocFreq`]: a 64-bit hash of its bytes.
/// Counting and looking words up by hash rather than by string spares the
/// per-word string comparisons and copies that dominated the corpus
/// statistics pass and `pseudo-query`'s salience scores; two distinct
/// words sharing a key (odds near 10^-8 for a million-word vocabulary;
/// none at all between words of the same length up to eight bytes, which
/// one multiply by an odd number keeps apart) would only share a document
/// frequency.
pub fn word_key(lowered: &str) -> u64 {
    let bytes = lowered.as_bytes();
    let mut h = seed(bytes.len());
    let mut chunks = bytes.chunks_exact(8);
    for c in chunks.by_ref() {
        h = mix(h, u64::from_le_bytes(c.try_into().expect("eight bytes")));
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        h = mix(h, u64::from_le_bytes(last));
    }
    h
}

/// [`word_key`] of word `w` of `text` lower-cased, without writing the
/// lower-cased word out: an ASCII word is read eight bytes at a time from
/// the text and lower-cased in a register as it is hashed (lower-casing
/// into a buffer, then hashing, was a seventh of `pseudo-query`'s time).
/// A word with a byte out of ASCII is lower-cased into `buf` by
/// [`lower`] and hashed there.
pub fn span_key(text: &str, w: Span, buf: &mut String) -> u64 {
    let bytes = text.as_bytes();
    let (start, end) = (w.start, w.end);
    let load = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
    let mut h = seed(end - start);
    // Every byte read, OR-ed: its high bits say whether one was not ASCII.
    let mut read = 0u64;
    let mut at = start;
    while at + 8 <= end {
        let c = load(at);
        read |= c;
        h = mix(h, lower_ascii(c));
        at += 8;
    }
    let left = end - at;
    if left > 0 {
        // The last bytes in the low places, zeros above, as `word_key`
        // pads them: read from the text on past the word where it goes
        // on, else ending at the word's end.
        let c = if at + 8 <= bytes.len() {
            load(at) & (u64::MAX >> (8 * (8 - left)))
        } else if end >= 8 {
            load(end - 8) >> (8 * (8 - left))
        } else {
            let mut last = [0u8; 8];
            last[..left].copy_from_slice(&bytes[at..end]);
            u64::from_le_bytes(last)
        };
        read |= c;
        h = mix(h, lower_ascii(c));
    }
    if read & splat(0x80) != 0 {
        return word_key(lower(&text[start..end], buf));
    }
    h
}

/// The hash of a word of `len` bytes before its first eight.
fn seed(len: usize) -> u64 {
    (len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The hash after eight more bytes `chunk` (little-endian): Fx's step, a
/// multiply by an odd number, which keeps distinct chunks apart.
#[inline]
fn mix(h: u64, chunk: u64) -> u64 {
    (h.rotate_left(5) ^ chunk).wrapping_mul(0xf135_7aea_2e62_a9c5)
}

/// Eight ASCII bytes with `A`–`Z` lower-cased: bit 5 set where a byte is
/// at least `A` and not past `Z`.
#[inline]
fn lower_ascii(c: u64) -> u64 {
    let upper = at_least(c, b'A') & !at_least(c, b'Z' + 1);
    c | (upper >> 2)
}

/// How many documents hold each lower-cased word.
#[derive(Debug, Clone, Default)]
pub struct DocFreq {
    docs: u64,
    df: FxHashMap<u64, u64>,
    /// The idf of each small document frequency, made on first use:
    /// nearly every word's df is small, and the logarithm was a fifth of
    /// looking a word's idf up. Emptied when counts are merged.
    idf_by_df: OnceLock<Vec<f64>>,
}

/// Document frequencies whose idf [`DocFreq::idf_of`] keeps in a table.
const IDF_TABLE: u64 = 4096;

impl DocFreq {
    /// Counts the words of one document.
    pub fn from_text(text: &str) -> DocFreq {
        let mut buf = String::new();
        let unique: FxHashSet<u64> = words(text, WordUnit::Unicode)
            .iter()
            .map(|&w| span_key(text, w, &mut buf))
            .collect();
        let df = unique.into_iter().map(|w| (w, 1)).collect();
        DocFreq {
            docs: 1,
            df,
            idf_by_df: OnceLock::new(),
        }
    }

    /// Adds another set of counts (to fold per-thread counts together).
    pub fn merge(mut self, other: DocFreq) -> DocFreq {
        let (mut big, small) = if self.df.len() >= other.df.len() {
            (std::mem::take(&mut self), other)
        } else {
            (other, self)
        };
        big.docs += small.docs;
        big.idf_by_df = OnceLock::new();
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
        let df = self.df_of(key);
        let table = self.idf_by_df.get_or_init(|| {
            (0..=self.docs.min(IDF_TABLE))
                .map(|df| self.idf_at(df))
                .collect()
        });
        match table.get(df as usize) {
            Some(&idf) => idf,
            None => self.idf_at(df),
        }
    }

    /// The idf of a word in `df` documents.
    fn idf_at(&self, df: u64) -> f64 {
        let (n, df) = (self.docs as f64, df as f64);
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word's key read from its text is the key of the word
    /// lower-cased: at every length about a chunk of eight bytes, at the
    /// text's end and start, next to bytes out of ASCII or upper case
    /// (read past the word and masked), with the bytes just around `A`–`Z`
    /// (`@`, `[`, `` ` ``, `{`), and for words out of ASCII.
    #[test]
    fn span_keys_are_the_keys_of_the_words_lowered() {
        let words = [
            "",
            "a",
            "Z",
            "@[`{",
            "AbC",
            "ABCDEFG",
            "ABCDEFGH",
            "AbCdEfGhI",
            "ZYXWVUTSRQPONMLKJ",
            "mixed_Case_99",
            "Élan",
            "ÀÉÎ",
            "straße",
            "İstanbul",
            "naïVE",
            "日本",
            "x\u{301}Y",
        ];
        let around = [
            ("", ""),
            ("", " é"),
            ("Q ", ""),
            ("é ", "ÉÉÉÉÉÉÉÉ"),
            ("", "ABCDEFGHIJ"),
        ];
        let mut buf = String::new();
        for w in words {
            let lowered = w.to_lowercase();
            for (before, after) in around {
                let text = format!("{before}{w}{after}");
                let span = Span::new(before.len(), before.len() + w.len());
                assert_eq!(
                    span_key(&text, span, &mut buf),
                    word_key(&lowered),
                    "{w:?} in {text:?}"
                );
            }
        }
        // Words of eight bytes or fewer that differ have different keys,
        // a word and the word padded with NULs too (the length counts).
        let short = ["a", "a\0", "ab", "ba", "abcdefgh", "abcdefgi", "abcdefg\0"];
        let keys: FxHashSet<u64> = short.iter().map(|w| word_key(w)).collect();
        assert_eq!(keys.len(), short.len());
    }

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

    /// The idf of the formula, from the table and past it, and anew after
    /// a merge (a table made before it would be stale).
    #[test]
    fn idf_is_the_formula_table_or_not() {
        let formula = |n: f64, df: f64| (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        let df = DocFreq::from_text("a b");
        assert_eq!(df.idf("a"), formula(1.0, 1.0));
        let df = df.merge(DocFreq::from_text("a c"));
        assert_eq!(df.idf("a"), formula(2.0, 2.0));
        assert_eq!(df.idf("zzz"), formula(2.0, 0.0));
        let n = 3 * IDF_TABLE;
        let many = DocFreq {
            docs: n,
            df: [(word_key("x"), 5), (word_key("y"), 2 * IDF_TABLE)]
                .into_iter()
                .collect(),
            idf_by_df: OnceLock::new(),
        };
        for (w, d) in [("x", 5), ("y", 2 * IDF_TABLE), ("z", 0)] {
            assert_eq!(
                many.idf(w).to_bits(),
                formula(n as f64, d as f64).to_bits(),
                "{w}"
            );
        }
        assert_eq!(
            many.idf_by_df.get().map(Vec::len),
            Some(IDF_TABLE as usize + 1)
        );
    }
}
