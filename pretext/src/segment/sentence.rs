//! UAX #29 sentence boundaries, with a fast path for lines of known
//! characters.
//!
//! unicode-segmentation looks every character up in its property tables
//! and runs a general state machine; on English text that was most of the
//! `ict` task's time. In ASCII only eight sentence-break classes occur, and
//! a break can only follow a terminator (`.`, `!`, `?`) or a line end, so
//! [`known_breaks`] jumps from one terminator to the next and applies the
//! rules there. The same holds for lines whose other characters are the
//! ones European text mostly adds ([`wide_class`]: Latin letters, curly
//! quotes, guillemets, dashes, the no-break space), none of them a
//! terminator or a mark the rules skip. Its output equals the crate's on
//! every such string (tests hold it to that, every one of those
//! characters in every context that tells the classes apart); lines with
//! other characters still go to the crate.

use unicode_segmentation::UnicodeSegmentation;

use super::lines::lines;

/// The sentence-break classes of UAX #29 that ASCII characters and those
/// of [`wide_class`] have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `\r`, `\n`: paragraph separators.
    ParaSep,
    /// Tab, vertical tab, form feed, space.
    Sp,
    Lower,
    Upper,
    /// Letters neither upper nor lower case (`ƻ`, `ǀ`).
    OLetter,
    Numeric,
    /// `.`
    ATerm,
    /// `!`, `?`
    STerm,
    /// Quotes and brackets.
    Close,
    /// `,`, `-`, `:`, `;`
    SContinue,
    /// Everything else.
    Other,
}

fn class(b: u8) -> Class {
    match b {
        b'\r' | b'\n' => Class::ParaSep,
        b'\t' | 0x0B | 0x0C | b' ' => Class::Sp,
        b'a'..=b'z' => Class::Lower,
        b'A'..=b'Z' => Class::Upper,
        b'0'..=b'9' => Class::Numeric,
        b'.' => Class::ATerm,
        b'!' | b'?' => Class::STerm,
        b'"' | b'\'' | b'(' | b')' | b'[' | b']' | b'{' | b'}' => Class::Close,
        b',' | b'-' | b':' | b';' => Class::SContinue,
        _ => Class::Other,
    }
}

/// The class of a character out of ASCII, for the characters whose class
/// is known here; `None` for the rest (their lines go to the crate). None
/// of them is a terminator, a line end, or an `Extend` or `Format` mark
/// (which the rules skip, SB5), so the rules need no more than their
/// classes.
fn wide_class(c: char) -> Option<Class> {
    Some(match c {
        '\u{a0}' => Class::Sp,
        // Guillemets and the curly quotes (Initial and Final punctuation,
        // and the low-9 quotes, Open punctuation).
        '«' | '»' | '\u{2018}'..='\u{201f}' => Class::Close,
        // En and em dash.
        '\u{2013}' | '\u{2014}' => Class::SContinue,
        '×' | '÷' => Class::Other,
        'ª' | 'µ' | 'º' => Class::Lower,
        // The title-case digraphs (ǅ, ǈ, ǋ, ǲ) count as upper case.
        '\u{1c5}' | '\u{1c8}' | '\u{1cb}' | '\u{1f2}' => Class::Upper,
        // Latin-1's letters and Latin Extended-A and -B: all letters.
        '\u{c0}'..='\u{24f}' if c.is_lowercase() => Class::Lower,
        '\u{c0}'..='\u{24f}' if c.is_uppercase() => Class::Upper,
        '\u{c0}'..='\u{24f}' => Class::OLetter,
        _ => return None,
    })
}

/// Whether every character of `line` has a class here.
fn known_line(line: &str) -> bool {
    line.is_ascii()
        || line
            .chars()
            .all(|c| c.is_ascii() || wide_class(c).is_some())
}

/// The class of a character of a [`known_line`].
fn char_class(c: char) -> Class {
    if c.is_ascii() {
        return class(c as u8);
    }
    let class = wide_class(c);
    debug_assert!(class.is_some(), "{c:?} in a known line");
    class.unwrap_or(Class::Other)
}

