//! Text cut where UAX #29 always breaks, so each piece can be segmented on
//! its own: the pure-ASCII pieces (nearly all of an English corpus) through
//! a table-free path, the rest through unicode-segmentation. Sentences are
//! cut at line ends (SB4), so a document with one character of no class
//! known to the sentence path (a CJK full stop, a combining mark) costs
//! the sentence tables one line; words are cut at spaces too
//! ([`word_pieces`]), so an accented word costs the word tables a word or
//! two.

/// The lines of `text`, each with its terminator (`\n`, `\r\n` or a lone
/// `\r`), as `(offset, line)`. Their concatenation is `text`.
pub(crate) fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> + '_ {
    let bytes = text.as_bytes();
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= bytes.len() {
            return None;
        }
        let mut end = match memchr::memchr2(b'\n', b'\r', &bytes[start..]) {
            Some(i) => start + i + 1,
            None => bytes.len(),
        };
        if bytes[end - 1] == b'\r' && bytes.get(end) == Some(&b'\n') {
            end += 1;
        }
        let line = (start, &text[start..end]);
        start = end;
        Some(line)
    })
}

/// `text` cut where UAX #29 always breaks words, as `(offset, piece,
/// ascii)`: wholly ASCII pieces, as long as they can be, between pieces
/// holding the rest. Their concatenation is `text`. A text with an
/// em-dash or an accented name in it then costs the slow path for a few
/// words around each, not for its whole line (five titles in six of the
/// shipped corpus join their parts with an em-dash, and each made the
/// whole `spar` query slow).
///
/// The cuts: after a line end (WB3a/WB3b; not between `\r` and `\n`,
/// WB3), and on either side of a space between an ASCII byte other than
/// a space or a line end and another: a space joins nothing but another
/// space (WB3d) and the marks that may follow it (WB4, never ASCII), and
/// the rules that look two characters back or ahead (WB6, WB7, WB11,
/// WB12) need a letter, a digit or punctuation where the space is; so
/// each piece segments on its own as it does in place.
pub(crate) fn word_pieces(text: &str) -> impl Iterator<Item = (usize, &str, bool)> + '_ {
    let bytes = text.as_bytes();
    let cut = move |c: usize| match bytes[c - 1] {
        b'\n' => true,
        b'\r' => bytes[c] != b'\n',
        b' ' => bytes[c].is_ascii() && bytes[c] != b' ',
        x => x.is_ascii() && bytes[c] == b' ',
    };
    let mut start = 0;
    // A non-ASCII piece found after the ASCII one just returned.
    let mut pending: Option<(usize, usize)> = None;
    std::iter::from_fn(move || {
        if let Some((s, e)) = pending.take() {
            start = e;
            return Some((s, &text[s..e], false));
        }
        let rest = bytes.get(start..).filter(|r| !r.is_empty())?;
        let Some(q) = rest.iter().position(|b| !b.is_ascii()) else {
            let s = std::mem::replace(&mut start, bytes.len());
            return Some((s, &text[s..], true));
        };
        let q = start + q;
        // The non-ASCII piece: from the last cut at or before `q` to the
        // first one after it.
        let s = (start + 1..=q).rev().find(|&c| cut(c)).unwrap_or(start);
        let e = (q + 1..bytes.len())
            .find(|&c| cut(c))
            .unwrap_or(bytes.len());
        if s > start {
            pending = Some((s, e));
            let a = std::mem::replace(&mut start, s);
            return Some((a, &text[a..s], true));
        }
        start = e;
        Some((s, &text[s..e], false))
    })
}

#[cfg(test)]
mod tests {
    use super::{lines, word_pieces};

    #[test]
    fn word_pieces_cut_at_spaces_and_line_ends_and_lose_nothing() {
        let t = "ab — cd ef\nn\u{e9}e x  \u{301}y\r\nz\u{65e5}";
        let got: Vec<(usize, &str, bool)> = word_pieces(t).collect();
        assert_eq!(
            got,
            [
                (0, "ab", true),
                (2, " — ", false),
                (7, "cd ef\n", true),
                (13, "n\u{e9}e", false),
                (17, " x", true),
                (19, "  \u{301}y\r\n", false),
                (26, "z\u{65e5}", false),
            ]
        );
        assert_eq!(got.iter().map(|p| p.1).collect::<String>(), t);
        assert_eq!(word_pieces("").count(), 0);
        assert_eq!(
            word_pieces("plain").collect::<Vec<_>>(),
            [(0, "plain", true)]
        );
    }

    #[test]
    fn every_terminator_ends_a_line_and_nothing_is_lost() {
        let t = "a\nb\r\nc\rd\r\r\ne";
        let got: Vec<(usize, &str)> = lines(t).collect();
        assert_eq!(
            got,
            [
                (0, "a\n"),
                (2, "b\r\n"),
                (5, "c\r"),
                (7, "d\r"),
                (9, "\r\n"),
                (11, "e")
            ]
        );
        assert_eq!(lines("").count(), 0);
    }
}
