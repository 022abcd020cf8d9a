//! The parts of Lucene that decide a BM25 ranking, as Anserini (and so
//! pyserini) runs them, reproduced operation for operation so that a run
//! ties where Lucene's ties and orders where it orders:
//!
//! - the analysis chain of Anserini's `DefaultEnglishAnalyzer`: UAX #29 word
//!   boundaries (`StandardTokenizer`, tokens cut at 255 characters),
//!   `EnglishPossessiveFilter`, `LowerCaseFilter` (one code point at a
//!   time, Java's simple case mapping), `StopFilter` with Lucene's 33-word
//!   English set, then Porter stemming (in the parent module);
//! - `BM25Similarity`: the idf and average length in double rounded to
//!   float, document lengths stored in one byte (`SmallFloat.intToByte4`)
//!   and decoded for scoring, the 256-entry cache of reciprocal norms, and
//!   the monotonic rewrite `w − w / (1 + tf · norm⁻¹)` in float;
//! - the query: each distinct term once, boosted by its count in the query
//!   (`BagOfWordsQueryGenerator`), term scores summed in double and the sum
//!   rounded to float (Lucene's disjunction scorers).
//!
//! Ties are then broken by the documents' ids, lexicographically, as
//! Anserini's searchers sort (`BREAK_SCORE_TIES_BY_DOCID`).

/// Lucene's `EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`, sorted.
pub const STOP_WORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// Whether `word` (lower-cased) is in Lucene's English stop set.
pub fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.binary_search(&word).is_ok()
}

/// `StandardTokenizer`'s default maximum token length, in characters:
/// longer words are cut into pieces of this length.
pub const MAX_TOKEN_LENGTH: usize = 255;

/// The characters that make a UAX #29 segment a token of
/// `StandardTokenizer`: letters (its ALPHANUM, IDEOGRAPHIC, HIRAGANA,
/// KATAKANA and HANGUL types), decimal digits (NUM; superscripts and
/// circled digits are not), and emoji (EMOJI: pictographs, flags, keycaps).
fn token_chars() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(
            r"[\p{Alphabetic}\p{Nd}\p{Extended_Pictographic}\p{Regional_Indicator}\x{20E3}]",
        )
        .expect("a valid class")
    })
}

/// Scripts written without spaces, whose letters UAX #29 leaves one per
/// segment and `StandardTokenizer` keeps together as one SOUTHEAST_ASIAN
/// token per run.
fn southeast_asian() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^[\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tai_Tham}\p{New_Tai_Lue}\p{Tai_Viet}\p{Mn}]+$")
            .expect("a valid class")
    })
}

/// `StandardTokenizer`'s tokens of `text`, in order: the UAX #29 word
/// segments that hold a letter, a decimal digit or an emoji, runs of
/// Southeast Asian script joined, and tokens longer than
/// [`MAX_TOKEN_LENGTH`] characters cut into pieces of that length.
pub fn tokens(text: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::with_capacity(text.len() / 5);
    // In ASCII, a segment is a token exactly when it holds a letter or
    // digit, which is what `unicode_word_indices` keeps (segmenting was
    // most of the indexing time): the same words, found from bit masks
    // (`segment::unicode_words`, held to the crate's by property tests).
    // Other text is cut where UAX #29 always breaks words (ASCII text is
    // one piece), and only the pieces with other characters are segmented
    // through the tables.
    for (_, piece, ascii) in crate::segment::word_pieces(text) {
        if ascii {
            crate::segment::unicode_words(piece, |w| out.push(w.of(piece)));
        } else {
            standard_tokens(piece, &mut out);
        }
    }
    cut_long(out)
}

/// The tokens of `text` by its UAX #29 segments, onto `out`.
fn standard_tokens<'t>(text: &'t str, out: &mut Vec<&'t str>) {
    use unicode_segmentation::UnicodeSegmentation;
    // The end of the last token when it was a Southeast Asian run.
    let mut sea_end = None;
    for (at, seg) in text.split_word_bound_indices() {
        let first = seg.as_bytes()[0];
        // Most segments are ASCII words, spaces or punctuation, decided by
        // their first byte; `_init_`, keycaps (`#️⃣`) and non-ASCII
        // segments go to the class.
        let token = match first {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => true,
            b'_' | b'#' | b'*' => seg.len() > 1 && token_chars().is_match(seg),
            _ if first.is_ascii() => false,
            _ => token_chars().is_match(seg),
        };
        if !token {
            sea_end = None;
            continue;
        }
        if !first.is_ascii() && southeast_asian().is_match(seg) {
            if sea_end == Some(at) {
                let last = out.pop().expect("a run was pushed");
                let start = last.as_ptr() as usize - text.as_ptr() as usize;
                out.push(&text[start..at + seg.len()]);
            } else {
                out.push(seg);
            }
            sea_end = Some(at + seg.len());
            continue;
        }
        sea_end = None;
        out.push(seg);
    }
}

