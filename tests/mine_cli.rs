//! `pretext mine` and `pretext pairs --negatives` end to end.

mod common;

use std::path::Path;

use common::{failure_stderr, pretext, tiny_model};
use serde_json::Value;

const SHADES: [&str; 4] = ["red", "green", "blue", "yellow"];

/// 60 documents about colours; 12 queries whose positive is document `d{5i}`.
fn corpus_and_queries(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let text = |i: usize| {
        format!(
            "colour number {i} is a shade of {} seen in painting {}",
            SHADES[i % 4],
            i % 7
        )
    };
    let docs: Vec<String> = (0..60)
        .map(|i| format!(r#"{{"_id": "d{i}", "title": "", "text": "{}"}}"#, text(i)))
        .collect();
    let corpus = dir.join("corpus.jsonl");
    std::fs::write(&corpus, docs.join("\n") + "\n").unwrap();
    let mut lines: Vec<String> = (0..12)
        .map(|i| {
            let d = 5 * i;
            format!(
                r#"{{"anchor": "which shade of {} is in painting {}", "positive": "{}"}}"#,
                SHADES[d % 4],
                d % 7,
                text(d)
            )
        })
        .collect();
    // One line in FlagEmbedding form with answers: no negative may mention blue.
    lines.push(format!(
        r#"{{"query": "a blue colour", "pos": ["{}"], "answers": ["Shade of BLUE"]}}"#,
        text(2)
    ));
    let queries = dir.join("queries.jsonl");
    std::fs::write(&queries, lines.join("\n") + "\n").unwrap();
    (corpus, queries)
}

fn jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn bm25_mining_keeps_the_window_drops_false_negatives_and_is_seeded() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, queries) = corpus_and_queries(dir.path());
    let run = |name: &str, format: &str| {
        let out = dir.path().join(name);
        pretext()
            .args(["mine", "--quiet", "--retriever", "bm25", "--queries"])
            .arg(&queries)
            .arg("--corpus")
            .arg(&corpus)
            .args([
                "--num-negatives",
                "3",
                "--range-min",
                "1",
                "--range-max",
                "20",
            ])
            .args(["--format", format, "--out"])
            .arg(&out)
            .arg("--stats")
            .arg(dir.path().join(format!("{name}.stats.json")))
            .assert()
            .success();
        out
    };
    let ids = run("ids.jsonl", "ids");
    let rows = jsonl(&ids);
    assert_eq!(rows.len(), 13);
    for (i, row) in rows.iter().enumerate().take(12) {
        let negs = row["negatives"].as_array().unwrap();
        assert!(!negs.is_empty(), "row {i}: {row}");
        for n in negs {
            let rank = n["rank"].as_u64().unwrap();
            assert!((2..=20).contains(&rank), "rank {rank} outside the window");
            assert_ne!(n["id"], format!("d{}", 5 * i), "the positive itself");
            assert_eq!(n["kind"], "hard");
        }
    }
    let blue = rows[12]["negatives"].as_array().unwrap();
    assert!(blue
        .iter()
        .all(|n| n["id"].as_str().unwrap()[1..].parse::<usize>().unwrap() % 4 != 2));
    let stats: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("ids.jsonl.stats.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(stats["queries"], 13);
    assert!(stats["filtered"]["answer"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["filtered"]["positive-text"].as_u64().unwrap() > 0);
    for rule in ["absolute-margin", "relative-margin", "rescore"] {
        assert_eq!(stats["filtered"][rule], 0, "{rule} is listed, and off");
    }
    assert!(stats["positive_scores"]["count"] == 13);
    // Same seed, same bytes; the sentence-transformers form carries the texts.
    let again = run("again.jsonl", "ids");
    assert_eq!(std::fs::read(&ids).unwrap(), std::fs::read(&again).unwrap());
    let st = jsonl(&run("st.jsonl", "st"));
    for row in &st {
        let pos = row["positive"].as_str().unwrap();
        for k in ["negative_1", "negative_2", "negative_3"] {
            if let Some(n) = row[k].as_str() {
                assert!(!n.contains(pos));
            }
        }
    }
}

#[test]
fn easy_mix_margins_and_gold_negatives() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, queries) = corpus_and_queries(dir.path());
    let out = dir.path().join("mixed.jsonl");
    let stats = dir.path().join("mixed.json");
    pretext()
        .args(["mine", "--quiet", "--queries"])
        .arg(&queries)
        .arg("--corpus")
        .arg(&corpus)
        .args([
            "--num-negatives",
            "4",
            "--easy-ratio",
            "1",
            "--max-hard",
            "1",
        ])
        .args(["--relative-margin", "0.05", "--format", "ids", "--out"])
        .arg(&out)
        .arg("--stats")
        .arg(&stats)
        .assert()
        .success();
    for row in jsonl(&out) {
        let kinds: Vec<&str> = row["negatives"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.iter().filter(|k| **k == "hard").count() <= 1, "cap");
        // 4 / (1 + 1) = 2 hard wanted, capped at 1; the other 3 are random.
        assert!(
            kinds.iter().filter(|k| **k == "random").count() == 3,
            "{kinds:?}"
        );
    }
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert!(
        s["filtered"]["relative-margin"].as_u64().unwrap() > 0,
        "{s}"
    );
    // Gold: other queries' positives, never the query's own.
    let gold = dir.path().join("gold.jsonl");
    pretext()
        .args(["mine", "--quiet", "--retriever", "gold", "--queries"])
        .arg(&queries)
        .args(["--num-negatives", "2", "--out"])
        .arg(&gold)
        .assert()
        .success();
    let positives: Vec<String> = jsonl(&queries)
        .iter()
        .map(|r| {
            r["positive"]
                .as_str()
                .or(r["pos"][0].as_str())
                .unwrap()
                .to_string()
        })
        .collect();
    for row in jsonl(&gold) {
        for k in ["negative_1", "negative_2"] {
            let n = row[k].as_str().unwrap();
            assert!(
                positives.iter().any(|p| p == n),
                "a gold negative is a positive"
            );
            assert_ne!(n, row["positive"].as_str().unwrap());
        }
    }
}

