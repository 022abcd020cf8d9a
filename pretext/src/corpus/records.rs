//! Cuts files into records (a line, or a block of lines between blank
//! lines) with a memchr scan, counting lines and byte offsets as it goes.
//!
//! [`Cutter`] cuts one slice: a whole mapped file, or one piece of a
//! decompressed stream that ends on a record boundary ([`boundary`] finds
//! it). [`Records`] walks the mapped files of a corpus with it.

use super::{Body, DocSep, Source};
use crate::error::{Error, Result};

/// One raw record: bytes of a file and where they start.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Index of the file in [`super::Corpus::sources`].
    pub source: u32,
    /// 1-based line of the first line.
    pub line: u64,
    /// Byte offset of the first byte in its file (in the decompressed bytes
    /// for a compressed file).
    pub offset: u64,
    /// The bytes, line terminators trimmed.
    pub bytes: &'a [u8],
    /// Position among all records of the corpus, from 0.
    pub ordinal: u64,
    /// The record is the file's last and has no final newline: if it does
    /// not parse, the file was probably cut short.
    pub is_last_unterminated: bool,
}

/// Where a slice starts in its file, and the ordinal of its first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Start {
    /// Byte offset of the slice in its file.
    pub offset: u64,
    /// 1-based line the slice starts on.
    pub line: u64,
    /// Ordinal the slice's first record gets.
    pub ordinal: u64,
}

impl Start {
    /// The start of a file whose first record gets `ordinal`.
    pub fn file(ordinal: u64) -> Start {
        Start {
            offset: 0,
            line: 1,
            ordinal,
        }
    }
}

/// Cuts one slice of a file into records.
pub(crate) struct Cutter<'a> {
    bytes: &'a [u8],
    source: u32,
    sep: DocSep,
    /// The slice ends where its file ends (so an unterminated last record
    /// is the file's).
    ends_file: bool,
    base: u64,
    pos: usize,
    line: u64,
    ordinal: u64,
}

impl<'a> Cutter<'a> {
    pub fn new(bytes: &'a [u8], source: u32, sep: DocSep, start: Start, ends_file: bool) -> Self {
        // A UTF-8 byte-order mark (editors on Windows write one) is not
        // part of the first record.
        let pos = if start.offset == 0 && bytes.starts_with(BOM) {
            BOM.len()
        } else {
            0
        };
        Cutter {
            bytes,
            source,
            sep,
            ends_file,
            base: start.offset,
            pos,
            line: start.line,
            ordinal: start.ordinal,
        }
    }

    /// The ordinal the next record would get.
    pub fn ordinal(&self) -> u64 {
        self.ordinal
    }

    /// Next line as (start, end without terminator, terminated); advances
    /// past it.
    fn next_line(&mut self) -> Option<(usize, usize, bool)> {
        let bytes = self.bytes;
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

impl<'a> Iterator for Cutter<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        // Skip blank lines, then take one line or one block.
        while let Some((start, end, terminated)) = self.next_line() {
            let line = self.line;
            self.line += 1;
            if is_blank(&self.bytes[start..end]) {
                continue;
            }
            let mut last_end = end;
            let mut last_terminated = terminated;
            if self.sep == DocSep::Blank {
                while let Some((s, e, t)) = self.next_line() {
                    self.line += 1;
                    if is_blank(&self.bytes[s..e]) {
                        break;
                    }
                    last_end = e;
                    last_terminated = t;
                }
            }
            let record = Record {
                source: self.source,
                line,
                offset: self.base + start as u64,
                bytes: &self.bytes[start..last_end],
                ordinal: self.ordinal,
                is_last_unterminated: self.ends_file
                    && !last_terminated
                    && last_end == self.bytes.len(),
            };
            self.ordinal += 1;
            return Some(record);
        }
        None
    }
}

/// Where the bytes of `buf` can be cut so that the part before holds whole
/// records only: after the last newline for one record per line, after the
/// last blank line for blocks. `None` when no such place exists yet.
pub(crate) fn boundary(buf: &[u8], sep: DocSep) -> Option<usize> {
    let last = memchr::memrchr(b'\n', buf)?;
    match sep {
        DocSep::Line => Some(last + 1),
        DocSep::Blank => {
            // The last line (between two newlines) that is blank.
            let mut end = last;
            while let Some(prev) = memchr::memrchr(b'\n', &buf[..end]) {
                if is_blank(&buf[prev + 1..end]) {
                    return Some(end + 1);
                }
                end = prev;
            }
            None
        }
    }
}

/// Iterator over the records of all mapped sources, in order. A streamed
/// source (compressed, WET, MediaWiki) yields one error: those are read by
/// [`crate::pipeline::for_each_batch`], which decompresses them.
pub struct Records<'a> {
    sources: &'a [Source],
    sep: DocSep,
    file: usize,
    current: Option<Cutter<'a>>,
    in_file: u64,
    ordinal: u64,
}

impl<'a> Records<'a> {
    pub(super) fn new(sources: &'a [Source], sep: DocSep) -> Self {
        Records {
            sources,
            sep,
            file: 0,
            current: None,
            in_file: 0,
            ordinal: 0,
        }
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
            let cutter = match (&mut self.current, &source.body) {
                (Some(c), _) => c,
                (None, Body::Mapped(bytes)) => self.current.insert(Cutter::new(
                    bytes,
                    self.file as u32,
                    self.sep,
                    Start::file(self.ordinal),
                    true,
                )),
                (None, Body::Streamed(_)) => {
                    self.file += 1;
                    return Some(Err(Error::Streamed {
                        path: source.path.clone(),
                    }));
                }
            };
            if let Some(record) = cutter.next() {
                self.ordinal = cutter.ordinal();
                self.in_file += 1;
                return Some(Ok(record));
            }
            let empty = self.in_file == 0;
            self.file += 1;
            self.current = None;
            self.in_file = 0;
            if empty {
                return Some(Err(Error::EmptyFile {
                    path: source.path.clone(),
                }));
            }
        }
    }
}
