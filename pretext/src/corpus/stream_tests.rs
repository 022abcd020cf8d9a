//! Streamed files: compressed text and JSONL read as their decompressed
//! bytes would be, WET and MediaWiki parsed, broken streams named.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;
use crate::pipeline::{for_each_batch, ReadOptions, ReadReport};
use crate::shard::Shard;

/// What the walk gives of a document: id, title, text, ordinal, line.
type Seen = (String, Option<String>, String, u64, Option<u64>);

fn walk(corpus: &Corpus, opts: ReadOptions) -> (Vec<Seen>, Result<ReadReport>) {
    let mut seen = Vec::new();
    let report = for_each_batch(
        corpus,
        opts,
        |d| {
            (
                d.id.to_string(),
                d.title.as_ref().map(|t| t.to_string()),
                d.text.to_string(),
                d.ordinal,
                d.line,
            )
        },
        |batch, _| {
            seen.extend(batch);
            Ok(())
        },
    );
    (seen, report)
}

/// Small pieces, so a file is many of them and records cross their edges.
fn small() -> ReadOptions {
    ReadOptions {
        batch_bytes: 8 << 10,
        batch_records: 50,
        ..ReadOptions::default()
    }
}

fn compress(codec: Codec, bytes: &[u8]) -> Vec<u8> {
    match codec {
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        }
        Codec::Zstd => zstd::encode_all(bytes, 3).unwrap(),
        Codec::Bzip2 => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        }
    }
}

const CODECS: [(Codec, &str); 3] = [
    (Codec::Gzip, "gz"),
    (Codec::Zstd, "zst"),
    (Codec::Bzip2, "bz2"),
];

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

/// JSONL with a record far longer than a piece, escapes and blank lines.
fn jsonl() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..3000 {
        if i == 700 {
            s.push_str(&format!(
                "{{\"_id\": \"long\", \"text\": \"{}\"}}\n\n",
                "word ".repeat(6000)
            ));
        }
        s.push_str(&format!(
            "{{\"_id\": \"d{i}\", \"title\": \"T{i}\", \"text\": \"document {i} says \\\"hello\\\" caf\\u00e9 {}\"}}\r\n",
            "x".repeat(i % 97)
        ));
    }
    s.into_bytes()
}

/// Plain text in blocks separated by blank lines (with spaces, too).
fn blocks() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..1200 {
        s.push_str(&format!(
            "block {i} first line\nsecond line {}\n",
            "y".repeat(i % 50)
        ));
        s.push_str(if i % 3 == 0 { "   \n\n" } else { "\n" });
    }
    s.into_bytes()
}

#[test]
fn compressed_files_read_as_their_decompressed_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for (content, name, sep) in [
        (jsonl(), "c.jsonl", DocSep::Line),
        (blocks(), "c.txt", DocSep::Blank),
    ] {
        let cfg = CorpusConfig {
            doc_sep: sep,
            ..CorpusConfig::default()
        };
        let plain = write(&dir.path().join("plain"), name, &content);
        let expected = walk(&Corpus::open(&plain, cfg.clone()).unwrap(), small());
        let expected = expected.0;
        assert!(expected.len() > 1000, "{}", expected.len());
        for (codec, ext) in CODECS {
            let file = write(
                &dir.path().join(ext),
                &format!("{name}.{ext}"),
                &compress(codec, &content),
            );
            let c = Corpus::open(&file, cfg.clone()).unwrap();
            assert!(c.is_streamed());
            assert_eq!(c.sources()[0].name, name, "ids name the decompressed file");
            for opts in [small(), ReadOptions::default()] {
                let (got, report) = walk(&c, opts);
                let report = report.unwrap();
                assert_eq!(got, expected, "{codec:?} {name}");
                assert_eq!(report.documents, expected.len() as u64);
            }
            // Corpus::records cannot cut compressed bytes: it says so.
            let e = c.records().next().unwrap().unwrap_err();
            assert!(matches!(e, Error::Streamed { .. }), "{e}");
        }
    }
}

