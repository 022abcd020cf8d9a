//! Mutation fuzzing of every reader and loader of user files.
//!
//! Each target starts from a real file (a slice of the shipped corpus, pair
//! lines of all three formats, a BM25 index, a checkpoint written by the
//! trainer's own writer, an embedding-cache file, the quickstart config),
//! mutates it with proptest-drawn edits (truncation, byte flips, inserted
//! bytes, repeated and deleted spans), hands it to the loader and checks the
//! property: no panic (proptest catches one as a failure), and either a
//! clean result or an error that names the file. Shared by `tests/fuzz.rs`
//! (a few thousand cases per target, in CI) and `benches/fuzz.rs` (a
//! million in all).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

/// The check of one mutated file.
type Check = Box<dyn Fn(&Path) -> Result<(), TestCaseError>>;

/// One edit of a file.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Keep the first `at` (of the length, modulo) bytes.
    Truncate(usize),
    /// XOR one byte.
    Flip(usize, u8),
    /// Insert bytes.
    Insert(usize, Vec<u8>),
    /// Repeat `len` bytes from `at` right after themselves (repeated records).
    Repeat(usize, usize),
    /// Delete `len` bytes from `at`.
    Delete(usize, usize),
}

/// Bytes worth inserting: structure characters, invalid UTF-8, a BOM,
/// compression magic, line breaks, or random bytes.
fn insertion() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"\n".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just(b"\xef\xbb\xbf".to_vec()),
        Just(b"\x1f\x8b".to_vec()),
        Just(b"\\u0000".to_vec()),
        Just(vec![0u8; 9]),
        Just(b"]]]\n[[".to_vec()),
        prop::collection::vec(any::<u8>(), 1..12),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => any::<usize>().prop_map(Mutation::Truncate),
        4 => (any::<usize>(), 1u8..=255).prop_map(|(a, b)| Mutation::Flip(a, b)),
        3 => (any::<usize>(), insertion()).prop_map(|(a, b)| Mutation::Insert(a, b)),
        1 => (any::<usize>(), 1usize..400).prop_map(|(a, n)| Mutation::Repeat(a, n)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(a, n)| Mutation::Delete(a, n)),
    ]
}

/// One to six edits.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..6)
}

/// `seed` with `edits` applied in order.
pub fn apply(seed: &[u8], edits: &[Mutation]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        let n = b.len().max(1);
        match e {
            Mutation::Truncate(at) => b.truncate(at % n),
            Mutation::Flip(at, x) => {
                if !b.is_empty() {
                    let i = at % b.len();
                    b[i] ^= x;
                }
            }
            Mutation::Insert(at, bytes) => {
                let i = at % (b.len() + 1);
                b.splice(i..i, bytes.iter().copied());
            }
            Mutation::Repeat(at, len) => {
                let i = at % n;
                let end = (i + len).min(b.len());
                let part = b[i.min(b.len())..end].to_vec();
                b.splice(end..end, part);
            }
            Mutation::Delete(at, len) => {
                let i = at % n;
                let end = (i + len).min(b.len());
                if i < end {
                    b.drain(i..end);
                }
            }
        }
    }
    b
}