/// `pretext mine` with `model`'s dense retriever, caching in `cache`: the
/// top 30 candidates, written as ids.
fn dense_mine(model: &Path, queries: &Path, corpus: &Path, cache: &Path) -> assert_cmd::Command {
    let mut cmd = pretext();
    cmd.args(["mine", "--quiet", "--retriever", "dense", "--model"])
        .arg(model)
        .arg("--queries")
        .arg(queries)
        .arg("--corpus")
        .arg(corpus)
        .arg("--cache-dir")
        .arg(cache)
        .args(["--range-max", "30", "--format", "ids"]);
    cmd
}

#[test]
fn dense_mining_caches_corpus_embeddings_and_rescoring_filters() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let (corpus, queries) = corpus_and_queries(dir.path());
    let cache = dir.path().join("cache");
    let run = |name: &str, extra: &[&str]| -> (Vec<u8>, Value) {
        let out = dir.path().join(name);
        let stats = dir.path().join(format!("{name}.json"));
        dense_mine(&model, &queries, &corpus, &cache)
            .args(["--num-negatives", "2"])
            .args(extra)
            .arg("--out")
            .arg(&out)
            .arg("--stats")
            .arg(&stats)
            .assert()
            .success();
        let s = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
        (std::fs::read(&out).unwrap(), s)
    };
    let (first, s1) = run("d1", &[]);
    assert_eq!(s1["corpus_embeddings_cached"], false);
    assert_eq!(s1["hard_negatives"], 26, "{s1}");
    let (second, s2) = run("d2", &[]);
    assert_eq!(
        s2["corpus_embeddings_cached"], true,
        "the second run maps the cache"
    );
    assert_eq!(first, second);
    // int8 embeddings are not the f32 ones: their own cache entry.
    let (_, s4) = run("d4", &["--int8"]);
    assert_eq!(
        s4["corpus_embeddings_cached"], false,
        "int8 reused f32 embeddings"
    );
    assert!(s4["hard_negatives"].as_u64().unwrap() > 0, "{s4}");
    let (_, s5) = run("d5", &["--int8"]);
    assert_eq!(s5["corpus_embeddings_cached"], true);
    // A rescorer that rates everything above the threshold leaves no hard negative.
    let m = model.display().to_string();
    let (_, s3) = run("d3", &["--rescore", &m, "--rescore-threshold=-1.5"]);
    assert_eq!(s3["hard_negatives"], 0, "{s3}");
    assert!(s3["filtered"]["rescore"].as_u64().unwrap() > 0);
    assert_eq!(s3["queries_short_of_negatives"], 13);
    // `pretext pairs` with dense negatives: the pairs, mined with the model.
    let pairs = dir.path().join("dense-pairs.jsonl");
    pretext()
        .args(["pairs", "--quiet", "--task", "crop", "--negatives", "dense"])
        .args(["--num-negatives", "1", "--set"])
        .arg(format!("negatives.model={}", model.display()))
        .arg("--set")
        .arg(format!("negatives.cache_dir={}", cache.display()))
        .arg("--corpus")
        .arg(&corpus)
        .arg("--out")
        .arg(&pairs)
        .assert()
        .success();
    let rows = jsonl(&pairs);
    assert!(rows.len() >= 60);
    assert!(rows.iter().filter(|r| r["negative_1"].is_string()).count() * 2 >= rows.len());
    for r in &rows {
        if let Some(n) = r["negative_1"].as_str() {
            assert!(!n.contains(r["positive"].as_str().unwrap()));
        }
    }
}

