//! Errors of the data half: every one names the file, and where it can, the
//! line and byte offset, so a user can open the record that stopped the run.

use std::fmt;
use std::path::PathBuf;

/// Where in the corpus a record starts: file, 1-based line, byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as the user named it (or as found below a folder they named).
    pub path: PathBuf,
    /// 1-based line number of the record's first line.
    pub line: u64,
    /// Byte offset of the record's first byte in the file.
    pub offset: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} (byte {})",
            self.path.display(),
            self.line,
            self.offset
        )
    }
}

/// Everything that can go wrong while reading a corpus or building pairs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened, mapped or read.
    #[error("pretext io error: {path}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Output could not be written.
    #[error("pretext io error: writing output")]
    Write(#[source] std::io::Error),
    /// A record is not valid UTF-8.
    #[error("pretext corpus error: {at}: invalid UTF-8 at byte {bad_offset} of the file")]
    InvalidUtf8 {
        /// The record.
        at: Location,
        /// Byte offset, in the file, of the first invalid byte.
        bad_offset: u64,
    },
    /// A JSONL line does not parse as a JSON object.
    #[error("pretext corpus error: {at}: malformed JSON: {message}")]
    MalformedJson {
        /// The record.
        at: Location,
        /// What the JSON parser said (column included).
        message: String,
    },
    /// A JSONL record lacks the text field, or a field has the wrong type.
    #[error("pretext corpus error: {at}: {message}")]
    BadField {
        /// The record.
        at: Location,
        /// Which field and what is wrong with it.
        message: String,
    },
    /// A record whose text (and title) is empty.
    #[error("pretext corpus error: {at}: empty document")]
    EmptyDocument {
        /// The record.
        at: Location,
    },
    /// A file with no document in it at all (empty, or only whitespace).
    #[error("pretext corpus error: {path}: file holds no document (empty file)")]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// A folder with no file of a matching extension below it.
    #[error(
        "pretext corpus error: {path}: no corpus file below this folder (extensions: {extensions})"
    )]
    EmptyFolder {
        /// The folder.
        path: PathBuf,
        /// The extensions that were looked for.
        extensions: String,
    },
    /// A file in a compression the readers do not undo (xz).
    #[error(
        "pretext corpus error: {path}: the file is {kind}-compressed, which pretext does not read; decompress it first (e.g. `{tool} -dk FILE`) or recompress it as gzip, zstd or bzip2"
    )]
    Compressed {
        /// The file.
        path: PathBuf,
        /// xz.
        kind: &'static str,
        /// The command that decompresses it.
        tool: &'static str,
    },
    /// A compressed stream that is corrupt or ends early. Every record
    /// before the break was read; with `--skip-bad` the rest of the file
    /// is skipped (counted as one bad record) and the next file is read.
    #[error(
        "pretext corpus error: {path}: the {codec} stream breaks after {decoded} decompressed bytes (line {line}): {message}; the file is corrupt or truncated, every record before the break was read"
    )]
    BrokenStream {
        /// The file.
        path: PathBuf,
        /// gzip, zstd or bzip2.
        codec: &'static str,
        /// Decompressed bytes read before the break.
        decoded: u64,
        /// The line the break falls on (in the decompressed text).
        line: u64,
        /// What the decoder said.
        message: String,
    },
    /// [`crate::corpus::Corpus::records`] met a streamed file (compressed,
    /// WET or MediaWiki), which only the pipeline reads.
    #[error(
        "pretext corpus error: {path}: a streamed file (compressed, WET or MediaWiki) is read through pipeline::for_each_batch, not Corpus::records"
    )]
    Streamed {
        /// The file.
        path: PathBuf,
    },
    /// An option or configuration value that cannot work.
    #[error("pretext config error: {0}")]
    Config(String),
}

impl Error {
    /// True for errors that concern one record and that `--skip-bad` may skip.
    pub fn is_bad_record(&self) -> bool {
        matches!(
            self,
            Error::InvalidUtf8 { .. }
                | Error::MalformedJson { .. }
                | Error::BadField { .. }
                | Error::EmptyDocument { .. }
                | Error::EmptyFile { .. }
                | Error::BrokenStream { .. }
        )
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
