//! UAX #29 words, with a tight loop for ASCII text.
//!
//! unicode-segmentation's own ASCII path yields every segment (each space
//! run, each punctuation byte) through an iterator and then filters out the
//! ones without a letter or digit; on English text that was a fifth of the
//! `ict` task's time. [`ascii_words`] skips what cannot start a word and
//! scans each word run once, with the crate's joining rules (a property test
//! holds its output equal to the crate's on any text). Words never span a
//! line end (WB3a/WB3b), so non-ASCII text goes a line at a time and only the
//! lines with other characters take the table-driven path.

use unicode_segmentation::UnicodeSegmentation;

use super::lines::lines;
use super::Span;

/// Letters, digits and `_`: the bytes a word run is made of (WB5-WB13b).
const CORE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    t
};

/// A `.`, `,`, `;` or `'` between digits (WB11/WB12), or a `'`, `.` or `:`
/// between letters (WB6/WB7), keeps the run going.
fn infix(b: u8, prev: u8, next: u8) -> bool {
    match b {
        b'.' | b',' | b';' | b'\'' if prev.is_ascii_digit() && next.is_ascii_digit() => true,
        b'\'' | b'.' | b':' if prev.is_ascii_alphabetic() && next.is_ascii_alphabetic() => true,
        _ => false,
    }
}

/// Calls `f` on each word of the ASCII bytes `s`, offset by `base`.
fn ascii_words(s: &[u8], base: usize, f: &mut impl FnMut(Span)) {
    let n = s.len();
    let mut i = 0;
    while i < n {
        if !CORE[s[i] as usize] {
            i += 1;
            continue;
        }
        let start = i;
        let mut alnum = s[i] != b'_';
        i += 1;
        while i < n {
            let b = s[i];
            if CORE[b as usize] {
                alnum |= b != b'_';
            } else if !(i + 1 < n && infix(b, s[i - 1], s[i + 1])) {
                break;
            }
            i += 1;
        }
        // A run of underscores alone is not a word (it has no alphanumeric).
        if alnum {
            f(Span::new(base + start, base + i));
        }
    }
}

/// Calls `f` on each UAX #29 word of `text` (what `unicode_word_indices`
/// yields), in order.
pub(crate) fn unicode_words(text: &str, mut f: impl FnMut(Span)) {
    if text.is_ascii() {
        return ascii_words(text.as_bytes(), 0, &mut f);
    }
    for (offset, line) in lines(text) {
        if line.is_ascii() {
            ascii_words(line.as_bytes(), offset, &mut f);
        } else {
            for (i, w) in line.unicode_word_indices() {
                f(Span::new(offset + i, offset + i + w.len()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ours(t: &str) -> Vec<(usize, &str)> {
        let mut out = Vec::new();
        unicode_words(t, |s| out.push((s.start, s.of(t))));
        out
    }

    fn theirs(t: &str) -> Vec<(usize, &str)> {
        t.unicode_word_indices().collect()
    }

    #[test]
    fn hand_made_text() {
        for t in [
            "e.g. 3.14, 1,000; it's http://x.org __init__ _ __ a_b 7'5 a:b a.:b",
            "Café's naïve\r\nline two\rthree\u{2028}four... 1.2.3 x'y'",
            "",
        ] {
            assert_eq!(ours(t), theirs(t), "{t:?}");
        }
    }

    fn tricky() -> impl Strategy<Value = String> {
        let pick = prop::sample::select(vec![
            'a', 'b', 'Z', '1', '9', '_', '_', '.', ',', ';', ':', '\'', ' ', ' ', '\n', '\r', '-',
            '"', '#', 'é', '\u{301}', '日',
        ]);
        prop::collection::vec(pick, 0..60).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn tricky_text_equals_the_crate(t in tricky()) {
            prop_assert_eq!(ours(&t), theirs(&t));
        }

        #[test]
        fn any_ascii_equals_the_crate(t in "[\\x00-\\x7f]{0,80}") {
            prop_assert_eq!(ours(&t), theirs(&t));
        }

        #[test]
        fn any_text_equals_the_crate(t in "\\PC{0,80}") {
            prop_assert_eq!(ours(&t), theirs(&t));
        }
    }
}
