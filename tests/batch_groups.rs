//! `batch.group_by`: every batch from one source file or one k-means
//! cluster of the init model's embeddings; the settings nothing would use
//! are refused.

mod common;

use common::{failure_stderr, metrics, pretext, tiny_config, tiny_model};
use pretext::pretext_tasks::corpus::{Corpus, CorpusConfig};
use pretext::train::data::{BatchStream, Grouping, PairSource, StreamConfig};

/// Two files of 40 one-line documents each: ordinals 0..40 and 40..80.
fn two_files(dir: &std::path::Path) -> std::path::PathBuf {
    let folder = dir.join("two");
    std::fs::create_dir_all(&folder).unwrap();
    for (name, topic) in [("a.txt", "rivers"), ("b.txt", "engines")] {
        let lines: Vec<String> = (0..40)
            .map(|i| format!("Document {i} about {topic}. It has a few words in it. And more words after them."))
            .collect();
        std::fs::write(folder.join(name), lines.join("\n") + "\n").unwrap();
    }
    folder
}

/// The document ordinals of the stream's first `n` batches of 8.
fn batches(folder: &std::path::Path, groups: Grouping, n: usize) -> Vec<Vec<u64>> {
    let config = pretext::config::ConfigBuilder::new(None)
        .unwrap()
        .set_pair("task.type=\"crop\"")
        .unwrap()
        .build()
        .unwrap();
    let source = PairSource::Task {
        corpus: Corpus::open(folder, CorpusConfig::default()).unwrap(),
        task: config.task.clone(),
        augment: Default::default(),
        read: Default::default(),
        held_out: None,
        groups,
    };
    let tok = pretext::tokenize::PairTokenizer::new(
        &common::shipped_tokenizer(32),
        32,
        32,
        Default::default(),
    )
    .unwrap();
    let rules = pretext::config::BatchSection {
        group_by: Some(pretext::config::GroupBy::File),
        ..Default::default()
    };
    let mut stream = BatchStream::start(
        source,
        tok,
        StreamConfig {
            seed: 1,
            batch_size: 8,
            // A shuffle wide enough to mix the two files' pairs.
            shuffle_buffer: 64,
            hard_negatives: 0,
            own_negatives: 0,
            skip_batches: 0,
            rank: 0,
            world: 1,
            rules,
        },
        None,
        None,
    )
    .unwrap();
    (0..n)
        .map(|_| {
            stream
                .next_batch()
                .unwrap()
                .sources
                .into_iter()
                .map(Option::unwrap)
                .collect()
        })
        .collect()
}

#[test]
fn every_batch_comes_from_one_file_or_one_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let folder = two_files(dir.path());
    let by_file = batches(&folder, Grouping::File, 12);
    for b in &by_file {
        assert!(b.iter().all(|&o| (o < 40) == (b[0] < 40)), "{b:?}");
    }
    assert!(by_file.iter().any(|b| b[0] < 40) && by_file.iter().any(|b| b[0] >= 40));
    // Clusters given by ordinal: even and odd documents.
    let parity = (0..80u64).map(|o| (o, (o % 2) as u32)).collect();
    for b in &batches(&folder, Grouping::Cluster(std::sync::Arc::new(parity)), 12) {
        assert!(b.iter().all(|&o| o % 2 == b[0] % 2), "{b:?}");
    }
    // Ungrouped, the shuffle mixes the files within a batch.
    let mixed = batches(&folder, Grouping::None, 12);
    assert!(
        mixed
            .iter()
            .any(|b| b.iter().any(|&o| (o < 40) != (b[0] < 40))),
        "{mixed:?}"
    );
}

#[test]
fn cluster_groups_train_from_the_init_model_and_bad_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let cfg = tiny_config(dir.path(), "");
    let train = |extra: &[String], out: &str| {
        let mut cmd = pretext();
        cmd.args(["train", "--quiet", "--steps", "3", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(dir.path().join(out));
        for e in extra {
            cmd.args(["--set", e]);
        }
        cmd
    };
    let init = format!("model.init={}", model.display());
    train(
        &[
            init.clone(),
            "batch.group_by=\"cluster\"".into(),
            "batch.clusters=4".into(),
        ],
        "clustered",
    )
    .assert()
    .success();
    assert_eq!(metrics(&dir.path().join("clustered")).len(), 3);
    train(&["batch.group_by=\"file\"".into()], "files")
        .assert()
        .success();
    for (extra, words) in [
        (vec!["batch.group_by=\"cluster\"".to_string()], "model.init"),
        (vec!["batch.clusters=4".to_string()], "batch.clusters"),
        (
            vec!["batch.group_by=\"file\"".into(), "batch.clusters=4".into()],
            "batch.clusters",
        ),
        (vec!["batch.group_by=\"topic\"".to_string()], "group_by"),
    ] {
        let err = failure_stderr(&mut train(&extra, "bad"));
        assert!(err.contains(words), "{extra:?}: {err}");
    }
}