#[test]
fn concatenated_members_frames_and_streams_are_one_file() {
    let dir = tempfile::tempdir().unwrap();
    for (codec, ext) in CODECS {
        let mut bytes = compress(codec, b"{\"_id\": \"a\", \"text\": \"first\"}\n");
        bytes.extend(compress(codec, b"{\"_id\": \"b\", \"text\": \"second\"}\n"));
        let p = write(dir.path(), &format!("m.jsonl.{ext}"), &bytes);
        let (got, report) = walk(&Corpus::open(&p, CorpusConfig::default()).unwrap(), small());
        report.unwrap();
        let ids: Vec<_> = got.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(ids, ["a", "b"], "{codec:?}");
        assert_eq!(got[1].4, Some(2), "lines count across members");
    }
}

#[test]
fn folders_mix_mapped_and_streamed_files_in_order_and_shards() {
    let dir = tempfile::tempdir().unwrap();
    let content = jsonl();
    let lines: Vec<&[u8]> = content.split(|&b| b == b'\n').collect();
    let third = lines.len() / 3;
    let parts = [
        lines[..third].join(&b'\n'),
        lines[third..2 * third].join(&b'\n'),
        lines[2 * third..].join(&b'\n'),
    ];
    // The same three files, plain; then the second gzip, the third bzip2.
    let plain = dir.path().join("plain");
    let mixed = dir.path().join("mixed");
    for (i, part) in parts.iter().enumerate() {
        write(&plain, &format!("{i}.jsonl"), part);
    }
    write(&mixed, "0.jsonl", &parts[0]);
    write(&mixed, "1.jsonl.gz", &compress(Codec::Gzip, &parts[1]));
    write(&mixed, "2.jsonl.bz2", &compress(Codec::Bzip2, &parts[2]));
    write(
        &mixed,
        "notes.gz",
        &compress(Codec::Gzip, b"not a corpus extension"),
    );
    for shard in [
        Shard::ALL,
        Shard::new(1, 3).unwrap(),
        Shard::new(2, 5).unwrap(),
    ] {
        let opts = ReadOptions { shard, ..small() };
        let a = walk(
            &Corpus::open(&plain, CorpusConfig::default()).unwrap(),
            opts,
        );
        let b = walk(
            &Corpus::open(&mixed, CorpusConfig::default()).unwrap(),
            opts,
        );
        assert_eq!(a.0, b.0, "{shard:?}");
        assert!(!a.0.is_empty());
    }
}

#[test]
fn a_broken_stream_keeps_what_came_before_and_skip_bad_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let content = jsonl();
    for (codec, ext) in CODECS {
        let whole = compress(codec, &content);
        let sub = dir.path().join(ext);
        let cut = write(
            &sub,
            &format!("a.jsonl.{ext}"),
            &whole[..whole.len() * 9 / 10],
        );
        write(
            &sub,
            "b.jsonl",
            b"{\"_id\": \"after\", \"text\": \"next file\"}\n",
        );
        let c = Corpus::open(&sub, CorpusConfig::default()).unwrap();
        let (got, report) = walk(&c, small());
        let e = report.unwrap_err();
        assert!(matches!(e, Error::BrokenStream { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&cut.display().to_string()) && msg.contains(codec.name()),
            "{msg}"
        );
        assert!(
            got.len() > 100,
            "{codec:?}: records before the break are kept: {}",
            got.len()
        );
        assert!(got.iter().all(|g| g.0 != "after"));
        // The records handed on are exactly the decompressed file's first ones.
        let plain = write(dir.path(), "whole.jsonl", &content);
        let (all, _) = walk(
            &Corpus::open(&plain, CorpusConfig::default()).unwrap(),
            small(),
        );
        let n = got.len();
        let strip = |v: &[Seen]| {
            v.iter()
                .map(|g| (g.0.clone(), g.2.clone(), g.4))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&got), strip(&all[..n]));

        let opts = ReadOptions {
            skip_bad: true,
            ..small()
        };
        let (got, report) = walk(&c, opts);
        let report = report.unwrap();
        assert_eq!(report.skipped, 1);
        assert_eq!(got.last().unwrap().0, "after");
    }
}