/// The class of the character at byte `k` of `line` (a [`known_line`])
/// and its length; `None` at the end.
fn class_at(line: &str, k: usize) -> Option<(Class, usize)> {
    let b = *line.as_bytes().get(k)?;
    if b.is_ascii() {
        return Some((class(b), 1));
    }
    let c = line[k..].chars().next()?;
    Some((char_class(c), c.len_utf8()))
}

/// The class of the character ending at byte `i` of `line`.
fn class_before(line: &str, i: usize) -> Option<Class> {
    line[..i].chars().next_back().map(char_class)
}

/// Pushes the sentence breaks strictly inside a [`known_line`] (at most
/// one line end, at its end) onto `out`, as offsets from `base`. The
/// line's own end is a break the caller adds.
fn known_breaks(line: &str, base: usize, out: &mut Vec<usize>) {
    let bytes = line.as_bytes();
    let n = bytes.len();
    let terminator = |b: &u8| matches!(b, b'.' | b'!' | b'?');
    let mut i = match bytes.iter().position(terminator) {
        Some(i) => i,
        None => return,
    };
    let class_of = |k: usize| class_at(line, k).map(|(c, _)| c);
    // `i` is always a terminator here (SATerm).
    loop {
        let aterm = bytes[i] == b'.';
        let next = class_of(i + 1);
        // SB6: ATerm × Numeric. SB7: (Upper | Lower) ATerm × Upper.
        let before = class_before(line, i);
        let joined = aterm
            && (next == Some(Class::Numeric)
                || (next == Some(Class::Upper)
                    && matches!(before, Some(Class::Upper | Class::Lower))));
        let mut k = i + 1;
        if !joined {
            // SB9, SB10: no break inside SATerm Close* Sp*.
            while let Some((Class::Close, len)) = class_at(line, k) {
                k += len;
            }
            while let Some((Class::Sp, len)) = class_at(line, k) {
                k += len;
            }
            let at = class_of(k);
            // SB8a: SATerm Close* Sp* × (SContinue | SATerm).
            if matches!(at, Some(Class::ATerm | Class::STerm)) {
                i = k;
                continue;
            }
            // SB8: ATerm Close* Sp* × (¬(OLetter | Upper | Lower | ParaSep | SATerm))* Lower.
            let lower_follows = aterm && {
                let mut j = k;
                let rest = loop {
                    match class_at(line, j) {
                        Some((
                            c @ (Class::Upper
                            | Class::Lower
                            | Class::OLetter
                            | Class::ParaSep
                            | Class::ATerm
                            | Class::STerm),
                            _,
                        )) => break Some(c),
                        Some((_, len)) => j += len,
                        None => break None,
                    }
                };
                rest == Some(Class::Lower)
            };
            // SB11: SATerm Close* Sp* ParaSep? ÷ (the line end is the caller's).
            if at != Some(Class::SContinue) && !lower_follows && at != Some(Class::ParaSep) && k < n
            {
                out.push(base + k);
            }
        }
        match bytes[k.min(n)..].iter().position(terminator) {
            Some(j) => i = k + j,
            None => return,
        }
    }
}

