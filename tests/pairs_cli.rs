//! `pretext pairs` end to end: determinism across threads, shards, formats,
//! bad input and config errors, through the real binary.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

const CORPUS: &str = "corpora/python-docs/corpus.jsonl";
const TASKS: [&str; 6] = ["crop", "ict", "spans", "neighbors", "pseudo-query", "mix"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pretext() -> Command {
    let mut c = Command::cargo_bin("pretext").unwrap();
    c.current_dir(root());
    c
}

/// Runs `pretext pairs` with `args` and returns the output file's bytes.
fn pairs(dir: &Path, name: &str, args: &[&str]) -> Vec<u8> {
    let out = dir.join(name);
    pretext()
        .args(["pairs", "--quiet", "--out"])
        .arg(&out)
        .args(args)
        .assert()
        .success();
    std::fs::read(out).unwrap()
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    std::str::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn same_seed_same_bytes_whatever_the_threads() {
    let dir = tempfile::tempdir().unwrap();
    for task in TASKS {
        let base = [
            "--task",
            task,
            "--corpus",
            CORPUS,
            "--augment",
            "delete:0.1",
            "--with-meta",
        ];
        let one = pairs(
            dir.path(),
            "1.jsonl",
            &[&base[..], &["--threads", "1"]].concat(),
        );
        let two = pairs(
            dir.path(),
            "2.jsonl",
            &[&base[..], &["--threads", "2"]].concat(),
        );
        assert!(one.len() > 10_000, "{task}: too little output");
        assert!(one == two, "{task}: output differs between 1 and 2 threads");
        let other = pairs(
            dir.path(),
            "3.jsonl",
            &[&base[..], &["--seed", "7"]].concat(),
        );
        if task != "neighbors" {
            assert!(one != other, "{task}: the seed changed nothing");
        }
    }
}

#[test]
fn shards_together_give_the_whole_output() {
    let dir = tempfile::tempdir().unwrap();
    let base = ["--task", "spans", "--corpus", CORPUS, "--with-meta"];
    let mut whole: Vec<String> = String::from_utf8(pairs(dir.path(), "all.jsonl", &base))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let mut union = Vec::new();
    let mut docs = std::collections::HashSet::new();
    for i in 0..3 {
        let shard = format!("{i}/3");
        let out = pairs(
            dir.path(),
            "s.jsonl",
            &[&base[..], &["--shard", &shard]].concat(),
        );
        for v in lines(&out) {
            let id = v["meta"]["doc_id"].as_str().unwrap().to_string();
            docs.insert((id, i));
        }
        union.extend(String::from_utf8(out).unwrap().lines().map(String::from));
    }
    let ids: std::collections::HashSet<_> = docs.iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(ids.len(), docs.len(), "a document appeared in two shards");
    whole.sort();
    union.sort();
    assert_eq!(whole, union);
}

#[test]
fn every_format_has_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "--task",
        "spans",
        "--corpus",
        CORPUS,
        "--set",
        "task.hard_negative=true",
    ];
    let st = lines(&pairs(
        dir.path(),
        "st.jsonl",
        &[&base[..], &["--format", "st"]].concat(),
    ));
    assert!(st
        .iter()
        .all(|v| v["anchor"].is_string() && v["positive"].is_string()));
    assert!(st.iter().any(|v| v["negative_1"].is_string()));
    let flag = lines(&pairs(
        dir.path(),
        "f.jsonl",
        &[&base[..], &["--format", "flag"]].concat(),
    ));
    assert!(flag
        .iter()
        .all(|v| v["query"].is_string() && v["pos"].as_array().unwrap().len() == 1));
    assert!(flag
        .iter()
        .any(|v| !v["neg"].as_array().unwrap().is_empty()));
    let tev = lines(&pairs(
        dir.path(),
        "t.jsonl",
        &[&base[..], &["--format", "tevatron", "--with-meta"]].concat(),
    ));
    let mut ids = std::collections::HashSet::new();
    for v in &tev {
        assert!(
            ids.insert(v["query_id"].as_str().unwrap().to_string()),
            "query_id not unique"
        );
        let p = &v["positive_passages"][0];
        assert!(p["docid"].is_string() && p["title"].is_string() && p["text"].is_string());
        assert!(v["negative_passages"].is_array());
        assert_eq!(v["meta"]["task"], "spans");
    }
    assert_eq!(st.len(), flag.len());
    assert_eq!(st.len(), tev.len());
}