#[test]
fn bad_records_inside_compressed_files_are_named_like_plain_ones() {
    let dir = tempfile::tempdir().unwrap();
    let content = b"{\"_id\": \"a\", \"text\": \"fine\"}\n{\"_id\": \"b\", \"text\": \n{\"_id\": \"c\", \"text\": \"\xff\xfe\"}\n";
    for (codec, ext) in CODECS {
        let p = write(
            dir.path(),
            &format!("bad.jsonl.{ext}"),
            &compress(codec, content),
        );
        let c = Corpus::open(&p, CorpusConfig::default()).unwrap();
        let e = walk(&c, small()).1.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::MalformedJson { .. }), "{msg}");
        assert!(
            msg.contains(&format!("bad.jsonl.{ext}:2")),
            "file and line: {msg}"
        );
        let opts = ReadOptions {
            skip_bad: true,
            ..small()
        };
        let (got, report) = walk(&c, opts);
        assert_eq!(got.len(), 1);
        assert_eq!(report.unwrap().skipped, 2);
    }
    // An empty compressed file holds no document, like an empty plain one.
    let p = write(dir.path(), "empty.txt.gz", &compress(Codec::Gzip, b"\n\n"));
    let e = walk(&Corpus::open(&p, CorpusConfig::default()).unwrap(), small())
        .1
        .unwrap_err();
    assert!(matches!(e, Error::EmptyFile { .. }), "{e}");
}