/// The sentence segments of `text`, untrimmed, as `(offset, segment)`:
/// what `split_sentence_bound_indices` gives, a line at a time.
pub(crate) fn sentence_bounds(text: &str) -> impl Iterator<Item = (usize, &str)> + '_ {
    let mut cuts = Vec::new();
    lines(text).flat_map(move |(offset, line)| {
        cuts.clear();
        if known_line(line) {
            known_breaks(line, offset, &mut cuts);
        } else {
            cuts.extend(
                line.split_sentence_bound_indices()
                    .skip(1)
                    .map(|(i, _)| offset + i),
            );
        }
        cuts.push(offset + line.len());
        let mut start = offset;
        let segments: Vec<(usize, &str)> = cuts
            .iter()
            .map(|&end| {
                let s = (start, &text[start..end]);
                start = end;
                s
            })
            .collect();
        segments
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn crate_bounds(t: &str) -> Vec<(usize, &str)> {
        t.split_sentence_bound_indices().collect()
    }

    #[test]
    fn rules_on_hand_made_text() {
        let cases = [
            "Mr. Smith went. He left!  Then? \"Yes.\" (ok.) no",
            "3.14 is pi. U.S. Army. e.g. this. etc.) And",
            "Wait... what?! Go.\r\nNext.\rLast. - dash. , comma.",
            "a.b. A.B. end.\n\nnew para.\t\tTab. x",
            ".leading. ?! ).  ",
        ];
        for t in cases {
            let ours: Vec<(usize, &str)> = sentence_bounds(t).collect();
            assert_eq!(ours, crate_bounds(t), "{t:?}");
        }
    }

    #[test]
    fn mixed_lines_agree_with_the_crate() {
        let t = "Café au lait. It is hot.\nPlain line. Two.\r\nNaïve? Yes… ok.\u{2029}Next.";
        let ours: Vec<(usize, &str)> = sentence_bounds(t).collect();
        assert_eq!(ours, crate_bounds(t));
    }

    /// Every character of [`wide_class`] in contexts that tell its class
    /// from every other's (after a terminator and before a lower-case
    /// letter, between two, as the letter before a full stop and after
    /// one, between spaces and quotes), agrees with the crate.
    #[test]
    fn every_known_character_agrees_with_the_crate() {
        let templates = [
            "Go. {c}b",
            "Go.{c}B",
            "Go.{c}b",
            "Go.{c}5",
            "Go. {c} b",
            "Go. {c}. b",
            "x{c}. B",
            "x{c}. b",
            "x{c}.B",
            "{c}.B c",
            "A.{c}. x",
            "Go? {c}b",
            "Go! {c} B",
            "Go.{c}{c} b",
            "Go. {c}, b",
            "Go. ({c}) b",
            "\"Go.{c}\" b",
            "Go.) {c}\n",
            "{c}",
            "{c}{c}. {c}",
        ];
        let mut checked = 0;
        for c in ('\u{80}'..='\u{2100}').filter(|&c| wide_class(c).is_some()) {
            for t in templates {
                let t = t.replace("{c}", c.encode_utf8(&mut [0; 4]));
                assert!(known_line(&t), "{t:?}");
                let ours: Vec<(usize, &str)> = sentence_bounds(&t).collect();
                assert_eq!(ours, crate_bounds(&t), "{c:?} in {t:?}");
            }
            checked += 1;
        }
        assert!(checked > 400, "{checked} characters");
    }

    /// Characters the rules treat differently, weighted towards them.
    fn tricky() -> impl Strategy<Value = String> {
        let pick = prop::sample::select(vec![
            '.', '.', '!', '?', ' ', ' ', ' ', '\t', '\n', '\r', '"', '\'', '(', ')', '[', '}',
            ',', '-', ':', ';', 'a', 'b', 'x', 'A', 'B', 'Z', '1', '9', '#', '_', '\u{b}',
            // Known out of ASCII, then not known (their lines go to the
            // crate): an ellipsis, a combining mark, a CJK full stop.
            'é', 'É', 'ß', 'ƻ', 'ǅ', '\u{a0}', '’', '“', '«', '—', '–', '×', 'ª', '…', '\u{301}',
            '。', '\u{2029}',
        ]);
        prop::collection::vec(pick, 0..60).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn ascii_path_equals_the_crate(t in tricky()) {
            let ours: Vec<(usize, &str)> = sentence_bounds(&t).collect();
            prop_assert_eq!(ours, crate_bounds(&t));
        }

        #[test]
        fn any_ascii_equals_the_crate(t in "[\\x00-\\x7f]{0,80}") {
            let ours: Vec<(usize, &str)> = sentence_bounds(&t).collect();
            prop_assert_eq!(ours, crate_bounds(&t));
        }

        #[test]
        fn any_text_equals_the_crate(t in "\\PC{0,80}") {
            let ours: Vec<(usize, &str)> = sentence_bounds(&t).collect();
            prop_assert_eq!(ours, crate_bounds(&t));
        }
    }
}