#[test]
fn spans_pairs_share_their_span_on_the_shipped_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let out = pairs(
        dir.path(),
        "s.jsonl",
        &[
            "--task",
            "spans",
            "--corpus",
            CORPUS,
            "--with-meta",
            "--format",
            "tevatron",
        ],
    );
    let corpus: std::collections::HashMap<String, String> =
        std::fs::read_to_string(root().join(CORPUS))
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (
                    v["_id"].as_str().unwrap().into(),
                    v["text"].as_str().unwrap().into(),
                )
            })
            .collect();
    let norm = |s: &str| {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rows = lines(&out);
    assert!(rows.len() > 1000);
    for v in rows {
        let text = &corpus[v["meta"]["doc_id"].as_str().unwrap()];
        let s = &v["meta"]["shared_span"];
        let span =
            &text[s["start"].as_u64().unwrap() as usize..s["end"].as_u64().unwrap() as usize];
        let positive = norm(v["positive_passages"][0]["text"].as_str().unwrap());
        assert!(
            format!(" {positive} ").contains(&format!(" {} ", norm(span))),
            "positive lacks span {span:?}"
        );
    }
}

#[test]
fn bad_input_stops_with_file_and_line_or_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    let good =
        r#"{"_id": "a", "text": "one two three four five six seven eight nine ten eleven twelve"}"#;
    std::fs::write(
        &bad,
        format!("{good}\n{{\"_id\": \"b\", \"text\": \n{good}\n"),
    )
    .unwrap();
    let out = dir.path().join("o.jsonl");
    let assert = pretext()
        .args(["pairs", "--task", "crop", "--corpus"])
        .arg(&bad)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure();
    let err = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    let at = format!("bad.jsonl:2 (byte {})", good.len() + 1);
    assert!(err.contains(&at) && err.contains("malformed JSON"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().lines().count(),
        1,
        "the good record before the bad one is kept"
    );

    let assert = pretext()
        .args(["pairs", "--task", "crop", "--skip-bad", "--corpus"])
        .arg(&bad)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let err = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert!(
        err.contains("skipped 1 bad records") && err.contains("bad.jsonl:2"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);
}

#[test]
fn config_and_flag_errors_name_the_culprit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[task]\ntype = \"crop\"\nwindow = \"big\"\n").unwrap();
    let assert = pretext()
        .args(["pairs", "--config"])
        .arg(&cfg)
        .assert()
        .failure();
    let err = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert!(
        err.contains("c.toml") && err.contains("field `window`") && err.contains("line"),
        "{err}"
    );
    for (args, needle) in [
        (vec!["--task", "nope"], "unknown task"),
        (vec!["--format", "csv"], "pair format"),
        (vec!["--shard", "2/2"], "shard"),
        (vec!["--augment", "blur:0.1"], "augmentation"),
        (vec!["--corpus", "missing.jsonl"], "missing.jsonl"),
    ] {
        let assert = pretext()
            .arg("pairs")
            .args(&args)
            .arg("--out")
            .arg(dir.path().join("o"))
            .assert()
            .failure();
        let err = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn writes_to_stdout_and_reads_plain_text_folders() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..50)
        .map(|i| format!("Paragraph {i} has words one two three four five six seven eight.\n\n"))
        .collect();
    std::fs::create_dir_all(dir.path().join("docs/sub")).unwrap();
    std::fs::write(dir.path().join("docs/sub/a.txt"), &text).unwrap();
    std::fs::write(dir.path().join("docs/b.md"), &text).unwrap();
    let assert = pretext()
        .args([
            "pairs",
            "--quiet",
            "--task",
            "neighbors",
            "--set",
            "task.piece_words=5",
            "--set",
            "task.min_words=2",
            "--doc-sep",
            "blank",
            "--with-meta",
            "--out",
            "-",
            "--corpus",
        ])
        .arg(dir.path().join("docs"))
        .assert()
        .success();
    let rows = lines(&assert.get_output().stdout);
    assert_eq!(rows.len(), 100 * 2);
    assert_eq!(rows[0]["meta"]["doc_id"], "b.md@0");
    assert_eq!(
        rows.last().unwrap()["meta"]["doc_id"].as_str().unwrap(),
        format!(
            "sub/a.txt@{}",
            text.len() - text.lines().nth(98).unwrap().len() - 2
        )
    );
}