#[test]
fn a_bad_query_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q.jsonl");
    std::fs::write(
        &q,
        "{\"anchor\": \"a\", \"positive\": \"b\"}\n{\"anchor\": \"a\"\n",
    )
    .unwrap();
    let err = failure_stderr(pretext().args(["mine", "--queries"]).arg(&q));
    assert!(
        err.contains("q.jsonl:2") && err.contains("malformed JSON"),
        "{err}"
    );
    let err = failure_stderr(pretext().args(["mine", "--queries"]).arg(&q).args([
        "--range-min",
        "10",
        "--range-max",
        "5",
    ]));
    assert!(err.contains("negatives.range_max"), "{err}");
}

#[test]
fn pairs_get_bm25_negatives_the_same_whatever_the_threads() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, _) = corpus_and_queries(dir.path());
    let run = |threads: &str| {
        let out = dir.path().join(format!("pairs-{threads}.jsonl"));
        pretext()
            .args(["pairs", "--quiet", "--task", "crop", "--negatives", "bm25"])
            .args(["--num-negatives", "2", "--threads", threads, "--corpus"])
            .arg(&corpus)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        std::fs::read(out).unwrap()
    };
    let one = run("1");
    assert_eq!(one, run("2"));
    let rows: Vec<Value> = String::from_utf8(one)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows.len() >= 60);
    let with = rows.iter().filter(|r| r["negative_1"].is_string()).count();
    // Templated documents often contain another's crop: those are dropped.
    assert!(with * 2 >= rows.len(), "{with} of {}", rows.len());
    for r in &rows {
        if let Some(n) = r["negative_1"].as_str() {
            assert!(!n.contains(r["positive"].as_str().unwrap()));
        }
    }
}

#[test]
fn empty_positives_are_refused_or_skipped_and_columns_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, queries) = corpus_and_queries(dir.path());
    let mut text = std::fs::read_to_string(&queries).unwrap();
    text.push_str("{\"anchor\": \"a query\", \"positive\": \"   \"}\n");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, &text).unwrap();
    let mine = |args: &[&str], out: &Path| {
        let mut c = pretext();
        c.args(["mine", "--quiet", "--retriever", "random", "--queries"])
            .arg(&bad)
            .arg("--corpus")
            .arg(&corpus)
            .args(["--num-negatives", "12"])
            .args(args)
            .arg("--out")
            .arg(out);
        c
    };
    let out = dir.path().join("mined.jsonl");
    let err = failure_stderr(&mut mine(&[], &out));
    assert!(
        err.contains("bad.jsonl:14") && err.contains("positive is empty"),
        "{err}"
    );
    let run = mine(&["--skip-bad"], &out).assert().success();
    let err = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    assert!(err.contains("skipped 1 bad lines"), "{err}");
    // sentence-transformers reads columns by position.
    let first = std::fs::read_to_string(&out).unwrap();
    let line = first.lines().next().unwrap();
    let pieces: Vec<&str> = line.split("\":").collect();
    let keys: Vec<String> = pieces[..pieces.len() - 1]
        .iter()
        .filter_map(|p| p.rsplit('"').next().map(str::to_string))
        .collect();
    let mut want = vec!["anchor".to_string(), "positive".to_string()];
    want.extend((1..=12).map(|i| format!("negative_{i}")));
    assert_eq!(keys, want, "{line}");
}

