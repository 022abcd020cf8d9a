//! Streamed corpus files: gzip, zstd and bzip2 (text or JSONL), Common Crawl
//! WET and MediaWiki XML, each read on a thread of its own.
//!
//! A compressed file cannot be mapped and cut in place, so its thread
//! decompresses it into pieces of whole records ([`Unit::Bytes`], cut at a
//! record boundary so no record spans two pieces) that the pipeline cuts
//! with the same [`Cutter`](super::Cutter) as a mapped file: ids, lines,
//! offsets (of the decompressed bytes) and ordinals come out as they would
//! from the decompressed file. WET and MediaWiki files are parsed on their
//! thread into documents ([`Unit::Docs`]). Channels are bounded, so memory
//! is a few pieces per file whatever the file's size.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use serde::{Deserialize, Serialize};

use super::{boundary, DocSep, Format, Streamed};
use crate::error::Error;

/// A compression the readers undo as they read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// gzip, concatenated members included (Common Crawl's WET files).
    Gzip,
    /// Zstandard, concatenated frames included.
    Zstd,
    /// bzip2, concatenated streams included (Wikipedia's multistream dumps).
    Bzip2,
}

impl Codec {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
            Codec::Bzip2 => "bzip2",
        }
    }

    /// The decompressed bytes of `file`.
    fn decoder(self, file: File) -> io::Result<Box<dyn Read + Send>> {
        let file = BufReader::with_capacity(1 << 16, file);
        Ok(match self {
            Codec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
            Codec::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
            Codec::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(file)),
        })
    }
}

/// What a file's first bytes say about its compression.
pub(crate) enum Sniffed {
    /// Not compressed.
    Plain,
    /// Compressed in a way the readers undo.
    Codec(Codec),
    /// Compressed in a way they do not, with the tool that does.
    Unsupported {
        kind: &'static str,
        tool: &'static str,
    },
}

/// Reads the compression from the magic bytes (not the extension: a `.gz`
/// that is not gzip is read as it is).
pub(crate) fn sniff(bytes: &[u8]) -> Sniffed {
    match bytes {
        [0x1f, 0x8b, ..] => Sniffed::Codec(Codec::Gzip),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Sniffed::Codec(Codec::Zstd),
        [b'B', b'Z', b'h', b'1'..=b'9', ..] => Sniffed::Codec(Codec::Bzip2),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Sniffed::Unsupported {
            kind: "xz",
            tool: "xz",
        },
        _ => Sniffed::Plain,
    }
}

/// `path` without a compression suffix (`a.jsonl.gz` → `a.jsonl`), which
/// says the format and names the documents.
pub(crate) fn strip_codec_suffix(path: &Path) -> PathBuf {
    match path.extension().and_then(|e| e.to_str()) {
        Some("gz" | "zst" | "zstd" | "bz2") => path.with_extension(""),
        _ => path.to_path_buf(),
    }
}

/// A document a structured reader (WET, MediaWiki) parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub id: String,
    pub title: Option<String>,
    pub text: String,
    /// 1-based line of the decompressed file its record starts on.
    pub line: u64,
}

/// What a streamed file's thread hands over, in file order.
pub(crate) enum Unit {
    /// Decompressed bytes that hold whole records only.
    Bytes {
        data: Vec<u8>,
        /// Offset of `data` in the decompressed file.
        offset: u64,
        /// 1-based line `data` starts on.
        line: u64,
        /// `data` runs to the end of the file.
        ends_file: bool,
    },
    /// Documents a structured reader parsed, and records it could not
    /// (in file order, so `--skip-bad` counts them where they are).
    Docs(Vec<Result<Parsed, Error>>),
    /// The file breaks here (corrupt stream, malformed record): everything
    /// before was handed over, nothing after will be.
    Failed(Error),
    /// The thread read the file to its end (or to a [`Unit::Failed`]); a
    /// stream that ends without it lost its thread.
    Done,
}

/// How a streamed file is read.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub path: PathBuf,
    pub streamed: Streamed,
    pub format: Format,
    pub sep: DocSep,
    /// Bytes per piece handed over.
    pub chunk: usize,
}

