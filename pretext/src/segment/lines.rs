//! Text cut at its line ends, where UAX #29 always breaks both words and
//! sentences (rules WB3a/WB3b and SB4), so each line can be segmented on its
//! own: the pure-ASCII lines (nearly all of an English corpus) through a
//! table-free path, the rest through unicode-segmentation. A document with
//! one accented word then costs the slow path for one line, not for the
//! whole document.

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

#[cfg(test)]
mod tests {
    use super::lines;

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
