//! BEIR-format evaluation data (`corpus.jsonl`, `queries.jsonl`,
//! `qrels/SPLIT.tsv`) and TREC run files.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use pretext_tasks::corpus::{Corpus, CorpusConfig, Format};
use pretext_tasks::pipeline::{for_each_batch, ReadOptions};

use super::metrics::{Qrels, Run};

/// A document or query: id and text (`title + " " + text` for documents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Identifier.
    pub id: String,
    /// Text to encode.
    pub text: String,
}

/// A BEIR data set.
#[derive(Debug, Clone)]
pub struct Beir {
    /// Documents, `title + " " + text` as BEIR encodes them.
    pub corpus: Vec<Item>,
    /// Queries that have judgements in the split.
    pub queries: Vec<Item>,
    /// Judgements of the split.
    pub qrels: Qrels,
}

/// Reads a JSONL file of `_id`/`text` items (queries).
pub fn read_items(path: &Path) -> Result<Vec<Item>> {
    read_jsonl(path, false)
}

fn read_jsonl(path: &Path, with_title: bool) -> Result<Vec<Item>> {
    let config = CorpusConfig {
        format: Format::Jsonl,
        allow_empty: true,
        ..CorpusConfig::default()
    };
    let corpus =
        Corpus::open(path, config).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for_each_batch(
        &corpus,
        ReadOptions::default(),
        |d| Item {
            id: d.id.to_string(),
            text: match (&d.title, with_title) {
                (Some(t), true) => format!("{t} {}", d.text),
                _ => d.text.to_string(),
            },
        },
        |batch, _| {
            out.extend(batch);
            Ok(())
        },
    )?;
    Ok(out)
}

impl Beir {
    /// Loads `dir` with judgements of `split`.
    pub fn load(dir: &Path, split: &str) -> Result<Beir> {
        let corpus = read_jsonl(&dir.join("corpus.jsonl"), true)?;
        let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
        let text = std::fs::read_to_string(&qrels_path)
            .with_context(|| format!("reading {}", qrels_path.display()))?;
        let qrels = parse_qrels(&text, &qrels_path.display().to_string())?;
        let queries = read_jsonl(&dir.join("queries.jsonl"), false)?
            .into_iter()
            .filter(|q| qrels.contains_key(&q.id))
            .collect::<Vec<_>>();
        if queries.is_empty() {
            bail!(
                "{}: no query of queries.jsonl is judged in {}",
                dir.display(),
                qrels_path.display()
            );
        }
        Ok(Beir {
            corpus,
            queries,
            qrels,
        })
    }
}

/// Parses a qrels TSV (`query-id corpus-id score`, optional header; the
/// 4-column TREC form `qid 0 docid rel` is accepted too).
pub fn parse_qrels(text: &str, origin: &str) -> Result<Qrels> {
    let mut qrels = Qrels::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() || (i == 0 && f[0] == "query-id") {
            continue;
        }
        let (q, d, r) = match f.len() {
            3 => (f[0], f[1], f[2]),
            4 => (f[0], f[2], f[3]),
            _ => bail!("{origin}:{}: expected `query-id corpus-id score`", i + 1),
        };
        let r: i32 = r
            .parse()
            .with_context(|| format!("{origin}:{}: relevance `{r}` is not an integer", i + 1))?;
        qrels
            .entry(q.to_string())
            .or_default()
            .insert(d.to_string(), r);
    }
    Ok(qrels)
}

/// Parses a TREC run (`qid Q0 docid rank score tag`).
pub fn parse_trec_run(text: &str, origin: &str) -> Result<Run> {
    let mut run = Run::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() != 6 {
            bail!("{origin}:{}: expected `qid Q0 docid rank score tag`", i + 1);
        }
        let s: f32 = f[4]
            .parse()
            .with_context(|| format!("{origin}:{}: score `{}`", i + 1, f[4]))?;
        run.entry(f[0].to_string())
            .or_default()
            .push((f[2].to_string(), s));
    }
    Ok(run)
}

/// Writes a run in TREC format, hits in trec order, tagged `tag`.
pub fn write_trec_run(run: &Run, tag: &str, out: &mut impl std::io::Write) -> std::io::Result<()> {
    for (q, hits) in run {
        let mut hits = hits.clone();
        super::metrics::trec_order(&mut hits);
        for (i, (d, s)) in hits.iter().enumerate() {
            writeln!(out, "{q} Q0 {d} {} {s} {tag}", i + 1)?;
        }
    }
    Ok(())
}

/// Means in a stable order, for printing.
pub fn means_table(means: &BTreeMap<String, f64>) -> String {
    means
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join("  ")
}