/// Starts reading `plan` on a thread of its own; units arrive in order on
/// the receiver, at most two waiting (the bound on memory).
pub(crate) fn spawn(plan: Plan) -> Receiver<Unit> {
    let (tx, rx) = sync_channel(2);
    let name = format!("pretext-read-{}", plan.path.display());
    let failed = tx.clone();
    let started = std::thread::Builder::new().name(name).spawn(move || {
        read(&plan, &tx);
        let _ = tx.send(Unit::Done);
    });
    if let Err(source) = started {
        let _ = failed.send(Unit::Failed(Error::Io {
            path: PathBuf::from("<reader thread>"),
            source,
        }));
    }
    rx
}

fn read(plan: &Plan, tx: &SyncSender<Unit>) {
    let io = |source| Error::Io {
        path: plan.path.clone(),
        source,
    };
    let input: Box<dyn Read + Send> = match File::open(&plan.path).map_err(io) {
        Err(e) => {
            let _ = tx.send(Unit::Failed(e));
            return;
        }
        Ok(file) => match plan.streamed.codec {
            None => Box::new(file),
            Some(codec) => match codec.decoder(file) {
                Ok(d) => d,
                Err(e) => {
                    let _ = tx.send(Unit::Failed(io(e)));
                    return;
                }
            },
        },
    };
    match plan.format {
        Format::Wet | Format::Mediawiki => {
            let position = Rc::new(Cell::new(Position::default()));
            let reader = Counted {
                inner: BufReader::with_capacity(1 << 16, input),
                position: position.clone(),
            };
            let mut sink = DocSink {
                tx,
                docs: Vec::new(),
                bytes: 0,
                chunk: plan.chunk,
            };
            let result = if plan.format == Format::Wet {
                super::wet::read(reader, &position, &plan.path, &mut sink)
            } else {
                super::wiki::read(reader, &position, &plan.path, &mut sink)
            };
            let result = result.map_err(|e| match e {
                Broken::Io(e) => broken(plan, position.get(), e),
                Broken::Record(e) => e,
            });
            if sink.flush() {
                if let Err(e) = result {
                    let _ = tx.send(Unit::Failed(e));
                }
            }
        }
        Format::Text | Format::Jsonl | Format::Auto => pieces(plan, input, tx),
    }
}

/// Cuts the decompressed bytes into pieces of whole records.
fn pieces(plan: &Plan, mut input: Box<dyn Read + Send>, tx: &SyncSender<Unit>) {
    let mut buf = Vec::new();
    let mut target = plan.chunk;
    let mut at = Position { offset: 0, line: 1 };
    loop {
        let filled = fill(&mut input, &mut buf, target);
        let eof = match filled {
            Ok(eof) => eof,
            Err(e) => {
                // Whole records before the break go on; the partial one is
                // where the file breaks.
                if let Some(cut) = boundary(&buf, plan.sep) {
                    let rest = buf.split_off(cut);
                    let piece = std::mem::replace(&mut buf, rest);
                    if !send_piece(tx, piece, &mut at, false) {
                        return;
                    }
                }
                let _ = tx.send(Unit::Failed(broken(plan, at, e)));
                return;
            }
        };
        if eof {
            if !buf.is_empty() {
                send_piece(tx, buf, &mut at, true);
            }
            return;
        }
        match boundary(&buf, plan.sep) {
            Some(cut) => {
                let rest = buf.split_off(cut);
                let piece = std::mem::replace(&mut buf, rest);
                if !send_piece(tx, piece, &mut at, false) {
                    return;
                }
                target = plan.chunk.max(buf.len() + plan.chunk / 2);
            }
            // One record longer than a piece: read on until it ends.
            None => target = buf.len() * 2,
        }
    }
}

