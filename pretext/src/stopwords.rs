//! English stopwords (NLTK's list, which Spider's recurring-span filter and
//! Anserini's default analyzer both build on).

use std::sync::LazyLock;

use rustc_hash::FxHashSet;

/// Sorted, lower-case.
pub const ENGLISH: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "ain",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "aren",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "couldn",
    "d",
    "did",
    "didn",
    "do",
    "does",
    "doesn",
    "doing",
    "don",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "hadn",
    "has",
    "hasn",
    "have",
    "haven",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "isn",
    "it",
    "its",
    "itself",
    "just",
    "ll",
    "m",
    "ma",
    "me",
    "mightn",
    "more",
    "most",
    "mustn",
    "my",
    "myself",
    "needn",
    "no",
    "nor",
    "not",
    "now",
    "o",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "re",
    "s",
    "same",
    "shan",
    "she",
    "should",
    "shouldn",
    "so",
    "some",
    "such",
    "t",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "ve",
    "very",
    "was",
    "wasn",
    "we",
    "were",
    "weren",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "won",
    "wouldn",
    "y",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// Whether `word` (already lower-cased) is a stopword.
pub fn is_stopword(word: &str) -> bool {
    // Called on every word of every document by `spans` and
    // `pseudo-query`. Most words are rejected by their first letter and
    // length alone (a bit per length for each initial letter); the rest
    // cost one hash probe, a fraction of a binary search's eight string
    // comparisons.
    struct Lookup {
        lengths: [u32; 26],
        set: FxHashSet<&'static str>,
    }
    static LOOKUP: LazyLock<Lookup> = LazyLock::new(|| {
        let mut lengths = [0u32; 26];
        for w in ENGLISH {
            lengths[(w.as_bytes()[0] - b'a') as usize] |= 1 << w.len();
        }
        Lookup {
            lengths,
            set: ENGLISH.iter().copied().collect(),
        }
    });
    let lookup = &*LOOKUP;
    let possible = match word.as_bytes().first() {
        Some(&b @ b'a'..=b'z') if word.len() < 32 => {
            lookup.lengths[(b - b'a') as usize] & (1 << word.len()) != 0
        }
        _ => false,
    };
    possible && lookup.set.contains(word)
}

/// Whether the word of key `key` ([`crate::idf::word_key`] of the word
/// lower-cased) is a stopword: for a caller that has the key and not the
/// lower-cased word (`pseudo-query`'s salience). Another word is taken
/// for a stopword only when its key is one of theirs: odds near 10^-17 a
/// word.
pub fn is_stopword_key(key: u64) -> bool {
    static KEYS: LazyLock<FxHashSet<u64>> =
        LazyLock::new(|| ENGLISH.iter().map(|w| crate::idf::word_key(w)).collect());
    KEYS.contains(&key)
}

#[cfg(test)]
mod tests {
    #[test]
    fn list_is_sorted_and_lowercase() {
        assert!(super::ENGLISH.windows(2).all(|w| w[0] < w[1]));
        assert!(super::ENGLISH
            .iter()
            .all(|w| w.chars().all(|c| c.is_lowercase())));
        assert!(super::is_stopword("the") && !super::is_stopword("python"));
    }

    /// The keyed test agrees with the word test, on the listed words and
    /// others.
    #[test]
    fn stopword_keys_are_the_stopwords() {
        let others = ["", "théir", "q", "thes", "ourselvesx", "yourselve", "THE"];
        for w in super::ENGLISH.iter().chain(&others) {
            let key = crate::idf::word_key(w);
            assert_eq!(super::is_stopword_key(key), super::is_stopword(w), "{w}");
        }
    }

    #[test]
    fn every_listed_word_and_nothing_else_is_found() {
        for w in super::ENGLISH {
            assert!(super::is_stopword(w), "{w}");
            assert!(!super::is_stopword(&w.to_uppercase()), "{w}");
            assert!(
                !super::is_stopword(&format!("{w}s"))
                    || super::ENGLISH.contains(&&*format!("{w}s"))
            );
        }
        for w in [
            "",
            "théir",
            "q",
            "thes",
            "1",
            "_a",
            "ourselvesx",
            "x".repeat(40).as_str(),
        ] {
            assert!(!super::is_stopword(w), "{w}");
        }
    }
}