/// `mine --retriever run`: a run file written by `pretext bm25 search`, its
/// query ids the pair file's line numbers, gives the very negatives
/// `--retriever bm25` gives; a Tevatron `query_id` is matched too; a run
/// naming no query, or a document the corpus lacks, is refused.
#[test]
fn any_retrievers_run_file_is_a_negative_source() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = d.join("corpus.jsonl");
    let text =
        std::fs::read_to_string(common::root().join("corpora/python-docs/corpus.jsonl")).unwrap();
    std::fs::write(
        &corpus,
        text.lines().take(200).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let pairs = d.join("pairs.jsonl");
    pretext()
        .args(["pairs", "--quiet", "--task", "pseudo-query", "--corpus"])
        .arg(&corpus)
        .arg("--out")
        .arg(&pairs)
        .assert()
        .success();
    let queries: Vec<String> = jsonl(&pairs)
        .iter()
        .enumerate()
        .map(|(i, v)| {
            serde_json::json!({"_id": (i + 1).to_string(), "text": v["anchor"]}).to_string()
        })
        .collect();
    assert!(queries.len() > 100);
    std::fs::write(d.join("queries.jsonl"), queries.join("\n") + "\n").unwrap();
    let run = common::bm25_run(&corpus, &d.join("queries.jsonl"), &[], d, "run");
    let mine = |name: &str, extra: &[&str]| -> String {
        let out = d.join(name);
        pretext()
            .args(["mine", "--quiet", "--num-negatives", "3", "--queries"])
            .arg(&pairs)
            .arg("--corpus")
            .arg(&corpus)
            .args(extra)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        std::fs::read_to_string(out).unwrap()
    };
    let bm25 = mine("bm25.jsonl", &["--retriever", "bm25"]);
    let from_run = mine(
        "run.jsonl",
        &["--retriever", "run", "--run", run.to_str().unwrap()],
    );
    assert!(bm25.lines().filter(|l| l.contains("negative_3")).count() > 100);
    assert_eq!(bm25, from_run, "a BM25 run file mines what BM25 mines");

    // Tevatron lines carry their own query ids.
    let tevatron = d.join("tevatron.jsonl");
    std::fs::write(
        &tevatron,
        r#"{"query_id": "7", "query": "x", "positive_passages": [{"docid": "p", "text": "the positive"}], "negative_passages": []}"#,
    )
    .unwrap();
    let line7 = run.parent().unwrap().join("seven.trec");
    let first = std::fs::read_to_string(&run)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("7 "))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    std::fs::write(&line7, first).unwrap();
    let out = d.join("tev-mined.jsonl");
    pretext()
        .args([
            "mine",
            "--quiet",
            "--format",
            "tevatron",
            "--retriever",
            "run",
            "--run",
        ])
        .arg(&line7)
        .arg("--queries")
        .arg(&tevatron)
        .arg("--corpus")
        .arg(&corpus)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let v = &jsonl(&out)[0];
    assert!(
        !v["negative_passages"].as_array().unwrap().is_empty(),
        "{v}"
    );

    // A run of other queries, and a document the corpus lacks.
    std::fs::write(&line7, "q-none Q0 c-api/abstract#0 1 2.0 t\n").unwrap();
    let refused = |what: &str| {
        let err = failure_stderr(
            pretext()
                .args(["mine", "--quiet", "--retriever", "run", "--run"])
                .arg(&line7)
                .arg("--queries")
                .arg(&pairs)
                .arg("--corpus")
                .arg(&corpus),
        );
        assert!(err.contains(what), "{err}");
    };
    refused("none of the");
    std::fs::write(&line7, "1 Q0 no-such-doc 1 2.0 t\n").unwrap();
    refused("no-such-doc");
    let err = failure_stderr(
        pretext()
            .args(["mine", "--quiet", "--retriever", "run", "--queries"])
            .arg(&pairs)
            .arg("--corpus")
            .arg(&corpus),
    );
    assert!(err.contains("--run"), "{err}");
    // Training reads the pair file `mine` writes, and says so.
    let cfg = common::tiny_config(d, "[negatives]\nsource = \"run\"\nrun = \"run.trec\"");
    let err = failure_stderr(pretext().args(["train", "--quiet", "--config"]).arg(&cfg));
    assert!(err.contains("pretext mine --retriever run"), "{err}");
}

