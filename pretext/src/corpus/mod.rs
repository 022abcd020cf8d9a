//! Corpus readers: plain text, JSONL (BEIR layout by default) and folders of
//! either, memory-mapped, split into records without copying, sharded `i/n`.
//!
//! Reading is two steps on purpose. [`Corpus::records`] walks the maps and
//! cuts records (lines or blank-line blocks) sequentially, which is a memchr
//! scan and cheap; [`Corpus::document`] turns a record into a [`Document`]
//! (UTF-8 check, JSON parse) and is what worker threads run in parallel.

mod jsonl;
mod mmap;
mod records;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Location, Result};
pub use mmap::FileBytes;
pub use records::{Record, Records};

/// How a file's bytes are split into documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Pick per file by extension: `.jsonl`, `.ndjson`, `.json` are JSONL,
    /// everything else plain text.
    #[default]
    Auto,
    /// Plain text; documents separated as [`DocSep`] says.
    Text,
    /// One JSON object per line.
    Jsonl,
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
    /// Extensions (without dot) of the files read below a folder.
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
            extensions: ["jsonl", "ndjson", "json", "txt", "text", "md", "rst"]
                .map(String::from)
                .to_vec(),
            allow_empty: false,
        }
    }
}

/// One corpus file, mapped.
pub struct Source {
    /// Path as opened.
    pub path: PathBuf,
    /// Name used in document ids: the path relative to the corpus root.
    pub name: String,
    /// The bytes.
    pub bytes: FileBytes,
    /// The resolved format (never `Auto`).
    pub format: Format,
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
                    && entry
                        .path()
                        .extension()
                        .and_then(|e| e.to_str())
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
                let bytes = FileBytes::open(&path).map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
                if let Some((kind, tool)) = compression(&bytes) {
                    return Err(Error::Compressed { path, kind, tool });
                }
                let format = resolve_format(config.format, &path);
                Ok(Source {
                    path,
                    name,
                    bytes,
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

    /// Total size of all files in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.sources.iter().map(|s| s.bytes.len() as u64).sum()
    }

    /// The records of every file in order; an empty file yields one
    /// [`Error::EmptyFile`] item.
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
                }
            }
            Format::Text | Format::Auto => Document {
                id: Cow::Owned(format!("{}@{}", source.name, record.offset)),
                title: None,
                text: Cow::Borrowed(text.trim()),
                ordinal: record.ordinal,
                line: Some(record.line),
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

/// The compression a file's first bytes announce (gzip, zstd, bzip2, xz),
/// with the tool that undoes it.
fn compression(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    match bytes {
        [0x1f, 0x8b, ..] => Some(("gzip", "gzip")),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(("zstd", "zstd")),
        [b'B', b'Z', b'h', b'1'..=b'9', ..] => Some(("bzip2", "bzip2")),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Some(("xz", "xz")),
        _ => None,
    }
}

fn resolve_format(format: Format, path: &Path) -> Format {
    match format {
        Format::Auto => match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson" | "json") => Format::Jsonl,
            _ => Format::Text,
        },
        f => f,
    }
}

#[cfg(test)]
mod tests;