/// The README's pairs command reads the shipped corpus folder: every file in
/// it must be a corpus file.
#[test]
fn the_readme_command_runs_on_the_shipped_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = pairs(dir.path(), "p.jsonl", &["--config", "configs/spans.toml"]);
    assert!(lines(&out).len() > 1000);
}

#[test]
fn salient_mask_finds_rare_words_by_the_corpus_s_document_frequency() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.jsonl");
    let mut docs = vec![format!(
        "{{\"id\": \"0\", \"text\": \"{}\"}}",
        "hypersonic ".repeat(40).trim()
    )];
    for i in 1..10 {
        docs.push(format!(
            "{{\"id\": \"{i}\", \"text\": \"{}\"}}",
            "the wind ".repeat(20).trim()
        ));
    }
    std::fs::write(&corpus, docs.join("\n") + "\n").unwrap();
    let cfg = dir.path().join("c.toml");
    let write = |rare: f64| {
        std::fs::write(
            &cfg,
            format!(
                "[corpus]\npath = \"{}\"\n[task]\ntype = \"crop\"\nwindow = 40\n[augment]\napply_to = \"both\"\n\
                 [[augment.ops]]\ntype = \"salient-mask\"\np = 1.0\ntoken = \"_\"\nrare = {rare}\n",
                corpus.display()
            ),
        )
        .unwrap();
    };
    let run = |rare: f64| {
        write(rare);
        let args = ["--config", cfg.to_str().unwrap()];
        String::from_utf8(pairs(dir.path(), "p.jsonl", &args)).unwrap()
    };
    let out = run(0.1);
    // "hypersonic" is in one document of ten: masked everywhere; the
    // common words never.
    assert!(out.contains("_") && out.contains("wind"), "{out}");
    assert!(!out.contains("hypersonic"), "{out}");
    // Without the cue nothing here is salient.
    let out = run(0.0);
    assert!(out.contains("hypersonic") && !out.contains("\"_"), "{out}");
}

#[test]
fn compressed_dumps_give_the_uncompressed_files_pairs() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(root().join(CORPUS)).unwrap();
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&bytes).unwrap();
        e.finish().unwrap()
    };
    let bz = {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        e.write_all(&bytes).unwrap();
        e.finish().unwrap()
    };
    let zst = zstd::encode_all(&bytes[..], 3).unwrap();
    let args = [
        "--task",
        "spans",
        "--with-meta",
        "--shard",
        "1/2",
        "--corpus",
    ];
    // Each file alone in a folder, named as its tool names it.
    let args_for = |ext: &str, data: &[u8]| {
        let p = dir.path().join(ext).join(format!("corpus.jsonl{ext}"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.push(p.display().to_string());
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        pairs(dir.path(), &format!("out{ext}"), &a)
    };
    let plain = args_for("", &bytes);
    assert!(lines(&plain).len() > 1000);
    for (name, data) in [(".gz", &gz), (".zst", &zst), (".bz2", &bz)] {
        assert!(
            args_for(name, data) == plain,
            "{name}: other bytes than the plain file's"
        );
    }
}

#[test]
fn a_mediawiki_dump_gives_pairs_from_its_articles() {
    let dir = tempfile::tempdir().unwrap();
    let out = pairs(
        dir.path(),
        "wiki.jsonl",
        &[
            "--task",
            "crop",
            "--with-meta",
            "--set",
            "task.min_words=3",
            "--corpus",
            "tests/fixtures/wiki/excerpt.xml",
        ],
    );
    let ids: std::collections::BTreeSet<String> = lines(&out)
        .iter()
        .map(|l| l["meta"]["doc_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["974", "978"]);
}
