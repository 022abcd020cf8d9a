//! Corpus readers: plain text, JSONL (BEIR layout by default) and folders of
//! either, memory-mapped, split into records without copying, sharded `i/n`.
//!
//! Reading is two steps on purpose. [`Corpus::records`] walks the maps and
//! cuts records (lines or blank-line blocks) sequentially, which is a memchr
//! scan and cheap; [`Corpus::document`] turns a record into a [`Document`]
//! (UTF-8 check, JSON parse) and is what worker threads run in parallel.
//!
//! Raw dumps as distributed are *streamed* instead of mapped: gzip, zstd and
//! bzip2 files (text or JSONL), Common Crawl WET files and MediaWiki XML
//! dumps ([`stream`]). They are decompressed and parsed on their own
//! threads, a few files ahead, and read by [`crate::pipeline::for_each_batch`]
//! with the same ids, ordinals and sharding as the mapped files.

mod jsonl;
mod mmap;
mod records;
pub(crate) mod stream;
mod wet;
mod wiki;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Location, Result};
pub use mmap::FileBytes;
pub(crate) use records::{boundary, Cutter, Start};
pub use records::{Record, Records};
pub use stream::Codec;
pub use wiki::plain_text as wiki_plain_text;

/// How a file's bytes are split into documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Pick per file by extension (after a `.gz`, `.zst` or `.bz2`):
    /// `.jsonl`, `.ndjson`, `.json` are JSONL, `.wet` WET, `.xml` MediaWiki,
    /// everything else plain text.
    #[default]
    Auto,
    /// Plain text; documents separated as [`DocSep`] says.
    Text,
    /// One JSON object per line.
    Jsonl,
    /// A Common Crawl WET file (WARC `conversion` records of plain text):
    /// one document per record, its WARC-Record-ID as id.
    Wet,
    /// A MediaWiki XML export (`pages-articles.xml`): one document per
    /// article, the title kept, the markup reduced to plain text.
    Mediawiki,
}

/// How plain-text documents are separated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocSep {
    /// One document per line (blank lines are not documents).
    #[default]
    Line,
    /// Documents are blocks of lines separated by one or more blank lines.
    Blank,
}

/// The JSONL fields that hold a document. Defaults are the BEIR corpus layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonFields {
    /// Identifier field (string or number). When a record lacks it, the id is
    /// `file@offset`.
    pub id: String,
    /// Optional title field; a missing or null title is no title.
    pub title: Option<String>,
    /// Text field (required, a string).
    pub text: String,
}

impl Default for JsonFields {
    fn default() -> Self {
        JsonFields {
            id: "_id".into(),
            title: Some("title".into()),
            text: "text".into(),
        }
    }
}

/// Everything that says how to read a corpus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorpusConfig {
    /// File format (`auto`, `text`, `jsonl`).
    pub format: Format,
    /// Plain-text document separator (`line` or `blank`).
    pub doc_sep: DocSep,
    /// JSONL field names.
    pub fields: JsonFields,
    /// Extensions (without dot) of the files read below a folder; a
    /// compressed file (`.gz`, `.zst`, `.bz2`) counts by the extension
    /// before its compression's.
    pub extensions: Vec<String>,
    /// Accept records with empty text (an evaluation corpus must keep every
    /// document); by default an empty document is a bad record.
    pub allow_empty: bool,
}

impl Default for CorpusConfig {
    fn default() -> Self {
        CorpusConfig {
            format: Format::Auto,
            doc_sep: DocSep::Line,
            fields: JsonFields::default(),
            extensions: [
                "jsonl", "ndjson", "json", "txt", "text", "md", "rst", "wet", "xml",
            ]
            .map(String::from)
            .to_vec(),
            allow_empty: false,
        }
    }
}

