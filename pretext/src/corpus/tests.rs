use std::borrow::Cow;
use std::path::Path;

use super::*;
use crate::pipeline::{for_each_batch, ReadOptions};
use crate::shard::Shard;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, bytes).unwrap();
    p
}

fn docs(corpus: &Corpus) -> Vec<Result<(String, Option<String>, String)>> {
    corpus
        .records()
        .map(|r| {
            let r = r?;
            let d = corpus.document(&r)?;
            Ok((
                d.id.into_owned(),
                d.title.map(Cow::into_owned),
                d.text.into_owned(),
            ))
        })
        .collect()
}

#[test]
fn plain_text_lines_and_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "a.txt",
        b"first doc\r\n\n  \nsecond doc\nthird\n\nfourth",
    );
    let lines = Corpus::open(&p, CorpusConfig::default()).unwrap();
    assert!(matches!(&lines.sources()[0].body, Body::Mapped(b) if b.is_mapped()));
    let got: Vec<_> = docs(&lines).into_iter().map(|d| d.unwrap().2).collect();
    assert_eq!(got, ["first doc", "second doc", "third", "fourth"]);
    let recs: Vec<_> = lines.records().map(|r| r.unwrap()).collect();
    assert_eq!((recs[1].line, recs[1].offset), (4, 15));
    assert_eq!(docs(&lines)[1].as_ref().unwrap().0, "a.txt@15");
    let second = lines.document(&recs[1]).unwrap();
    assert_eq!(second.line, Some(4));
    assert_eq!(second.place(), "a.txt@15 (line 4)");

    let cfg = CorpusConfig {
        doc_sep: DocSep::Blank,
        ..Default::default()
    };
    let blocks = Corpus::open(&p, cfg).unwrap();
    let got: Vec<_> = docs(&blocks).into_iter().map(|d| d.unwrap().2).collect();
    assert_eq!(got, ["first doc", "second doc\nthird", "fourth"]);
}

#[test]
fn jsonl_fields_escapes_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "c.jsonl",
        br#"{"_id": "d1", "title": "T", "text": "plain", "extra": [1, {"x": 2}]}
{"text": "esc\"aped\n", "_id": 7, "title": null}
{"_id": "d3", "text": "no title"}
"#,
    );
    let c = Corpus::open(&p, CorpusConfig::default()).unwrap();
    let recs: Vec<_> = c.records().map(|r| r.unwrap()).collect();
    let d0 = c.document(&recs[0]).unwrap();
    assert!(
        matches!(d0.text, Cow::Borrowed(_)),
        "unescaped text must borrow the map"
    );
    assert_eq!(
        (&*d0.id, d0.title.as_deref(), &*d0.text),
        ("d1", Some("T"), "plain")
    );
    let d1 = c.document(&recs[1]).unwrap();
    assert_eq!(
        (&*d1.id, d1.title.as_deref(), &*d1.text),
        ("7", None, "esc\"aped\n")
    );
    assert_eq!(c.document(&recs[2]).unwrap().title, None);

    let cfg = CorpusConfig {
        fields: JsonFields {
            id: "id".into(),
            title: None,
            text: "body".into(),
        },
        ..Default::default()
    };
    let p2 = write(
        dir.path(),
        "d.jsonl",
        br#"{"id": "x", "body": "b", "title": "ignored"}"#,
    );
    let c2 = Corpus::open(&p2, cfg).unwrap();
    let d = docs(&c2).remove(0).unwrap();
    assert_eq!(d, ("x".into(), None, "b".into()));
}

fn first_error(bytes: &[u8], name: &str) -> Error {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), name, bytes);
    let c = Corpus::open(&p, CorpusConfig::default()).unwrap();
    let err = docs(&c).into_iter().find_map(|d| d.err());
    err.expect("an error")
}

#[test]
fn bad_input_names_file_line_and_offset() {
    let e = first_error(b"{\"text\": \"ok\"}\n{\"text\": \"a\", oops}\n", "m.jsonl");
    assert!(
        matches!(&e, Error::MalformedJson { at, .. } if at.line == 2 && at.offset == 15),
        "{e}"
    );
    assert!(e.to_string().contains("m.jsonl:2 (byte 15)"), "{e}");

    let e = first_error(b"{\"title\": \"t\"}\n", "f.jsonl");
    assert!(e.to_string().contains("missing field `text`"), "{e}");
    let e = first_error(b"{\"text\": 3}\n", "f.jsonl");
    assert!(e.to_string().contains("field `text` is a number"), "{e}");
    let e = first_error(b"{\"text\": \"   \"}\n", "f.jsonl");
    assert!(matches!(e, Error::EmptyDocument { .. }), "{e}");

    let e = first_error(b"good line\nbad \xff\xfe line\n", "u.txt");
    assert!(
        matches!(&e, Error::InvalidUtf8 { at, bad_offset: 14 } if at.line == 2),
        "{e}"
    );

    let e = first_error(b"{\"text\": \"ok\"}\n{\"text\": \"cut sho", "t.jsonl");
    assert!(e.to_string().contains("truncated"), "{e}");

    let e = first_error(b"", "empty.txt");
    assert!(matches!(e, Error::EmptyFile { .. }), "{e}");
    let e = first_error(b"\n \n", "blank.jsonl");
    assert!(matches!(e, Error::EmptyFile { .. }), "{e}");
}

