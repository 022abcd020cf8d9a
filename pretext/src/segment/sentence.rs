//! UAX #29 sentence boundaries, with a fast path for ASCII lines.
//!
//! unicode-segmentation looks every character up in its property tables
//! and runs a general state machine; on English text that was most of the
//! `ict` task's time. In ASCII only eight sentence-break classes occur, and
//! a break can only follow a terminator (`.`, `!`, `?`) or a line end, so
//! [`ascii_breaks`] jumps from one terminator to the next and applies the
//! rules there. Its output equals the crate's on every ASCII string (a
//! property test holds it to that); lines with other characters still go
//! to the crate.

use unicode_segmentation::UnicodeSegmentation;

use super::lines::lines;

/// The sentence-break classes of UAX #29 that ASCII characters have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `\r`, `\n`: paragraph separators.
    ParaSep,
    /// Tab, vertical tab, form feed, space.
    Sp,
    Lower,
    Upper,
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

/// Pushes the sentence breaks strictly inside an ASCII line (at most one
/// line end, at its end) onto `out`, as offsets from `base`. The line's own
/// end is a break the caller adds.
fn ascii_breaks(line: &[u8], base: usize, out: &mut Vec<usize>) {
    let n = line.len();
    let terminator = |b: &u8| matches!(b, b'.' | b'!' | b'?');
    let mut i = match line.iter().position(terminator) {
        Some(i) => i,
        None => return,
    };
    // `i` is always a terminator here (SATerm).
    loop {
        let aterm = line[i] == b'.';
        let next = line.get(i + 1).map(|&b| class(b));
        // SB6: ATerm × Numeric. SB7: (Upper | Lower) ATerm × Upper.
        let before = i.checked_sub(1).map(|j| class(line[j]));
        let joined = aterm
            && (next == Some(Class::Numeric)
                || (next == Some(Class::Upper)
                    && matches!(before, Some(Class::Upper | Class::Lower))));
        let mut k = i + 1;
        if !joined {
            // SB9, SB10: no break inside SATerm Close* Sp*.
            while k < n && class(line[k]) == Class::Close {
                k += 1;
            }
            while k < n && class(line[k]) == Class::Sp {
                k += 1;
            }
            let at = line.get(k).map(|&b| class(b));
            // SB8a: SATerm Close* Sp* × (SContinue | SATerm).
            if matches!(at, Some(Class::ATerm | Class::STerm)) {
                i = k;
                continue;
            }
            // SB8: ATerm Close* Sp* × (¬(OLetter | Upper | Lower | ParaSep | SATerm))* Lower.
            let lower_follows = aterm && {
                let rest = line[k..].iter().map(|&b| class(b)).find(|c| {
                    matches!(
                        c,
                        Class::Upper | Class::Lower | Class::ParaSep | Class::ATerm | Class::STerm
                    )
                });
                rest == Some(Class::Lower)
            };
            // SB11: SATerm Close* Sp* ParaSep? ÷ (the line end is the caller's).
            if at != Some(Class::SContinue) && !lower_follows && at != Some(Class::ParaSep) && k < n
            {
                out.push(base + k);
            }
        }
        match line[k.min(n)..].iter().position(terminator) {
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
        if line.is_ascii() {
            ascii_breaks(line.as_bytes(), offset, &mut cuts);
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

    /// Characters the rules treat differently, weighted towards them.
    fn tricky() -> impl Strategy<Value = String> {
        let pick = prop::sample::select(vec![
            '.', '.', '!', '?', ' ', ' ', ' ', '\t', '\n', '\r', '"', '\'', '(', ')', '[', '}',
            ',', '-', ':', ';', 'a', 'b', 'x', 'A', 'B', 'Z', '1', '9', '#', '_', '\u{b}',
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