/// A WET file as Common Crawl writes it: a warcinfo record, then one
/// conversion record per page (one without text).
fn wet() -> Vec<u8> {
    let mut out = Vec::new();
    let mut record = |kind: &str, id: &str, uri: Option<&str>, body: &str| {
        let mut head = format!(
            "WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Date: 2024-01-01T00:00:00Z\r\nWARC-Record-ID: <urn:uuid:{id}>\r\n"
        );
        if let Some(u) = uri {
            head.push_str(&format!("WARC-Target-URI: {u}\r\n"));
        }
        head.push_str(&format!(
            "Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ));
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(body.as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
    };
    record(
        "warcinfo",
        "00000000-0000-0000-0000-000000000000",
        None,
        "isPartOf: CC-MAIN\r\n",
    );
    record(
        "conversion",
        "11111111-1111-1111-1111-111111111111",
        Some("https://example.org/a"),
        "A page about caf\u{e9}s.\nIts second line.",
    );
    record(
        "conversion",
        "22222222-2222-2222-2222-222222222222",
        Some("https://example.org/empty"),
        "",
    );
    record(
        "conversion",
        "33333333-3333-3333-3333-333333333333",
        Some("https://example.org/b"),
        "Another page.\n",
    );
    out
}

/// The documents of a plain file, checked equal to its compressed copy's;
/// both must be read as `format`.
fn same_documents(files: [&PathBuf; 2], format: Format) -> Vec<Seen> {
    let [plain, packed] = files.map(|p| {
        let c = Corpus::open(p, CorpusConfig::default()).unwrap();
        assert_eq!(c.sources()[0].format, format);
        let (got, report) = walk(&c, small());
        report.unwrap();
        got
    });
    assert_eq!(plain, packed);
    plain
}

#[test]
fn wet_files_give_one_document_per_conversion_record() {
    let dir = tempfile::tempdir().unwrap();
    let plain = write(dir.path(), "crawl.warc.wet", &wet());
    // Common Crawl compresses each record as its own gzip member.
    let mut members = Vec::new();
    for chunk in wet()
        .split_inclusive(|&b| b == b'\n')
        .collect::<Vec<_>>()
        .chunks(7)
    {
        members.extend(compress(Codec::Gzip, &chunk.concat()));
    }
    let gz = write(dir.path(), "gz/crawl.warc.wet.gz", &members);
    let got = &same_documents([&plain, &gz], Format::Wet);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, "urn:uuid:11111111-1111-1111-1111-111111111111");
    assert_eq!(got[0].2, "A page about caf\u{e9}s.\nIts second line.");
    assert_eq!((got[0].3, got[1].3), (0, 1), "ordinals count documents");
    assert_eq!(got[1].2, "Another page.");
    // Each record's line is where its WARC/1.0 line is.
    let text = String::from_utf8(wet()).unwrap();
    let line_of = |id: &str| {
        let at = text.find(id).unwrap();
        let start = text[..at].rfind("WARC/1.0").unwrap();
        text[..start].matches('\n').count() as u64 + 1
    };
    assert_eq!(got[1].4, Some(line_of("33333333")));

    // Headers that do not parse end the file with its name and place.
    let mut broken = wet();
    let at = broken.windows(9).rposition(|w| w == b"WARC/1.0\r").unwrap();
    broken[at..at + 8].copy_from_slice(b"XXXX/1.0");
    let p = write(dir.path(), "broken.wet", &broken);
    let (got, report) = walk(&Corpus::open(&p, CorpusConfig::default()).unwrap(), small());
    let e = report.unwrap_err().to_string();
    assert!(e.contains("broken.wet") && e.contains("WARC record"), "{e}");
    assert_eq!(got.len(), 1, "the record before the broken one is kept");
}

/// A MediaWiki export written by hand: an article, a redirect, a talk page
/// and an article whose markup leaves nothing (the fuzz tests mutate it).
const WIKI: &str = include_str!("../../../tests/fixtures/wiki/excerpt.xml");

#[test]
fn mediawiki_dumps_give_one_plain_text_document_per_article() {
    let dir = tempfile::tempdir().unwrap();
    let plain = write(dir.path(), "wiki.xml", WIKI.as_bytes());
    let bz = write(
        dir.path(),
        "bz/enwiki-pages-articles.xml.bz2",
        &compress(Codec::Bzip2, WIKI.as_bytes()),
    );
    let got = &same_documents([&plain, &bz], Format::Mediawiki);
    let summary: Vec<_> = got
        .iter()
        .map(|g| (g.0.as_str(), g.1.as_deref(), g.2.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "974",
                Some("Ada Lovelace"),
                "Ada Lovelace was an English mathematician.\nWork\nShe wrote on the Analytical Engine & its programs."
            ),
            ("978", Some("Charles Babbage"), "Charles Babbage designed the Difference engine."),
        ]
    );
    let line = WIKI[..WIKI.find("<title>Charles").unwrap()]
        .matches('\n')
        .count() as u64;
    assert_eq!(got[1].4, Some(line), "the line of the page's <page> tag");

    // Not a MediaWiki export, and a truncated one: named, pages before kept.
    let p = write(dir.path(), "other.xml", b"<catalog><book/></catalog>");
    let e = walk(&Corpus::open(&p, CorpusConfig::default()).unwrap(), small())
        .1
        .unwrap_err();
    assert!(
        e.to_string().contains("other.xml") && e.to_string().contains("<catalog>"),
        "{e}"
    );
    let cut = &WIKI[..WIKI.find("<title>Charles").unwrap()];
    let p = write(
        dir.path(),
        "cut.xml.gz",
        &compress(Codec::Gzip, cut.as_bytes()),
    );
    let (got, report) = walk(&Corpus::open(&p, CorpusConfig::default()).unwrap(), small());
    let e = report.unwrap_err().to_string();
    assert!(e.contains("cut.xml.gz") && e.contains("truncated"), "{e}");
    assert_eq!(got.len(), 1);
}
