//! RocketQA's data augmentation (Qu et al., 2021): queries without
//! judgements (a user's query log, or pretext's pseudo-queries) are run
//! through a retriever, a cross-encoder rates each query's top passages,
//! and the confident ends become training data: passages it rates above
//! one probability are pseudo-positives, those below another are
//! negatives, and what lies between is dropped as uncertain.

use std::path::Path;

use anyhow::{bail, Context, Result};
use pretext_tasks::negatives::{CorpusTexts, Kind, MiningStats, Picked};

use super::mine::{items_by_text, retrieve, MineProgress, MineSettings, Mined, QueryLine};
use crate::model::cross::{probability, PretrainedCrossEncoder};

/// The thresholds and sizes of a labelling run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelSettings {
    /// Passages per query the cross-encoder rates (the retriever's top).
    pub depth: usize,
    /// A passage above this probability of relevance is a pseudo-positive
    /// (RocketQA: 0.9).
    pub positive: f32,
    /// A passage below this probability is a negative (RocketQA: 0.1).
    pub negative: f32,
    /// Pseudo-positives kept per query, best rated first (each one a pair).
    pub max_positives: usize,
    /// Negatives kept per pair, in the retriever's order (hardest first).
    pub max_negatives: usize,
    /// (query, passage) pairs per cross-encoder batch.
    pub batch_size: usize,
}

impl LabelSettings {
    /// Checks the thresholds make sense.
    pub fn validate(&self) -> Result<()> {
        let p = |x: f32| (0.0..=1.0).contains(&x);
        if !p(self.positive) || !p(self.negative) {
            bail!("--positive and --negative are probabilities in [0, 1]");
        }
        if self.negative > self.positive {
            bail!(
                "--negative {} is above --positive {}: a passage would be both",
                self.negative,
                self.positive
            );
        }
        if self.depth == 0 || self.max_positives == 0 {
            bail!("--depth and --max-positives must be at least 1");
        }
        Ok(())
    }
}

/// What labelling kept and dropped, for the user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelStats {
    /// Queries read.
    pub queries: usize,
    /// Passages rated.
    pub rated: usize,
    /// Passages rated pseudo-positive (before the per-query cap).
    pub positives: usize,
    /// Passages rated negative (before the per-pair cap).
    pub negatives: usize,
    /// Passages between the thresholds, dropped.
    pub uncertain: usize,
    /// Queries with no passage above the positive threshold (no pair).
    pub without_positive: usize,
}

impl std::fmt::Display for LabelStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} queries, {} passages rated: {} pseudo-positive, {} negative, {} uncertain (dropped); {} queries without a positive (no pair)",
            self.queries, self.rated, self.positives, self.negatives, self.uncertain, self.without_positive
        )
    }
}

/// The pairs a labelling run made, ready for `write_mined`: one query line
/// per pseudo-positive, its negatives as picks, and the cross-encoder's
/// scores of the positive and each negative (for `train.teacher`).
pub struct Labelled {
    /// One line per (query, pseudo-positive).
    pub queries: Vec<QueryLine>,
    /// Each line's negatives.
    pub mined: Mined,
    /// Each line's cross-encoder scores: the positive's, then each
    /// negative's (raw relevance, as `mine --teacher-scores` writes them).
    pub scores: Vec<Vec<f32>>,
    /// The counts.
    pub stats: LabelStats,
}

/// Reads unlabeled queries: a BEIR `queries.jsonl` (`_id`, `text`) or a
/// pair file of any layout (its queries; its positives are not used).
pub fn read_unlabeled(path: &Path) -> Result<Vec<QueryLine>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let at = || format!("{}:{}", path.display(), i + 1);
        let line = std::str::from_utf8(line).with_context(|| format!("{}: invalid UTF-8", at()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: malformed JSON", at()))?;
        let field = |names: &[&str]| names.iter().find_map(|n| v[*n].as_str().map(String::from));
        let Some(query) = field(&["text", "anchor", "query"]) else {
            bail!(
                "{}: no query text (`text` of a BEIR query, `anchor` or `query` of a pair line)",
                at()
            );
        };
        out.push(QueryLine {
            line: i + 1,
            id: field(&["_id", "query_id", "qid", "id"]),
            query,
            positive: String::new(),
            answers: Vec::new(),
        });
    }
    if out.is_empty() {
        bail!("{}: no queries", path.display());
    }
    Ok(out)
}

/// Retrieves `depth` passages for each query with `retrieval`'s source,
/// rates them with `ce` and keeps the confident ends.
pub fn label(
    ce: &PretrainedCrossEncoder,
    queries: &[QueryLine],
    corpus: &CorpusTexts,
    retrieval: &MineSettings,
    settings: LabelSettings,
    progress: &mut dyn MineProgress,
) -> Result<Labelled> {
    settings.validate()?;
    if corpus.is_empty() {
        bail!("the corpus has no documents");
    }
    let mut retrieval = retrieval.clone();
    retrieval.negatives.range_min = 0;
    retrieval.negatives.range_max = settings.depth;
    let item_of = items_by_text(corpus);
    let ranked = retrieve(queries, corpus, &item_of, &retrieval, progress)?.ranked;
    progress.stage("rating (cross-encoder)", queries.len());
    let mut stats = LabelStats {
        queries: queries.len(),
        ..LabelStats::default()
    };
    let (mut lines, mut picks, mut scores) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (q, cands)) in queries.iter().zip(&ranked).enumerate() {
        let pairs: Vec<(&str, &str)> = cands
            .iter()
            .map(|c| (q.query.as_str(), corpus.texts[c.item as usize].as_str()))
            .collect();
        let rated = ce.score(&pairs, settings.batch_size)?;
        stats.rated += rated.len();
        let mut positives = Vec::new();
        let mut negatives = Vec::new();
        for (rank, (c, &r)) in cands.iter().zip(&rated).enumerate() {
            let p = probability(r);
            if p > settings.positive {
                positives.push((c.item, r));
            } else if p < settings.negative {
                negatives.push((rank, c.item, r));
            } else {
                stats.uncertain += 1;
            }
        }
        stats.positives += positives.len();
        stats.negatives += negatives.len();
        if positives.is_empty() {
            stats.without_positive += 1;
        }
        positives.sort_by(|a, b| b.1.total_cmp(&a.1));
        negatives.truncate(settings.max_negatives);
        for &(item, r) in positives.iter().take(settings.max_positives) {
            lines.push(QueryLine {
                positive: corpus.texts[item as usize].clone(),
                ..q.clone()
            });
            picks.push(
                negatives
                    .iter()
                    .map(|&(rank, item, r)| Picked {
                        item,
                        kind: Kind::Hard,
                        rank: Some(rank + 1),
                        score: Some(r),
                    })
                    .collect(),
            );
            scores.push(
                std::iter::once(r)
                    .chain(negatives.iter().map(|n| n.2))
                    .collect(),
            );
        }
        progress.advance(i + 1);
    }
    Ok(Labelled {
        queries: lines,
        mined: Mined {
            picks,
            stats: MiningStats::default(),
            cache_hit: None,
        },
        scores,
        stats,
    })
}