/// Sends a piece starting at `at` and moves `at` past it; false when the
/// reader is gone (the walk stopped).
fn send_piece(tx: &SyncSender<Unit>, data: Vec<u8>, at: &mut Position, ends_file: bool) -> bool {
    let start = *at;
    at.offset += data.len() as u64;
    at.line += memchr::memchr_iter(b'\n', &data).count() as u64;
    tx.send(Unit::Bytes {
        data,
        offset: start.offset,
        line: start.line,
        ends_file,
    })
    .is_ok()
}

/// Reads until `buf` holds `target` bytes; true at the end of the input.
/// The buffer grows (and is zeroed) once per call, not once per read: a
/// decoder hands out a block at a time.
fn fill(input: &mut dyn Read, buf: &mut Vec<u8>, target: usize) -> io::Result<bool> {
    let mut len = buf.len();
    if len >= target {
        return Ok(false);
    }
    buf.resize(target, 0);
    let result = loop {
        if len >= target {
            break Ok(false);
        }
        match input.read(&mut buf[len..]) {
            Ok(0) => break Ok(true),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    buf.truncate(len);
    result
}

fn broken(plan: &Plan, at: Position, e: io::Error) -> Error {
    match plan.streamed.codec {
        Some(codec) => Error::BrokenStream {
            path: plan.path.clone(),
            codec: codec.name(),
            decoded: at.offset,
            line: at.line,
            message: e.to_string(),
        },
        None => Error::Io {
            path: plan.path.clone(),
            source: e,
        },
    }
}

/// How far a structured reader has read, in decompressed bytes and lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub offset: u64,
    pub line: u64,
}

impl Default for Position {
    fn default() -> Self {
        Position { offset: 0, line: 1 }
    }
}

impl Position {
    /// This position in the file at `path`, as errors name it.
    pub fn at(self, path: &std::path::Path) -> crate::error::Location {
        crate::error::Location {
            path: path.to_path_buf(),
            line: self.line,
            offset: self.offset,
        }
    }
}

/// A reader that counts what its user consumed, so a parser that owns it
/// (the WARC reader, the XML reader) can still say where a record starts.
pub(crate) struct Counted<R> {
    inner: R,
    position: Rc<Cell<Position>>,
}

impl<R: BufRead> Counted<R> {
    fn advance(&mut self, bytes: &[u8]) {
        let mut p = self.position.get();
        p.offset += bytes.len() as u64;
        p.line += memchr::memchr_iter(b'\n', bytes).count() as u64;
        self.position.set(p);
    }
}

impl<R: BufRead> Read for Counted<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        self.advance(&out[..n]);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        // fill_buf on a buffered reader with bytes waiting reads nothing:
        // it returns the bytes about to be consumed.
        let mut p = self.position.get();
        if let Ok(buf) = self.inner.fill_buf() {
            let seen = &buf[..amt.min(buf.len())];
            p.line += memchr::memchr_iter(b'\n', seen).count() as u64;
        }
        p.offset += amt as u64;
        self.position.set(p);
        self.inner.consume(amt);
    }
}

/// Why a structured reader stopped early.
pub(crate) enum Broken {
    /// The input itself failed (a corrupt or truncated compressed stream).
    Io(io::Error),
    /// A record does not parse (with its place).
    Record(Error),
}

/// Collects parsed documents and hands them over a piece at a time.
pub(crate) struct DocSink<'a> {
    tx: &'a SyncSender<Unit>,
    docs: Vec<Result<Parsed, Error>>,
    bytes: usize,
    chunk: usize,
}

impl DocSink<'_> {
    /// Adds a document; false when the reader is gone (stop reading).
    pub fn push(&mut self, doc: Result<Parsed, Error>) -> bool {
        self.bytes += doc.as_ref().map_or(0, |d| d.text.len());
        self.docs.push(doc);
        if self.bytes >= self.chunk || self.docs.len() >= 4096 {
            return self.flush();
        }
        true
    }

    /// Hands over what is collected; false when the reader is gone.
    pub fn flush(&mut self) -> bool {
        if self.docs.is_empty() {
            return true;
        }
        self.bytes = 0;
        self.tx
            .send(Unit::Docs(std::mem::take(&mut self.docs)))
            .is_ok()
    }
}
