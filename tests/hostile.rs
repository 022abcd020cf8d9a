//! Hostile input from the command line: a full disk, a task that finds
//! nothing, a compressed dump, absurd thread counts, a corrupted index.
//! Each is an error that says what and where, with nothing left half
//! written.

mod common;

use std::path::{Path, PathBuf};

use common::{failure_stderr, pretext, tiny_config};

/// A tmpfs of `kib` KiB mounted at `dir/full` (unmounted on drop), or
/// `None` where mounting is not allowed (then the test says so and skips).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, kib: usize) -> Option<SmallDisk> {
        let p = dir.join("full");
        std::fs::create_dir_all(&p).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&p)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipping: cannot mount a small tmpfs here (needs root)");
            return None;
        }
        Some(SmallDisk(p))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walk(dir) {
        out.push(e.strip_prefix(dir).unwrap().display().to_string());
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.clone());
            if p.is_dir() {
                out.extend(walk(&p));
            }
        }
    }
    out
}

#[test]
fn a_full_disk_names_the_file_and_leaves_no_partial_checkpoint_or_export() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "");
    // A good run outside, to export onto the full disk later.
    pretext()
        .args(["train", "--quiet", "--steps", "2", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    let Some(disk) = SmallDisk::mount(dir.path(), 600) else {
        return;
    };
    let run = disk.0.join("run");
    let err = failure_stderr(
        pretext()
            .args(["train", "--quiet", "--steps", "2", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&run),
    );
    assert!(
        err.contains("No space left")
            && err.contains("safetensors")
            && err.contains("step-00000002"),
        "{err}"
    );
    let left = entries(&run);
    assert!(
        !left
            .iter()
            .any(|e| e.contains("step-") || e.contains(".tmp")),
        "partial checkpoint left: {left:?}"
    );
    std::fs::remove_dir_all(&run).unwrap();
    let out = disk.0.join("model");
    let err = failure_stderr(
        pretext()
            .args(["export", "--run"])
            .arg(dir.path().join("run"))
            .arg("--out")
            .arg(&out),
    );
    assert!(
        err.contains("No space left") && err.contains("model"),
        "{err}"
    );
    assert!(entries(&disk.0).is_empty(), "left: {:?}", entries(&disk.0));
}

#[test]
fn a_task_that_finds_nothing_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // One long line without a sentence end: no ICT pair.
    let corpus = dir.path().join("one.txt");
    std::fs::write(&corpus, "word ".repeat(5000) + "\n").unwrap();
    let err = failure_stderr(
        pretext()
            .args(["pairs", "--quiet", "--task", "ict", "--corpus"])
            .arg(&corpus)
            .arg("--out")
            .arg(dir.path().join("p.jsonl")),
    );
    assert!(
        err.contains("made no pairs from 1 documents") && err.contains("two sentences"),
        "{err}"
    );
}

#[test]
fn compressed_dumps_thread_counts_and_corrupted_indexes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("dump.jsonl.gz");
    std::fs::write(&gz, b"\x1f\x8b\x08\x00\x00\x00\x00\x00").unwrap();
    let err = failure_stderr(
        pretext()
            .args(["pairs", "--quiet", "--task", "crop", "--corpus"])
            .arg(&gz)
            .arg("--out")
            .arg(dir.path().join("p.jsonl")),
    );
    assert!(
        err.contains("dump.jsonl.gz") && err.contains("gzip stream breaks"),
        "{err}"
    );

    let err = failure_stderr(
        pretext()
            .args([
                "pairs",
                "--quiet",
                "--task",
                "crop",
                "--threads",
                "100000",
                "--out",
            ])
            .arg(dir.path().join("p.jsonl")),
    );
    assert!(
        err.contains("threads = 100000") && err.contains("cap"),
        "{err}"
    );

    let index = dir.path().join("docs.bm25");
    let corpus = dir.path().join("c.jsonl");
    let text =
        std::fs::read_to_string(common::root().join("corpora/python-docs/corpus.jsonl")).unwrap();
    std::fs::write(
        &corpus,
        text.lines().take(50).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    pretext()
        .args(["bm25", "index", "--corpus"])
        .arg(&corpus)
        .arg("--out")
        .arg(&index)
        .assert()
        .success();
    let mut bytes = std::fs::read(&index).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 64].fill(0xff);
    std::fs::write(&index, &bytes).unwrap();
    let queries = dir.path().join("q.jsonl");
    std::fs::write(&queries, "{\"_id\": \"1\", \"text\": \"read a file\"}\n").unwrap();
    let out = pretext()
        .args(["bm25", "search", "--index"])
        .arg(&index)
        .arg("--queries")
        .arg(&queries)
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains("docs.bm25") && err.contains("checksum"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
