//! Passages that recur in many lines, JSON-escaped once.
//!
//! Why: a `spar` line carries its query's whole top-k corpus passages, so
//! the same passages are written again and again (278 MiB of lines from
//! the shipped corpus's 5.6 MiB), and escaping them was a third of the
//! task's time: the corpus holds a quote, backslash or newline every 64
//! bytes or so, and each one breaks the copy. Escaped once, a passage is
//! copied whole every time it is written.

use super::json::push_escaped;
use crate::tasks::Text;

/// Texts whose JSON-escaped bytes are at hand ([`super::write_pair`]
/// copies them instead of escaping again).
pub trait KnownTexts: Sync {
    /// `t`'s title and text escaped (no quotes), when `t` is one of the
    /// known texts, unchanged; `None` for any other text, which is then
    /// escaped as usual. An answer for a text that differs from the known
    /// one by a byte would write wrong lines: implementations match by
    /// identity (the very same borrowed strings), never by guess.
    fn escaped(&self, t: &Text<'_>) -> Option<Escaped<'_>>;
}

/// One text's escaped bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escaped<'e> {
    /// The title (empty when the text has none).
    pub title: &'e [u8],
    /// The text.
    pub text: &'e [u8],
}

/// Titles and texts JSON-escaped, by number, in one buffer.
#[derive(Debug, Default)]
pub struct EscapedTexts {
    bytes: Vec<u8>,
    /// Per item: where its title ends (and its text starts), where its
    /// text ends; the title starts where the previous item's text ends.
    ends: Vec<(usize, usize)>,
}

impl EscapedTexts {
    /// Escapes each `(title, text)` in turn.
    pub fn new<'s>(items: impl IntoIterator<Item = (&'s str, &'s str)>) -> EscapedTexts {
        let mut out = EscapedTexts::default();
        for (title, text) in items {
            push_escaped(&mut out.bytes, title);
            let title_end = out.bytes.len();
            push_escaped(&mut out.bytes, text);
            out.ends.push((title_end, out.bytes.len()));
        }
        out
    }

    /// Item `i`'s escaped title and text.
    pub fn get(&self, i: usize) -> Escaped<'_> {
        let start = i.checked_sub(1).map_or(0, |p| self.ends[p].1);
        let (title_end, end) = self.ends[i];
        Escaped {
            title: &self.bytes[start..title_end],
            text: &self.bytes[title_end..end],
        }
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}