/// One corpus file.
pub struct Source {
    /// Path as opened.
    pub path: PathBuf,
    /// Name used in document ids: the path relative to the corpus root,
    /// without a compression suffix (`a.jsonl.gz` names its documents as
    /// `a.jsonl` would).
    pub name: String,
    /// How the file is read.
    pub body: Body,
    /// The resolved format (never `Auto`).
    pub format: Format,
}

/// How a corpus file is read.
pub enum Body {
    /// Text or JSONL, memory-mapped and cut in place.
    Mapped(FileBytes),
    /// Decompressed or parsed on a thread of its own as it is read.
    Streamed(Streamed),
}

/// A file read as a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streamed {
    /// Its compression (`None`: a plain WET or MediaWiki file).
    pub codec: Option<Codec>,
    /// Its size on disk.
    pub size: u64,
}

impl Source {
    /// Size on disk in bytes.
    pub fn disk_bytes(&self) -> u64 {
        match &self.body {
            Body::Mapped(b) => b.len() as u64,
            Body::Streamed(s) => s.size,
        }
    }
}

/// A document: slices of the mapped file where no unescaping was needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document<'a> {
    /// Identifier (the id field, or `file@offset`).
    pub id: Cow<'a, str>,
    /// Title, when the record has one.
    pub title: Option<Cow<'a, str>>,
    /// Body text.
    pub text: Cow<'a, str>,
    /// Position among all records of the corpus (shards included); it seeds
    /// the document's random stream so output does not depend on threads.
    pub ordinal: u64,
    /// The 1-based line of its file the record starts on, for messages
    /// about its content; `None` for documents not read from a file.
    pub line: Option<u64>,
    /// Its file's index in [`Corpus::sources`] (0 for documents not read
    /// from a corpus): what `batch.group_by = "file"` groups by.
    pub source: u32,
}

impl Document<'_> {
    /// Where the document is, for messages about its content: its id, and
    /// the line it starts on when it was read from a file.
    pub fn place(&self) -> String {
        match self.line {
            Some(line) => format!("{} (line {line})", self.id),
            None => self.id.to_string(),
        }
    }
}

/// A set of mapped files read as one corpus.
pub struct Corpus {
    sources: Vec<Source>,
    config: CorpusConfig,
}

