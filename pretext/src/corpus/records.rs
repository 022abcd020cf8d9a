//! Cuts mapped files into records (a line, or a block of lines between blank
//! lines) with a memchr scan, counting lines and byte offsets as it goes.

use super::{DocSep, Source};
use crate::error::{Error, Result};

/// One raw record: bytes of a mapped file and where they start.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Index of the file in [`super::Corpus::sources`].
    pub source: u32,
    /// 1-based line of the first line.
    pub line: u64,
    /// Byte offset of the first byte in its file.
    pub offset: u64,
    /// The bytes, line terminators trimmed.
    pub bytes: &'a [u8],
    /// Position among all records of the corpus, from 0.
    pub ordinal: u64,
    /// The record is the file's last and has no final newline: if it does
    /// not parse, the file was probably cut short.
    pub is_last_unterminated: bool,
}

/// Iterator over the records of all sources, in order.
pub struct Records<'a> {
    sources: &'a [Source],
    sep: DocSep,
    file: usize,
    pos: usize,
    line: u64,
    in_file: u64,
    ordinal: u64,
}

impl<'a> Records<'a> {
    pub(super) fn new(sources: &'a [Source], sep: DocSep) -> Self {
        Records {
            sources,
            sep,
            file: 0,
            pos: 0,
            line: 1,
            in_file: 0,
            ordinal: 0,
        }
    }

    /// Next line of the current file as (start, end without terminator,
    /// terminated); advances past it.
    fn next_line(&mut self, bytes: &[u8]) -> Option<(usize, usize, bool)> {
        if self.pos >= bytes.len() {
            return None;
        }
        let start = self.pos;
        let (end, next, terminated) = match memchr::memchr(b'\n', &bytes[start..]) {
            Some(i) => (start + i, start + i + 1, true),
            None => (bytes.len(), bytes.len(), false),
        };
        self.pos = next;
        let end = if end > start && bytes[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        Some((start, end, terminated))
    }
}

/// The UTF-8 byte-order mark.
const BOM: &[u8] = b"\xef\xbb\xbf";

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let source = self.sources.get(self.file)?;
            let bytes: &'a [u8] = &source.bytes;
            // A UTF-8 byte-order mark (editors on Windows write one) is not
            // part of the first record.
            if self.pos == 0 && bytes.starts_with(BOM) {
                self.pos = BOM.len();
            }
            // Skip blank lines, then take one line or one block.
            let mut found = None;
            while let Some((start, end, terminated)) = self.next_line(bytes) {
                let line = self.line;
                self.line += 1;
                if is_blank(&bytes[start..end]) {
                    continue;
                }
                let mut last_end = end;
                let mut last_terminated = terminated;
                if self.sep == DocSep::Blank {
                    while let Some((s, e, t)) = self.next_line(bytes) {
                        self.line += 1;
                        if is_blank(&bytes[s..e]) {
                            break;
                        }
                        last_end = e;
                        last_terminated = t;
                    }
                }
                found = Some((start, last_end, line, last_terminated));
                break;
            }
            match found {
                Some((start, end, line, terminated)) => {
                    let record = Record {
                        source: self.file as u32,
                        line,
                        offset: start as u64,
                        bytes: &bytes[start..end],
                        ordinal: self.ordinal,
                        is_last_unterminated: !terminated && end == bytes.len(),
                    };
                    self.ordinal += 1;
                    self.in_file += 1;
                    return Some(Ok(record));
                }
                None => {
                    let empty = self.in_file == 0;
                    self.file += 1;
                    self.pos = 0;
                    self.line = 1;
                    self.in_file = 0;
                    if empty {
                        return Some(Err(Error::EmptyFile {
                            path: source.path.clone(),
                        }));
                    }
                }
            }
        }
    }
}
