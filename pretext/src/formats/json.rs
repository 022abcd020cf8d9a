//! JSON strings written as `serde_json` writes them, byte for byte, but
//! eight bytes at a time.
//!
//! Why not `serde_json` itself: it looks every byte up in an escape table
//! and copies the clean runs between escapes, which made escaping the
//! largest cost of writing pairs (a `spar` line carries nine whole
//! passages: it was a fifth of that task's time). Text almost never holds
//! a byte to escape, so a word of eight bytes is tested at once and copied
//! whole when clean. The test `escapes_as_serde_json_does` holds the two
//! to the same bytes.

use crate::swar::splat;

/// Lower-case hex digits, as `serde_json` writes `\u00XX`.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether any byte of `w` is below `0x20`, `"` or `\`: the bytes JSON
/// escapes. Exact as to *whether* (the classic SWAR tests have no false
/// positives for existence when the bound is at most 128), not as to
/// which byte, which the caller then finds one by one.
#[inline]
fn needs_escape(w: u64) -> bool {
    const HIGH: u64 = splat(0x80);
    let zero = |x: u64| x.wrapping_sub(splat(1)) & !x & HIGH;
    let control = w.wrapping_sub(splat(0x20)) & !w & HIGH;
    (control | zero(w ^ splat(b'"')) | zero(w ^ splat(b'\\'))) != 0
}

/// The escape of one byte, when it needs one: `serde_json`'s short forms
/// for the usual controls, `\u00XX` for the others.
#[inline]
fn escape(out: &mut Vec<u8>, b: u8) -> bool {
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        0x00..=0x1f => {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]);
            return true;
        }
        _ => return false,
    };
    out.extend_from_slice(&[b'\\', short]);
    true
}

/// Appends the contents of `s` as a JSON string would hold them (no
/// quotes).
pub(crate) fn push_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len());
    // Bytes before `clean` are written; `i` is the next to test.
    let (mut clean, mut i) = (0, 0);
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            if !needs_escape(w) {
                i += 8;
                continue;
            }
        }
        // A word with an escape, or the tail: byte by byte up to the next
        // word boundary.
        let end = (i + 8).min(bytes.len());
        while i < end {
            let b = bytes[i];
            if b < 0x20 || b == b'"' || b == b'\\' {
                out.extend_from_slice(&bytes[clean..i]);
                escape(out, b);
                clean = i + 1;
            }
            i += 1;
        }
    }
    out.extend_from_slice(&bytes[clean..]);
}

/// Appends `s` as a quoted JSON string.
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_escaped(out, s);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngExt, SeedableRng};

    fn ours(s: &str) -> String {
        let mut out = Vec::new();
        push_str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_as_serde_json_does() {
        // Every ASCII byte alone, at every offset of a word, and between
        // clean runs.
        for b in 0u8..0x80 {
            let c = b as char;
            for pad in 0..17 {
                let s = format!("{}{c}{}", "a".repeat(pad), "é".repeat(pad % 5));
                assert_eq!(
                    ours(&s),
                    serde_json::to_string(&s).unwrap(),
                    "{b:#x} at {pad}"
                );
            }
        }
        // Random strings mixing clean text, controls, quotes, backslashes
        // and multi-byte characters.
        let alphabet: Vec<char> = "ab \"\\\n\r\t\u{0}\u{1f}\u{7f}é€😀\u{8}\u{c}x"
            .chars()
            .collect();
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(7);
        for _ in 0..2000 {
            let len = rng.random_range(0..80);
            let s: String = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            assert_eq!(ours(&s), serde_json::to_string(&s).unwrap());
        }
    }

    #[test]
    fn the_word_test_flags_exactly_the_words_with_an_escape() {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(3);
        for _ in 0..100_000 {
            let bytes = rng.next_u64().to_le_bytes();
            let expected = bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
            assert_eq!(
                needs_escape(u64::from_le_bytes(bytes)),
                expected,
                "{bytes:?}"
            );
        }
    }
}