impl Corpus {
    /// Opens a file or every matching file below a folder (sorted by path,
    /// so the order never depends on the file system).
    pub fn open(path: impl AsRef<Path>, config: CorpusConfig) -> Result<Corpus> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut files = Vec::new();
        if meta.is_dir() {
            // Symbolic links are followed (a corpus assembled from links to
            // dumps elsewhere); walkdir reports a link loop as an error.
            for entry in walkdir::WalkDir::new(path)
                .follow_links(true)
                .sort_by_file_name()
            {
                let entry = entry.map_err(|e| Error::Io {
                    path: e.path().unwrap_or(path).to_path_buf(),
                    source: e.into(),
                })?;
                let matches = entry.file_type().is_file()
                    && extension(&stream::strip_codec_suffix(entry.path()))
                        .is_some_and(|e| config.extensions.iter().any(|x| x == e));
                if matches {
                    let name = entry
                        .path()
                        .strip_prefix(path)
                        .unwrap_or(entry.path())
                        .to_string_lossy()
                        .into_owned();
                    files.push((entry.path().to_path_buf(), name));
                }
            }
            if files.is_empty() {
                return Err(Error::EmptyFolder {
                    path: path.to_path_buf(),
                    extensions: config.extensions.join(","),
                });
            }
        } else {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string());
            files.push((path.to_path_buf(), name));
        }
        let sources = files
            .into_iter()
            .map(|(path, name)| {
                let io = |source| Error::Io {
                    path: path.clone(),
                    source,
                };
                let bytes = FileBytes::open(&path).map_err(io)?;
                let codec = match stream::sniff(&bytes) {
                    stream::Sniffed::Plain => None,
                    stream::Sniffed::Codec(c) => Some(c),
                    stream::Sniffed::Unsupported { kind, tool } => {
                        return Err(Error::Compressed { path, kind, tool })
                    }
                };
                let plain = match codec {
                    Some(_) => stream::strip_codec_suffix(&path),
                    None => path.clone(),
                };
                let name = match codec {
                    Some(_) => stream::strip_codec_suffix(Path::new(&name))
                        .to_string_lossy()
                        .into_owned(),
                    None => name,
                };
                let format = resolve_format(config.format, &plain);
                let streamed = codec.is_some() || matches!(format, Format::Wet | Format::Mediawiki);
                let body = if streamed {
                    Body::Streamed(Streamed {
                        codec,
                        size: bytes.len() as u64,
                    })
                } else {
                    Body::Mapped(bytes)
                };
                Ok(Source {
                    path,
                    name,
                    body,
                    format,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Corpus { sources, config })
    }

    /// The mapped files, in reading order.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// Total size of all files on disk in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.sources.iter().map(Source::disk_bytes).sum()
    }

    /// True when some file is streamed (compressed, WET, MediaWiki): its
    /// documents' bytes are not known before it is read.
    pub fn is_streamed(&self) -> bool {
        self.sources
            .iter()
            .any(|s| matches!(s.body, Body::Streamed(_)))
    }

    /// The reader settings.
    pub fn config(&self) -> &CorpusConfig {
        &self.config
    }

    /// The records of every mapped file in order; an empty file yields one
    /// [`Error::EmptyFile`] item, a streamed file one [`Error::Streamed`]
    /// (read those through [`crate::pipeline::for_each_batch`]).
    pub fn records(&self) -> Records<'_> {
        Records::new(&self.sources, self.config.doc_sep)
    }

    /// Where a record starts, for error messages.
    pub fn location(&self, record: &Record<'_>) -> Location {
        Location {
            path: self.sources[record.source as usize].path.clone(),
            line: record.line,
            offset: record.offset,
        }
    }

    /// Parses a record into a document: checks UTF-8, parses JSON, checks
    /// that something is left to read.
    pub fn document<'a>(&'a self, record: &Record<'a>) -> Result<Document<'a>> {
        let source = &self.sources[record.source as usize];
        let text = std::str::from_utf8(record.bytes).map_err(|e| Error::InvalidUtf8 {
            at: self.location(record),
            bad_offset: record.offset + e.valid_up_to() as u64,
        })?;
        let doc = match source.format {
            Format::Jsonl => {
                let raw = jsonl::parse(text, &self.config.fields)
                    .map_err(|e| e.at(self.location(record), record.is_last_unterminated))?;
                Document {
                    id: raw.id.unwrap_or_else(|| {
                        Cow::Owned(format!("{}@{}", source.name, record.offset))
                    }),
                    title: raw.title.filter(|t| !t.trim().is_empty()),
                    text: raw.text,
                    ordinal: record.ordinal,
                    line: Some(record.line),
                    source: record.source,
                }
            }
            Format::Text | Format::Auto | Format::Wet | Format::Mediawiki => Document {
                id: Cow::Owned(format!("{}@{}", source.name, record.offset)),
                title: None,
                text: Cow::Borrowed(text.trim()),
                ordinal: record.ordinal,
                line: Some(record.line),
                source: record.source,
            },
        };
        if !self.config.allow_empty && doc.text.trim().is_empty() {
            return Err(Error::EmptyDocument {
                at: self.location(record),
            });
        }
        Ok(doc)
    }
}

fn extension(path: &Path) -> Option<&str> {
    path.extension().and_then(|e| e.to_str())
}

fn resolve_format(format: Format, path: &Path) -> Format {
    match format {
        Format::Auto => match extension(path) {
            Some("jsonl" | "ndjson" | "json") => Format::Jsonl,
            Some("wet") => Format::Wet,
            Some("xml") => Format::Mediawiki,
            _ => Format::Text,
        },
        f => f,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod stream_tests;
