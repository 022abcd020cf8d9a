//! Ranking metrics as trec_eval computes them (and pytrec_eval, which BEIR
//! uses): graded gains for nDCG, relevance ≥ 1 for the binary measures,
//! ties broken by document id, descending. Names follow ir-measures.

use std::collections::BTreeMap;

/// Judgements: query id → document id → graded relevance.
pub type Qrels = BTreeMap<String, BTreeMap<String, i32>>;

/// A run: query id → (document id, score) pairs, any order.
pub type Run = BTreeMap<String, Vec<(String, f32)>>;

/// A measure and its cutoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Measure {
    /// nDCG@k with graded gains (trec_eval `ndcg_cut`).
    Ndcg(usize),
    /// Recall@k (`recall`).
    Recall(usize),
    /// Reciprocal rank of the first relevant document within k (`recip_rank`).
    Rr(usize),
    /// Average precision over the top k (`map_cut`).
    Ap(usize),
}

impl Measure {
    /// The ir-measures name, e.g. `nDCG@10`.
    pub fn name(&self) -> String {
        match self {
            Measure::Ndcg(k) => format!("nDCG@{k}"),
            Measure::Recall(k) => format!("R@{k}"),
            Measure::Rr(k) => format!("RR@{k}"),
            Measure::Ap(k) => format!("AP@{k}"),
        }
    }

    /// The measures `pretext eval` reports.
    pub const DEFAULT: [Measure; 5] = [
        Measure::Ndcg(10),
        Measure::Recall(100),
        Measure::Recall(1000),
        Measure::Rr(10),
        Measure::Ap(100),
    ];
}

/// Sorts hits as trec_eval does: score descending, then document id descending.
pub fn trec_order(hits: &mut [(String, f32)]) {
    hits.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
}

/// Lowers each score that is not strictly below the one before it to one
/// float step below that one, so that a run read back in trec order
/// (which breaks ties by document id, descending) keeps the order it was
/// searched in. Anserini's `ScoreTiesAdjusterReranker` does the same at a
/// 1e-4 resolution; a float step changes no score by more than rounding.
pub fn break_ties_in_place(hits: &mut [(String, f32)]) {
    for i in 1..hits.len() {
        let prev = hits[i - 1].1;
        if hits[i].1 >= prev && prev.is_finite() {
            hits[i].1 = step_down(prev);
        }
    }
}

/// The largest float below `x` (finite `x`).
fn step_down(x: f32) -> f32 {
    if x == 0.0 {
        -f32::from_bits(1)
    } else if x > 0.0 {
        f32::from_bits(x.to_bits() - 1)
    } else {
        f32::from_bits(x.to_bits() + 1)
    }
}

/// One measure for one query, `hits` already in trec order.
pub fn score(measure: Measure, judged: &BTreeMap<String, i32>, hits: &[(String, f32)]) -> f64 {
    let rel = |d: &str| judged.get(d).copied().unwrap_or(0);
    let relevant = judged.values().filter(|&&r| r > 0).count();
    match measure {
        Measure::Ndcg(k) => {
            let dcg: f64 = hits
                .iter()
                .take(k)
                .enumerate()
                .map(|(i, (d, _))| rel(d).max(0) as f64 / ((i + 2) as f64).log2())
                .sum();
            let mut ideal: Vec<i32> = judged.values().copied().filter(|&r| r > 0).collect();
            ideal.sort_unstable_by(|a, b| b.cmp(a));
            let idcg: f64 = ideal
                .iter()
                .take(k)
                .enumerate()
                .map(|(i, &r)| r as f64 / ((i + 2) as f64).log2())
                .sum();
            if idcg > 0.0 {
                dcg / idcg
            } else {
                0.0
            }
        }
        Measure::Recall(k) => {
            if relevant == 0 {
                return 0.0;
            }
            hits.iter().take(k).filter(|(d, _)| rel(d) > 0).count() as f64 / relevant as f64
        }
        Measure::Rr(k) => hits
            .iter()
            .take(k)
            .position(|(d, _)| rel(d) > 0)
            .map_or(0.0, |i| 1.0 / (i + 1) as f64),
        Measure::Ap(k) => {
            if relevant == 0 {
                return 0.0;
            }
            let mut found = 0;
            let mut sum = 0.0;
            for (i, (d, _)) in hits.iter().take(k).enumerate() {
                if rel(d) > 0 {
                    found += 1;
                    sum += found as f64 / (i + 1) as f64;
                }
            }
            sum / relevant as f64
        }
    }
}

/// Per-query values and means of `measures`, over the queries that are
/// both judged and in the run (pytrec_eval's convention, which BEIR follows).
pub fn evaluate(
    qrels: &Qrels,
    run: &Run,
    measures: &[Measure],
) -> (
    BTreeMap<String, f64>,
    BTreeMap<String, BTreeMap<String, f64>>,
) {
    let mut per_query = BTreeMap::new();
    for (q, hits) in run {
        let Some(judged) = qrels.get(q) else { continue };
        let mut hits = hits.clone();
        trec_order(&mut hits);
        let values: BTreeMap<String, f64> = measures
            .iter()
            .map(|m| (m.name(), score(*m, judged, &hits)))
            .collect();
        per_query.insert(q.clone(), values);
    }
    let n = per_query.len().max(1) as f64;
    let means = measures
        .iter()
        .map(|m| {
            let name = m.name();
            (
                name.clone(),
                per_query.values().map(|v| v[&name]).sum::<f64>() / n,
            )
        })
        .collect();
    (means, per_query)
}

#[cfg(test)]
mod tests;