#[test]
fn missing_paths_and_empty_folders_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = Corpus::open(dir.path().join("nope.jsonl"), CorpusConfig::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("nope.jsonl"), "{e}");
    write(dir.path(), "x.bin", b"not a corpus file");
    let e = Corpus::open(dir.path(), CorpusConfig::default())
        .err()
        .unwrap();
    assert!(matches!(e, Error::EmptyFolder { .. }), "{e}");
}

#[test]
fn folders_are_read_in_path_order() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "b/2.txt", b"b2\n");
    write(
        dir.path(),
        "a.jsonl",
        b"{\"_id\": \"j\", \"text\": \"json\"}\n",
    );
    write(dir.path(), "b/1.txt", b"b1\n");
    write(dir.path(), "c.bin", b"skipped");
    let c = Corpus::open(dir.path(), CorpusConfig::default()).unwrap();
    let ids: Vec<_> = docs(&c).into_iter().map(|d| d.unwrap().0).collect();
    assert_eq!(ids, ["j", "b/1.txt@0", "b/2.txt@0"]);
}

#[test]
fn skip_bad_counts_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.jsonl",
        b"{\"text\": \"a\"}\n{bad\n{\"text\": \"b\"}\n{\"x\": 1}\n\xff\n",
    );
    write(dir.path(), "z.txt", b"");
    let c = Corpus::open(dir.path(), CorpusConfig::default()).unwrap();
    let strict = for_each_batch(
        &c,
        ReadOptions::default(),
        |d| d.text.to_string(),
        |_, _| Ok(()),
    );
    assert!(strict.is_err());
    let mut texts = Vec::new();
    let opts = ReadOptions {
        skip_bad: true,
        ..Default::default()
    };
    let report = for_each_batch(
        &c,
        opts,
        |d| d.text.to_string(),
        |b, _| {
            texts.extend(b);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(texts, ["a", "b"]);
    assert_eq!((report.documents, report.skipped), (2, 4));
    assert!(
        report.skipped_examples[0].contains("m.jsonl:2"),
        "{:?}",
        report.skipped_examples
    );
    let _ = p;
}

#[test]
fn shards_cover_every_document_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..1000).map(|i| format!("document {i}\n")).collect();
    write(dir.path(), "a.txt", text.as_bytes());
    write(dir.path(), "b.txt", b"one more\nand another\n");
    let c = Corpus::open(dir.path(), CorpusConfig::default()).unwrap();
    let read = |shard: Shard| {
        let mut ids = Vec::new();
        let opts = ReadOptions {
            shard,
            batch_records: 7,
            ..Default::default()
        };
        for_each_batch(
            &c,
            opts,
            |d| d.id.to_string(),
            |b, _| {
                ids.extend(b);
                Ok(())
            },
        )
        .unwrap();
        ids
    };
    let all = read(Shard::ALL);
    assert_eq!(all.len(), 1002);
    for n in [2, 3, 7] {
        let mut union: Vec<String> = (0..n)
            .flat_map(|i| read(Shard::new(i, n).unwrap()))
            .collect();
        assert_eq!(union.len(), all.len(), "{n} shards");
        union.sort();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(union, sorted);
    }
}

#[test]
fn byte_order_marks_symlinks_and_compressed_files() {
    let dir = tempfile::tempdir().unwrap();
    // A BOM is not part of the first record, in JSONL or in plain text.
    let p = write(
        dir.path(),
        "bom.jsonl",
        b"\xef\xbb\xbf{\"_id\": \"a\", \"text\": \"first\"}\n",
    );
    let c = Corpus::open(&p, CorpusConfig::default()).unwrap();
    assert_eq!(docs(&c)[0].as_ref().unwrap().2, "first");
    let p = write(dir.path(), "bom.txt", b"\xef\xbb\xbffirst line\nsecond\n");
    let c = Corpus::open(&p, CorpusConfig::default()).unwrap();
    let got: Vec<_> = docs(&c).into_iter().map(|d| d.unwrap().2).collect();
    assert_eq!(got, ["first line", "second"]);

    // A folder follows its symbolic links, to files and to folders.
    let outside = tempfile::tempdir().unwrap();
    let target = write(outside.path(), "elsewhere.txt", b"linked doc\n");
    write(outside.path(), "sub/inner.txt", b"inner doc\n");
    let corpus = dir.path().join("corpus");
    write(&corpus, "own.txt", b"own doc\n");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&target, corpus.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("sub"), corpus.join("sub")).unwrap();
        let c = Corpus::open(&corpus, CorpusConfig::default()).unwrap();
        let texts: Vec<_> = docs(&c).into_iter().map(|d| d.unwrap().2).collect();
        assert_eq!(texts, ["linked doc", "own doc", "inner doc"]);
        // A link back to the folder is a loop: an error, not a hang.
        std::os::unix::fs::symlink(&corpus, corpus.join("sub2")).unwrap();
        let e = Corpus::open(&corpus, CorpusConfig::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains("corpus"), "{e}");
    }

    // An xz file says so instead of "invalid UTF-8 at byte 1" (gzip, zstd
    // and bzip2 are read: `stream_tests`).
    let p = write(dir.path(), "d.jsonl.xz", b"\xfd7zXZ\x00rest");
    let e = Corpus::open(&p, CorpusConfig::default()).err().unwrap();
    assert!(matches!(e, Error::Compressed { .. }), "{e}");
    assert!(
        e.to_string().contains("xz") && e.to_string().contains("d.jsonl.xz"),
        "{e}"
    );
}
