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
    /// What is odd but allowed (judgements naming documents or queries the
    /// set does not have; trec_eval counts them as it does), for the user.
    pub warnings: Vec<String>,
}

/// Reads a JSONL file of `_id`/`text` items (queries).
pub fn read_items(path: &Path) -> Result<Vec<Item>> {
    read_jsonl(path, false)
}

/// Reads a BEIR `corpus.jsonl` (`_id`, `title`, `text`): each item's text
/// is `title + " " + text`, as BEIR encodes documents.
pub fn read_corpus(path: &Path) -> Result<Vec<Item>> {
    read_jsonl(path, true)
}

/// Ids that occur twice are an error naming the id and both lines: a
/// duplicate document would be counted twice by every metric (R@100 of 2).
fn check_unique(path: &Path, items: &[(Item, Option<u64>)]) -> Result<()> {
    let mut seen: std::collections::HashMap<&str, Option<u64>> = std::collections::HashMap::new();
    for (item, line) in items {
        if let Some(first) = seen.insert(&item.id, *line) {
            let at = |l: Option<u64>| l.map_or("?".into(), |l| l.to_string());
            bail!(
                "{}: the id `{}` occurs twice, on lines {} and {}; ids must be unique",
                path.display(),
                item.id,
                at(first),
                at(*line)
            );
        }
    }
    Ok(())
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
        |d| {
            (
                Item {
                    id: d.id.to_string(),
                    text: match (&d.title, with_title) {
                        (Some(t), true) => format!("{t} {}", d.text),
                        _ => d.text.to_string(),
                    },
                },
                d.line,
            )
        },
        |batch, _| {
            out.extend(batch);
            Ok(())
        },
    )?;
    check_unique(path, &out)?;
    Ok(out.into_iter().map(|(item, _)| item).collect())
}

impl Beir {
    /// Loads `dir` with judgements of `split`.
    pub fn load(dir: &Path, split: &str) -> Result<Beir> {
        let corpus = read_jsonl(&dir.join("corpus.jsonl"), true)?;
        let qrels_path = qrels_path(dir, split);
        let qrels = load_qrels(dir, split)?;
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
        let warnings = unknown_judgements(&qrels, &corpus, &queries, &qrels_path);
        Ok(Beir {
            corpus,
            queries,
            qrels,
            warnings,
        })
    }
}

/// Warnings for judgements of queries that `queries.jsonl` lacks and of
/// documents the corpus lacks (kept, as trec_eval keeps them: a missing
/// relevant document still counts against recall).
fn unknown_judgements(
    qrels: &Qrels,
    corpus: &[Item],
    queries: &[Item],
    path: &Path,
) -> Vec<String> {
    let docs: std::collections::HashSet<&str> = corpus.iter().map(|d| d.id.as_str()).collect();
    let asked: std::collections::HashSet<&str> = queries.iter().map(|q| q.id.as_str()).collect();
    let lost_queries = qrels.keys().filter(|q| !asked.contains(q.as_str())).count();
    let (mut lost_docs, mut judged) = (0, 0);
    for judgements in qrels.values() {
        for d in judgements.keys() {
            judged += 1;
            lost_docs += usize::from(!docs.contains(d.as_str()));
        }
    }
    let mut out = Vec::new();
    if lost_queries > 0 {
        out.push(format!(
            "{}: {lost_queries} of {} judged queries are not in queries.jsonl (not run)",
            path.display(),
            qrels.len()
        ));
    }
    if lost_docs > 0 {
        out.push(format!(
            "{}: {lost_docs} of {judged} judgements name documents the corpus lacks (they still count as relevant)",
            path.display()
        ));
    }
    out
}

fn qrels_path(dir: &Path, split: &str) -> std::path::PathBuf {
    dir.join("qrels").join(format!("{split}.tsv"))
}

/// Reads `dir/qrels/SPLIT.tsv` alone (scoring a run file needs no corpus).
pub fn load_qrels(dir: &Path, split: &str) -> Result<Qrels> {
    let path = qrels_path(dir, split);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_qrels(&text, &path.display().to_string())
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
    let mut seen = std::collections::HashSet::new();
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
        if !s.is_finite() {
            bail!(
                "{origin}:{}: score `{}` is not a finite number",
                i + 1,
                f[4]
            );
        }
        if !seen.insert((f[0].to_string(), f[2].to_string())) {
            // trec_eval refuses such a run too: which score would count?
            bail!(
                "{origin}:{}: document `{}` is listed twice for query `{}`",
                i + 1,
                f[2],
                f[0]
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn set(dir: &Path, corpus: &str, queries: &str, qrels: &str) {
        std::fs::create_dir_all(dir.join("qrels")).unwrap();
        std::fs::write(dir.join("corpus.jsonl"), corpus).unwrap();
        std::fs::write(dir.join("queries.jsonl"), queries).unwrap();
        std::fs::write(dir.join("qrels/test.tsv"), qrels).unwrap();
    }

    #[test]
    fn duplicate_ids_are_errors_and_unknown_judgements_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let q = "{\"_id\": \"q1\", \"text\": \"question\"}\n";
        set(
            dir.path(),
            "{\"_id\": \"d1\", \"text\": \"a\"}\n{\"_id\": \"d2\", \"text\": \"b\"}\n{\"_id\": \"d1\", \"text\": \"c\"}\n",
            q,
            "query-id\tcorpus-id\tscore\nq1\td1\t1\n",
        );
        let e = Beir::load(dir.path(), "test").unwrap_err().to_string();
        assert!(
            e.contains("corpus.jsonl") && e.contains("`d1`") && e.contains("lines 1 and 3"),
            "{e}"
        );
        set(
            dir.path(),
            "{\"_id\": \"d1\", \"text\": \"a\"}\n",
            q,
            "q1\td1\t1\nq1\tgone\t1\nq9\td1\t1\n",
        );
        let b = Beir::load(dir.path(), "test").unwrap();
        assert_eq!(b.warnings.len(), 2, "{:?}", b.warnings);
        assert!(
            b.warnings[0].contains("1 of 2 judged queries"),
            "{:?}",
            b.warnings
        );
        assert!(
            b.warnings[1].contains("1 of 3 judgements"),
            "{:?}",
            b.warnings
        );
    }
}