#[test]
fn ann_mining_keeps_its_graph_in_the_cache_and_finds_what_exact_search_finds() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let (corpus, queries) = corpus_and_queries(dir.path());
    let cache = dir.path().join("cache");
    let mine = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        dense_mine(&model, &queries, &corpus, &cache)
            .args(["--num-negatives", "3"])
            .args(extra)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        jsonl(&out)
    };
    // The same negatives at the same ranks; scores are the same dot
    // products summed in another order (the graph's hits are rescored).
    let same = |a: &[Value], b: &[Value]| {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            let (nx, ny) = (
                x["negatives"].as_array().unwrap(),
                y["negatives"].as_array().unwrap(),
            );
            assert_eq!(nx.len(), ny.len(), "{x} vs {y}");
            for (u, v) in nx.iter().zip(ny) {
                assert_eq!((&u["id"], &u["rank"]), (&v["id"], &v["rank"]), "{x} vs {y}");
                let d = u["score"].as_f64().unwrap() - v["score"].as_f64().unwrap();
                assert!(d.abs() < 1e-5, "{u} vs {v}");
            }
        }
    };
    let graphs = || {
        std::fs::read_dir(&cache)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "usearch")
                })
                .count()
            })
            .unwrap_or(0)
    };
    let exact = mine("exact", &[]);
    assert_eq!(graphs(), 0, "exact search builds no graph");
    let ann = mine("ann", &["--index", "ann"]);
    assert_eq!(graphs(), 1, "the graph is saved beside the embeddings");
    // 60 documents under a search beam of 256: the graph reaches them all,
    // so the approximate lists are the exact ones, scores included.
    same(&ann, &exact);
    let modified = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let graph = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "usearch"))
        .unwrap();
    let built = modified(&graph);
    assert_eq!(
        mine("again", &["--index", "ann"]),
        ann,
        "the same graph, the same lists"
    );
    assert_eq!(
        modified(&graph),
        built,
        "the second run maps the graph back"
    );
    // Another graph setting is another file.
    mine(
        "narrow",
        &["--index", "ann", "-s", "negatives.ann.connectivity=4"],
    );
    assert_eq!(graphs(), 2);

    // An index other retrievers cannot use, or graph settings without the
    // graph, are refused rather than ignored.
    let err = failure_stderr(
        pretext()
            .args(["mine", "--quiet", "--retriever", "bm25", "--index", "ann"])
            .arg("--queries")
            .arg(&queries)
            .arg("--corpus")
            .arg(&corpus),
    );
    assert!(
        err.contains("negatives.index") && err.contains("dense"),
        "{err}"
    );
    let err = failure_stderr(
        pretext()
            .args(["mine", "--quiet", "--retriever", "dense", "--model"])
            .arg(&model)
            .args(["-s", "negatives.ann.expansion_search=10"])
            .arg("--queries")
            .arg(&queries)
            .arg("--corpus")
            .arg(&corpus),
    );
    assert!(
        err.contains("negatives.ann") && err.contains("exact"),
        "{err}"
    );
}