/// Tokens longer than [`MAX_TOKEN_LENGTH`] characters cut into pieces.
fn cut_long(out: Vec<&str>) -> Vec<&str> {
    if out.iter().any(|t| t.len() > MAX_TOKEN_LENGTH) {
        out.into_iter()
            .flat_map(|mut w| {
                let mut pieces = Vec::new();
                while let Some((cut, _)) = w.char_indices().nth(MAX_TOKEN_LENGTH) {
                    pieces.push(&w[..cut]);
                    w = &w[cut..];
                }
                pieces.push(w);
                pieces
            })
            .collect()
    } else {
        out
    }
}

/// `EnglishPossessiveFilter`: a trailing `'s` (or `’s`, `＇s`, either
/// case of `s`) is dropped.
pub fn strip_possessive(word: &str) -> &str {
    let mut end = word.chars().rev();
    match (end.next(), end.next()) {
        (Some('s' | 'S'), Some(q @ ('\'' | '\u{2019}' | '\u{FF07}'))) => {
            &word[..word.len() - 1 - q.len_utf8()]
        }
        _ => word,
    }
}

/// `LowerCaseFilter`: `Character.toLowerCase` on each code point. Java's
/// simple case mapping differs from Rust's `str::to_lowercase` on two
/// points that matter here: no final-sigma rule (`Σ` is always `σ`), and
/// `İ` (U+0130) lower-cases to a plain `i`, where the full mapping adds a
/// combining dot.
pub fn lowercase(word: &str) -> String {
    word.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

/// The encoding of `SmallFloat.longToInt4`: 4 significant bits and an
/// exponent, for values past the exact range.
fn long_to_int4(i: u64) -> u32 {
    let bits = 64 - i.leading_zeros();
    if bits < 4 {
        i as u32
    } else {
        let shift = bits - 4;
        let encoded = ((i >> shift) as u32) & 0x07;
        encoded | ((shift + 1) << 3)
    }
}

fn int4_to_long(i: u32) -> u64 {
    let bits = u64::from(i & 0x07);
    match (i >> 3).checked_sub(1) {
        None => bits,
        Some(shift) => (bits | 0x08) << shift,
    }
}

/// Lengths below this are stored exactly (`255 − longToInt4(i32::MAX)`).
const NUM_FREE_VALUES: u32 = 24;

/// `SmallFloat.intToByte4`: a document length as Lucene stores it, one
/// byte, exact below 24 and with 4 significant bits above.
pub fn length_to_byte(len: u32) -> u8 {
    let len = len.min(i32::MAX as u32);
    if len < NUM_FREE_VALUES {
        len as u8
    } else {
        (NUM_FREE_VALUES + long_to_int4(u64::from(len - NUM_FREE_VALUES))) as u8
    }
}

/// `SmallFloat.byte4ToInt`: the length a stored byte stands for.
pub fn byte_to_length(b: u8) -> u32 {
    let i = u32::from(b);
    if i < NUM_FREE_VALUES {
        i
    } else {
        NUM_FREE_VALUES + int4_to_long(i - NUM_FREE_VALUES) as u32
    }
}

/// `BM25Similarity.idf`: `ln(1 + (N − df + 0.5) / (df + 0.5))` in double,
/// rounded to float, where `N` counts the documents with at least one term.
pub fn idf(df: u64, doc_count: u64) -> f32 {
    (1.0 + (doc_count as f64 - df as f64 + 0.5) / (df as f64 + 0.5)).ln() as f32
}

/// `BM25Similarity.avgFieldLength`: total terms over documents with a term,
/// in double, rounded to float.
pub fn avgdl(total_terms: u64, doc_count: u64) -> f32 {
    (total_terms as f64 / doc_count.max(1) as f64) as f32
}

/// The reciprocal length norm of each stored length byte:
/// `1 / (k1 · ((1 − b) + b · length / avgdl))`, in float, in Lucene's order
/// of operations.
pub fn norm_cache(k1: f32, b: f32, avgdl: f32) -> [f32; 256] {
    let mut cache = [0f32; 256];
    for (i, c) in cache.iter_mut().enumerate() {
        *c = 1.0 / (k1 * ((1.0 - b) + b * byte_to_length(i as u8) as f32 / avgdl));
    }
    cache
}

/// One term's score in one document: `weight − weight / (1 + tf · norm⁻¹)`,
/// with `weight = boost · idf`.
#[inline]
pub fn term_score(weight: f32, tf: f32, norm_inverse: f32) -> f32 {
    weight - weight / (1.0 + tf * norm_inverse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_set_is_lucenes_sorted_33() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_stop_word("the") && is_stop_word("into") && !is_stop_word("about"));
    }

    #[test]
    fn tokens_are_standard_tokenizers() {
        // Each line's tokens as pyserini 0.24's analyzer (no stemming, no
        // stopwords) gave them, before lower-casing.
        let cases: [(&str, &[&str]); 7] = [
            ("a © b", &["a", "©", "b"]),
            ("® ° ♞ ★ ✓ → ²", &["®", "♞", "★"]),
            ("½ ٣ x² 3²", &["٣", "x", "3"]),
            ("😀 👍🏽 🇫🇷 #️⃣ 1️⃣ # *", &["😀", "👍🏽", "🇫🇷", "#️⃣", "1️⃣"]),
            ("Ⅻ ① ⁵ 5 ₂", &["Ⅻ", "5"]),
            (
                "foo_bar __init__ _ x.y 3.14 1,000 U.S.A. can't",
                &[
                    "foo_bar", "__init__", "x.y", "3.14", "1,000", "U.S.A", "can't",
                ],
            ),
            (
                "日本語 ひらがな カタカナ 한국어 ไทย a™",
                &[
                    "日",
                    "本",
                    "語",
                    "ひ",
                    "ら",
                    "が",
                    "な",
                    "カタカナ",
                    "한국어",
                    "ไทย",
                    "a",
                    "™",
                ],
            ),
        ];
        for (text, want) in cases {
            assert_eq!(tokens(text), want, "{text}");
        }
        let long = "x".repeat(600);
        assert_eq!(
            tokens(&long).iter().map(|t| t.len()).collect::<Vec<_>>(),
            [255, 255, 90]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        /// Text cut into pieces gives the tokens of the whole: emoji,
        /// keycaps, Southeast Asian runs and joining marks around spaces.
        #[test]
        fn pieces_tokenize_as_the_whole(v in proptest::collection::vec(
            proptest::sample::select(vec![
                "a", "Z", "1", "_", "#", "*", ".", "'", " ", " ", "\n", "\r", "—", "é", "\u{301}",
                "\u{200d}", "\u{fe0f}", "\u{20e3}", "😀", "\u{1f3fd}", "\u{1f1eb}", "ไ", "\u{e33}",
                "日", "カ", "\u{3000}", "\u{b3f}", "™", "٣",
            ]),
            0..50,
        )) {
            let t: String = v.concat();
            let mut whole = Vec::new();
            standard_tokens(&t, &mut whole);
            proptest::prop_assert_eq!(tokens(&t), cut_long(whole));
        }
    }

    #[test]
    fn possessives_and_java_lowercasing() {
        assert_eq!(strip_possessive("Lucene's"), "Lucene");
        assert_eq!(strip_possessive("DOG'S"), "DOG");
        assert_eq!(strip_possessive("cat\u{2019}s"), "cat");
        assert_eq!(strip_possessive("cats"), "cats");
        assert_eq!(strip_possessive("s"), "s");
        assert_eq!(strip_possessive("'s"), "");
        assert_eq!(lowercase("ΣΟΦΟΣ"), "σοφοσ");
        assert_eq!(lowercase("İstanbul"), "istanbul");
        assert_eq!(lowercase("ÉTÉ"), "été");
    }

    #[test]
    fn lengths_round_trip_as_smallfloat_does() {
        // Exact below 24; then 4 significant bits, never above the length,
        // monotonic, and every byte decodes to a length that encodes back.
        for len in 0..24 {
            assert_eq!(byte_to_length(length_to_byte(len)), len);
        }
        // Values read off Lucene's SmallFloat (byte4ToInt of 24.., and the
        // lengths 100 and 1000 as BM25Similarity decodes them).
        assert_eq!(byte_to_length(24), 24);
        assert_eq!(byte_to_length(length_to_byte(100)), 96);
        assert_eq!(byte_to_length(length_to_byte(1000)), 984);
        assert_eq!(length_to_byte(i32::MAX as u32), 255);
        let mut last = 0;
        for b in 0..=255u8 {
            let len = byte_to_length(b);
            assert!(b == 0 || len > last, "byte {b}");
            assert_eq!(length_to_byte(len), b);
            last = len;
        }
        for len in [24u32, 25, 31, 40, 63, 64, 65, 127, 128, 129, 5000, 123_456] {
            let d = byte_to_length(length_to_byte(len));
            assert!(d <= len && d * 9 >= len * 8, "{len} -> {d}");
        }
    }

    #[test]
    fn scoring_is_lucenes_formula() {
        let idf = idf(3, 10);
        assert!((idf - (1.0f64 + 7.5 / 3.5).ln() as f32).abs() < 1e-7);
        let cache = norm_cache(0.9, 0.4, avgdl(50, 5));
        let norm = 0.9 * (0.6 + 0.4 * 10.0 / 10.0);
        let s = term_score(idf, 2.0, cache[10]);
        let direct = idf * 2.0 / (2.0 + norm);
        assert!((s - direct).abs() < 1e-6, "{s} vs {direct}");
    }
}
