//! The retrieve-then-rerank cascade: a cross-encoder rescores each query's
//! first `depth` hits of a run, and they are put in its order. Hits below
//! the depth follow in their first-stage order, so recall deeper than the
//! depth is what the first stage found.

use std::collections::HashMap;

use anyhow::{bail, Result};

use super::beir::Item;
use super::metrics::Run;
use crate::model::cross::PretrainedCrossEncoder;

/// What a rerank did, for the user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RerankStats {
    /// Queries reranked.
    pub queries: usize,
    /// (query, document) pairs the cross-encoder scored.
    pub pairs: usize,
    /// Queries of the run with no text in the queries file (kept as they
    /// were).
    pub missing_queries: usize,
}

/// Hits of one query, best first (highest score, then document id, as
/// trec_eval orders a run).
fn ranked(hits: &[(String, f32)]) -> Vec<(String, f32)> {
    let mut h = hits.to_vec();
    h.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    h
}

/// Reranks every query of `run` found in `queries`, `depth` hits deep,
/// scoring `batch_size` pairs at a time; `progress` is told how many
/// queries are done. A hit naming a document `corpus` lacks is an error
/// (the cross-encoder needs its text).
pub fn rerank(
    ce: &PretrainedCrossEncoder,
    run: &Run,
    queries: &[Item],
    corpus: &[Item],
    depth: usize,
    batch_size: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<(Run, RerankStats)> {
    let queries: HashMap<&str, &str> = queries
        .iter()
        .map(|q| (q.id.as_str(), q.text.as_str()))
        .collect();
    let docs: HashMap<&str, &str> = corpus
        .iter()
        .map(|d| (d.id.as_str(), d.text.as_str()))
        .collect();
    let mut stats = RerankStats::default();
    let mut out = Run::new();
    for (done, (qid, hits)) in run.iter().enumerate() {
        let hits = ranked(hits);
        let Some(&query) = queries.get(qid.as_str()) else {
            stats.missing_queries += 1;
            out.insert(qid.clone(), hits);
            continue;
        };
        let head = &hits[..depth.min(hits.len())];
        let mut pairs = Vec::with_capacity(head.len());
        for (d, _) in head {
            match docs.get(d.as_str()) {
                Some(&text) => pairs.push((query, text)),
                None => {
                    bail!("the run ranks document `{d}` for query `{qid}`, which the corpus lacks")
                }
            }
        }
        let scores = ce.score(&pairs, batch_size)?;
        stats.queries += 1;
        stats.pairs += pairs.len();
        let mut reranked: Vec<(String, f32)> = head
            .iter()
            .zip(scores)
            .map(|((d, _), s)| (d.clone(), s))
            .collect();
        reranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        // The tail keeps its order under the lowest reranked score.
        let floor = reranked.last().map_or(0.0, |h| h.1);
        reranked.extend(
            hits[head.len()..]
                .iter()
                .enumerate()
                .map(|(i, (d, _))| (d.clone(), floor - 1.0 - i as f32)),
        );
        out.insert(qid.clone(), reranked);
        progress(done + 1);
    }
    Ok((out, stats))
}
