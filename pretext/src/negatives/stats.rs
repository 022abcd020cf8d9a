//! What a mining run saw, for the report users check before training on a
//! mined set (as sentence-transformers' `mine_hard_negatives` prints).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::select::Rule;

/// Counts and scores of a mining run; runs over parts merge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MiningStats {
    /// Queries mined.
    pub queries: u64,
    /// Candidates of rank windows looked at.
    pub candidates: u64,
    /// Candidates (and easy draws) dropped, per rule.
    pub filtered: BTreeMap<Rule, u64>,
    /// Hard negatives kept.
    pub hard: u64,
    /// Easy (random or gold) negatives kept.
    pub easy: u64,
    /// Queries that got fewer negatives than asked for.
    pub short_queries: u64,
    /// The positives' scores.
    pub positive_scores: Vec<f32>,
    /// The kept hard negatives' scores.
    pub negative_scores: Vec<f32>,
}

impl MiningStats {
    /// Counts one drop.
    pub fn dropped(&mut self, rule: Rule) {
        *self.filtered.entry(rule).or_insert(0) += 1;
    }

    /// Adds another part's counts.
    pub fn merge(&mut self, other: MiningStats) {
        self.queries += other.queries;
        self.candidates += other.candidates;
        for (r, n) in other.filtered {
            *self.filtered.entry(r).or_insert(0) += n;
        }
        self.hard += other.hard;
        self.easy += other.easy;
        self.short_queries += other.short_queries;
        self.positive_scores.extend(other.positive_scores);
        self.negative_scores.extend(other.negative_scores);
    }

    /// The report as JSON: counts, drops per rule (every rule listed) and
    /// score summaries.
    pub fn to_json(&self) -> serde_json::Value {
        let filtered: BTreeMap<&str, u64> = Rule::ALL
            .iter()
            .map(|r| (r.name(), self.filtered.get(r).copied().unwrap_or(0)))
            .collect();
        serde_json::json!({
            "queries": self.queries,
            "candidates_seen": self.candidates,
            "filtered": filtered,
            "hard_negatives": self.hard,
            "easy_negatives": self.easy,
            "queries_short_of_negatives": self.short_queries,
            "positive_scores": Summary::of(&self.positive_scores),
            "negative_scores": Summary::of(&self.negative_scores),
        })
    }
}

/// Count, mean and quantiles of a list of scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Scores.
    pub count: usize,
    /// Mean.
    pub mean: f32,
    /// Minimum.
    pub min: f32,
    /// 25th percentile.
    pub p25: f32,
    /// Median.
    pub p50: f32,
    /// 75th percentile.
    pub p75: f32,
    /// Maximum.
    pub max: f32,
}

impl Summary {
    /// The summary of `scores` (`None` when empty). Quantiles are the
    /// nearest-rank ones.
    pub fn of(scores: &[f32]) -> Option<Summary> {
        if scores.is_empty() {
            return None;
        }
        let mut s = scores.to_vec();
        s.sort_by(f32::total_cmp);
        let q = |p: f64| s[((p * (s.len() - 1) as f64).round() as usize).min(s.len() - 1)];
        Some(Summary {
            count: s.len(),
            mean: (s.iter().map(|&x| x as f64).sum::<f64>() / s.len() as f64) as f32,
            min: s[0],
            p25: q(0.25),
            p50: q(0.5),
            p75: q(0.75),
            max: s[s.len() - 1],
        })
    }
}

impl fmt::Display for MiningStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "queries {}  candidates seen {}  hard kept {}  easy kept {}  short of negatives {}",
            self.queries, self.candidates, self.hard, self.easy, self.short_queries
        )?;
        let drops: Vec<String> = Rule::ALL
            .iter()
            .map(|r| format!("{} {}", r.name(), self.filtered.get(r).unwrap_or(&0)))
            .collect();
        writeln!(f, "filtered: {}", drops.join(", "))?;
        for (name, scores) in [
            ("positive", &self.positive_scores),
            ("hard negative", &self.negative_scores),
        ] {
            if let Some(s) = Summary::of(scores) {
                writeln!(
                    f,
                    "{name} scores: n {}  mean {:.4}  min {:.4}  p25 {:.4}  p50 {:.4}  p75 {:.4}  max {:.4}",
                    s.count, s.mean, s.min, s.p25, s.p50, s.p75, s.max
                )?;
            }
        }
        Ok(())
    }
}