/// Fails the case unless `err` names `file` (its file name).
fn names(err: impl std::fmt::Display, file: &Path) -> Result<(), TestCaseError> {
    let msg = err.to_string();
    let name = file.file_name().unwrap().to_string_lossy();
    if msg.contains(name.as_ref()) {
        Ok(())
    } else {
        Err(TestCaseError::fail(format!(
            "error does not name {name}: {msg}"
        )))
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A target: a seed file and the check of one mutated copy of it.
pub struct Target {
    /// Its name in the report.
    pub name: &'static str,
    /// The real file mutations start from.
    pub seed: Vec<u8>,
    /// Where the mutated copy goes.
    pub file: PathBuf,
    /// Loads the mutated copy (already written to `file`) and checks it.
    check: Check,
    /// Keeps the target's temporary folder alive.
    _dir: tempfile::TempDir,
}

impl Target {
    /// Runs `cases` mutated copies; the failure (with its shrunk input), if
    /// any.
    pub fn run(&self, cases: u32) -> Result<(), String> {
        let config = Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 200,
            ..Config::default()
        };
        let mut runner = TestRunner::new_with_rng(
            config,
            proptest::test_runner::TestRng::deterministic_rng(
                proptest::test_runner::RngAlgorithm::ChaCha,
            ),
        );
        let result = runner.run(&mutations(), |edits| {
            let bytes = apply(&self.seed, &edits);
            std::fs::write(&self.file, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            (self.check)(&self.file)
        });
        match result {
            Ok(()) => Ok(()),
            Err(TestError::Fail(why, edits)) => {
                Err(format!("{}: {why} (edits {edits:?})", self.name))
            }
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }
}

/// The first `n` lines of the shipped corpus.
fn corpus_lines(n: usize) -> Vec<u8> {
    let text = std::fs::read_to_string(root().join("corpora/python-docs/corpus.jsonl")).unwrap();
    let mut s: String = text.lines().take(n).collect::<Vec<_>>().join("\n");
    s.push('\n');
    s.into_bytes()
}

fn read_corpus(
    path: &Path,
    format: pretext::pretext_tasks::corpus::Format,
) -> Result<(), TestCaseError> {
    use pretext::pretext_tasks::corpus::{Corpus, CorpusConfig};
    use pretext::pretext_tasks::pipeline::{for_each_batch, ReadOptions};
    let config = CorpusConfig {
        format,
        ..CorpusConfig::default()
    };
    let file = if path.is_dir() {
        path.join("a.jsonl")
    } else {
        path.to_path_buf()
    };
    let corpus = match Corpus::open(path, config) {
        Ok(c) => c,
        Err(e) => return names(e, if path.is_dir() { path } else { &file }),
    };
    for skip_bad in [false, true] {
        let opts = ReadOptions {
            skip_bad,
            ..ReadOptions::default()
        };
        if let Err(e) = for_each_batch(&corpus, opts, |d| d.text.len() + d.id.len(), |_, _| Ok(()))
        {
            // A streamed file's reader thread that panicked ends its file
            // with this error (naming the file): a panic all the same.
            if e.to_string().contains("reader thread stopped") {
                return Err(TestCaseError::fail(format!("reader thread panicked: {e}")));
            }
            names(e, &file)?;
        }
    }
    Ok(())
}

fn target(
    name: &'static str,
    seed: Vec<u8>,
    file_name: &str,
    check: impl Fn(&Path) -> Result<(), TestCaseError> + 'static,
) -> Target {
    let dir = tempfile::tempdir().unwrap();
    Target {
        name,
        seed,
        file: dir.path().join(file_name),
        check: Box::new(check),
        _dir: dir,
    }
}

/// Every target.
pub fn targets() -> Vec<Target> {
    use pretext::pretext_tasks::corpus::Format;
    let mut out = vec![
        target("corpus: JSONL", corpus_lines(12), "c.jsonl", |p| {
            read_corpus(p, Format::Jsonl)
        }),
        target("corpus: plain text", corpus_lines(12), "c.txt", |p| {
            read_corpus(p, Format::Text)
        }),
    ];
    // Streamed files: mutated compressed bytes, WET records, MediaWiki XML.
    out.push(target(
        "corpus: gzip JSONL",
        gzip(&corpus_lines(12)),
        "c.jsonl.gz",
        |p| read_corpus(p, Format::Auto),
    ));
    out.push(target("corpus: WET", wet_records(), "c.warc.wet", |p| {
        read_corpus(p, Format::Auto)
    }));
    out.push(target(
        "corpus: MediaWiki XML",
        std::fs::read(root().join("tests/fixtures/wiki/excerpt.xml")).unwrap(),
        "c.xml",
        |p| read_corpus(p, Format::Auto),
    ));
    // A folder: the mutated JSONL file beside a clean text file.
    let folder = {
        let t = target("corpus: folder", corpus_lines(8), "a.jsonl", |p| {
            read_corpus(p.parent().unwrap(), Format::Auto)
        });
        std::fs::write(t.file.with_file_name("b.txt"), b"a clean line\nanother\n").unwrap();
        t
    };
    out.push(folder);
    out.push(target(
        "pair lines (3 formats)",
        pair_lines(),
        "pairs.jsonl",
        |p| {
            match pretext::negatives::mine::read_queries(p, false) {
                Ok(_) => Ok(()),
                Err(e) => names(format!("{e:#}"), p),
            }?;
            // The training reader of pair files takes the same bytes.
            match pretext::train::data::PairSource::file(p, true) {
                Ok(_) => Ok(()),
                Err(e) => names(format!("{e:#}"), p),
            }
        },
    ));
    out.push(target("BM25 index", bm25_index(), "i.bm25", |p| {
        use pretext::pretext_tasks::bm25::{Analyzer, Bm25Index};
        match Bm25Index::load(p) {
            Ok(idx) => {
                let a = Analyzer::new(idx.config());
                let _ = idx.search(&a, "read a file line by line", 10);
                Ok(())
            }
            Err(e) => names(e, p),
        }
    }));
    out.push(checkpoint_target());
    out.push(target("embedding cache", cache_file(), "k.emb", |p| {
        let cache = pretext::negatives::EmbeddingCache::new(p.parent().unwrap());
        match cache.load("k") {
            Ok(Some(e)) => {
                if e.rows() > 0 {
                    let _ = e.row(e.rows() - 1);
                }
                Ok(())
            }
            Ok(None) => Err(TestCaseError::fail("written file not found")),
            Err(e) => names(format!("{e:#}"), p),
        }
    }));
    out.push(target(
        "config file",
        std::fs::read(root().join("configs/quickstart.toml")).unwrap(),
        "q.toml",
        |p| match pretext::config::ConfigBuilder::new(Some(p)).and_then(|b| b.build()) {
            Ok(_) => Ok(()),
            Err(e) => names(e, p),
        },
    ));
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Three WET records (warcinfo and two conversions), as Common Crawl
/// writes them.
fn wet_records() -> Vec<u8> {
    let mut out = String::new();
    for (kind, id, body) in [
        ("warcinfo", "0", "isPartOf: CC-MAIN\r\n"),
        ("conversion", "1", "A page of text.\nIts second line."),
        ("conversion", "2", "Another page."),
    ] {
        out.push_str(&format!(
            "WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Date: 2024-01-01T00:00:00Z\r\nWARC-Record-ID: <urn:uuid:{id}>\r\nContent-Length: {}\r\n\r\n{body}\r\n\r\n",
            body.len()
        ));
    }
    out.into_bytes()
}

/// Pair lines in the sentence-transformers, FlagEmbedding and Tevatron
/// layouts, as `pretext pairs` writes them.
fn pair_lines() -> Vec<u8> {
    br#"{"anchor": "how to open a file", "positive": "open() returns a file object", "negative_1": "lists are mutable"}
{"query": "what is a tuple", "pos": ["a tuple is an immutable sequence"], "neg": ["dicts map keys"], "answers": ["tuple"]}
{"query_id": "3", "query": "read lines", "positive_passages": [{"docid": "d1", "title": "io", "text": "readline reads one line"}], "negative_passages": []}
"#
    .to_vec()
}

/// A BM25 index of 40 sections of the shipped corpus, as `bm25 index`
/// saves it.
fn bm25_index() -> Vec<u8> {
    use pretext::pretext_tasks::bm25::{Bm25Config, Bm25Index};
    let text = String::from_utf8(corpus_lines(40)).unwrap();
    let docs: Vec<(String, String)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (format!("d{i}"), l.to_string()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("i.bm25");
    Bm25Index::build(&docs, Bm25Config::default())
        .save(&p)
        .unwrap();
    std::fs::read(p).unwrap()
}

fn cache_file() -> Vec<u8> {
    use pretext::negatives::{EmbeddingCache, Embeddings};
    let dir = tempfile::tempdir().unwrap();
    let cache = EmbeddingCache::new(dir.path());
    let e = Embeddings::new((0..48).map(|i| i as f32 / 7.0).collect(), 6, 8).unwrap();
    cache.store("k", &e).unwrap();
    std::fs::read(dir.path().join("k.emb")).unwrap()
}

/// A checkpoint of a small BERT written by the trainer's own writer; the
/// mutated file is its `model.safetensors` (its `state.json` is kept).
fn checkpoint_target() -> Target {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use pretext::model::{BertConfig, DualEncoder, Head, Pooling};
    use pretext::train::checkpoint::{self, State, Tensors};
    use pretext::train::RunDir;
    let mut bert = BertConfig::preset("tiny", 60).unwrap();
    bert.hidden_size = 16;
    bert.intermediate_size = 32;
    bert.num_attention_heads = 2;
    bert.num_hidden_layers = 1;
    bert.max_position_embeddings = 16;
    let varmap = VarMap::new();
    let head = Head {
        pooling: Pooling::Mean,
        projection: None,
        normalize: false,
    };
    DualEncoder::new(
        &bert,
        head,
        true,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let state = State {
        step: 3,
        queue_next: 0,
        queue_filled: 0,
        config: toml::to_string(&pretext::config::Config::default()).unwrap(),
        files: Vec::new(),
        ance_refreshed_at: None,
    };
    let tensors = Tensors {
        model: pretext::model::weights::all_tensors(&varmap),
        ..Tensors::default()
    };
    let ckpt = checkpoint::save(&run, &state, &tensors, 1).unwrap();
    let seed = std::fs::read(ckpt.join("model.safetensors")).unwrap();
    Target {
        name: "checkpoint",
        seed,
        file: ckpt.join("model.safetensors"),
        check: Box::new(move |p| match checkpoint::load(p.parent().unwrap()) {
            Ok(_) => Ok(()),
            Err(e) => names(format!("{e:#}"), p),
        }),
        _dir: dir,
    }
}

/// `--set key=value` with keys of the real configuration (and a few
/// made-up ones) and values of any shape: a clean configuration or an
/// error, never a panic.
pub fn run_set_overrides(cases: u32) -> Result<(), String> {
    let mut keys: Vec<String> =
        pretext::train::run_dir::flatten(&pretext::config::Config::default())
            .unwrap()
            .into_keys()
            .collect();
    keys.extend([
        "nope".into(),
        "train.loss.nope".into(),
        "train".into(),
        "".into(),
    ]);
    let value = prop_oneof![
        Just("abc".to_string()),
        Just("-1".to_string()),
        Just("nan".to_string()),
        Just("1e400".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("\"x\"".to_string()),
        Just("{type = \"triplet\"}".to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        "[ -~]{0,12}",
    ];
    let n = keys.len();
    let strategy = prop::collection::vec((0..n, value), 1..4);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    runner
        .run(&strategy, |sets| {
            let mut b = pretext::config::ConfigBuilder::new(None).unwrap();
            for (k, v) in &sets {
                if let Err(e) = b.set_pair(&format!("{}={v}", keys[*k])) {
                    prop_assert!(!e.to_string().is_empty());
                }
            }
            if let Err(e) = b.build() {
                prop_assert!(e.to_string().contains("pretext config error"));
            }
            Ok(())
        })
        .map_err(|e| format!("--set: {e}"))
}
