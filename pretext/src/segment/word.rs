//! UAX #29 words, with a tight loop for ASCII text.
//!
//! unicode-segmentation's own ASCII path yields every segment (each space
//! run, each punctuation byte) through an iterator and then filters out the
//! ones without a letter or digit; on English text that was a fifth of the
//! `ict` task's time. [`ascii_words`] finds the word runs from bit masks of
//! 64 bytes at a time, with the crate's joining rules (property tests hold
//! its output equal to the crate's on any text, and on ASCII text long
//! enough to cross the blocks). Words never span a
//! line end or most spaces ([`super::lines::word_pieces`]), so in text with
//! other characters only the few words around them take the table-driven
//! path.

use unicode_segmentation::UnicodeSegmentation;

use super::lines::word_pieces;
use super::Span;
use crate::swar::{at_least, equal, gather, splat};

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
///
/// Sixty-four bytes at a time: which bytes are letters, digits or `_`,
/// and which may join two of them (`infix`), are found eight bytes to a
/// word (SWAR) and gathered into bit masks; the words are then the runs of
/// set bits, found with a count of trailing zeros per start and end. A
/// byte at a time, every word start and end was a mispredicted branch.
fn ascii_words(s: &[u8], base: usize, f: &mut impl FnMut(Span)) {
    let n = s.len();
    let block = |k: usize| Classes::of(&s[(k * 64).min(n)..((k + 1) * 64).min(n)]);
    let blocks = n.div_ceil(64);
    let mut cur = block(0);
    // The previous block's last byte: in a word, a letter or digit.
    let (mut prev_word, mut prev_alnum) = (0u64, 0u64);
    let mut open = 0;
    for k in 0..blocks {
        let next = block(k + 1);
        let alnum = cur.core & !cur.under;
        // Candidates between two letters or digits are checked one by one
        // (rare: `3.14`, `can't`, `x.y`, and the `-` the range test lets in).
        let mut word = cur.core;
        let mut joins =
            cur.joins & (alnum << 1 | prev_alnum) & (alnum >> 1 | next.alnum_first() << 63);
        while joins != 0 {
            let i = k * 64 + joins.trailing_zeros() as usize;
            if infix(s[i], s[i - 1], s[i + 1]) {
                word |= joins & joins.wrapping_neg();
            }
            joins &= joins - 1;
        }
        let before = word << 1 | prev_word;
        let (starts, ends) = (word & !before, !word & before);
        let mut events = starts | ends;
        while events != 0 {
            let bit = events & events.wrapping_neg();
            let at = k * 64 + bit.trailing_zeros() as usize;
            if ends & bit != 0 {
                emit(s, base, open, at, f);
            } else {
                open = at;
            }
            events &= events - 1;
        }
        prev_word = word >> 63;
        prev_alnum = alnum >> 63;
        cur = next;
    }
    // A word running to the end of a whole last block has not ended yet.
    if prev_word != 0 {
        emit(s, base, open, n, f);
    }
}

/// Hands on the run `s[start..end]`, unless it is underscores alone (a
/// word needs a letter or digit).
#[inline]
fn emit(s: &[u8], base: usize, start: usize, end: usize, f: &mut impl FnMut(Span)) {
    if s[start..end].iter().any(|&b| b != b'_') {
        f(Span::new(base + start, base + end));
    }
}

/// Bit masks of up to 64 ASCII bytes (bit i: byte i).
#[derive(Default)]
struct Classes {
    /// Letters, digits and `_`: the bytes a word run is made of (WB5-WB13b).
    core: u64,
    /// `_`.
    under: u64,
    /// Bytes that may join a run between letters or digits ([`infix`]):
    /// `,` `-` `.` `:` `;` `'`.
    joins: u64,
}

impl Classes {
    fn of(block: &[u8]) -> Classes {
        let mut c = Classes::default();
        for (j, chunk) in block.chunks(8).enumerate() {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            let x = u64::from_le_bytes(bytes);
            let lower = x | splat(0x20);
            let digit = at_least(x, b'0') & !at_least(x, b'9' + 1);
            let alpha = at_least(lower, b'a') & !at_least(lower, b'z' + 1);
            let under = equal(x, b'_');
            let joins = (at_least(x, b',') & !at_least(x, b'.' + 1))
                | (at_least(x, b':') & !at_least(x, b';' + 1))
                | equal(x, b'\'');
            c.core |= gather(digit | alpha | under) << (8 * j);
            c.under |= gather(under) << (8 * j);
            c.joins |= gather(joins) << (8 * j);
        }
        c
    }

    /// Whether the first byte is a letter or digit, as bit 0.
    fn alnum_first(&self) -> u64 {
        self.core & !self.under & 1
    }
}

/// Calls `f` on each UAX #29 word of `text` (what `unicode_word_indices`
/// yields), in order.
pub(crate) fn unicode_words(text: &str, mut f: impl FnMut(Span)) {
    // ASCII text is one piece.
    for (offset, piece, ascii) in word_pieces(text) {
        if ascii {
            ascii_words(piece.as_bytes(), offset, &mut f);
        } else {
            for (i, w) in piece.unicode_word_indices() {
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
            'a',
            'b',
            'Z',
            '1',
            '9',
            '_',
            '_',
            '.',
            ',',
            ';',
            ':',
            '\'',
            ' ',
            ' ',
            '\n',
            '\r',
            '-',
            '"',
            '#',
            'é',
            '\u{301}',
            '日',
            '—',
            '\t',
            '\u{3000}',
            '\u{a0}',
            '\u{200d}',
            '\u{b3f}',
            'ア',
            '\u{1f1eb}',
            '\u{2028}',
            '\u{e33}',
        ]);
        prop::collection::vec(pick, 0..60).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn tricky_text_equals_the_crate(t in tricky()) {
            prop_assert_eq!(ours(&t), theirs(&t));
        }

        /// Long enough to cross 64-byte blocks, with words at every
        /// boundary.
        #[test]
        fn long_ascii_equals_the_crate(t in "[a-c1_.,;:' \\n-]{0,300}") {
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
