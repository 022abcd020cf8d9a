//! The cost of `[batch]` rules: 1M pairs (four per document, as the
//! `spans` task cuts them, one positive in a hundred repeated) composed
//! into batches of 8,192 with no rule, `no_duplicates`, `one_per_document`,
//! both, and `group_by` (by file: 100 files of 2,500 documents in turn; by
//! cluster: 64 clusters interleaved through the stream, as topics are),
//! timed in the same run; the pairs a batch would otherwise share are
//! counted too, and the groups a grouped batch draws from.
//!
//! `cargo bench --bench batch_rules` prints a table.

use std::time::Instant;

use pretext::config::{BatchSection, GroupBy};
use pretext::train::compose::{Composer, Keyed};

const PAIRS: usize = 1_000_000;
const BATCH: usize = 8192;

struct Pair {
    query: String,
    positive: String,
    document: u64,
    group: Option<u64>,
}

impl Keyed for Pair {
    fn query(&self) -> &str {
        &self.query
    }
    fn positive(&self) -> &str {
        &self.positive
    }
    fn document(&self) -> Option<u64> {
        Some(self.document)
    }
    fn group(&self) -> Option<u64> {
        self.group
    }
}

/// How a row of the table groups documents.
#[derive(Clone, Copy)]
enum Groups {
    None,
    Files,
    Clusters,
}

fn pairs(groups: Groups) -> Vec<Pair> {
    (0..PAIRS)
        .map(|i| Pair {
            group: match groups {
                Groups::None => None,
                Groups::Files => Some((i / 4 / 2500) as u64),
                // A multiplicative hash: clusters in no order.
                Groups::Clusters => {
                    Some(((i / 4) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
                }
            },
            query: format!("query {i} about the passage that follows it in the corpus"),
            positive: if i % 100 == 0 {
                "a passage repeated across the corpus, as boilerplate is".to_string()
            } else {
                format!("passage {i}: a few dozen words of text standing in for a real positive")
            },
            document: (i / 4) as u64,
        })
        .collect()
}

/// Pairs of each batch that share a document or a positive with an earlier
/// pair of the batch.
fn clashes(batch: &[Pair]) -> (usize, usize) {
    let mut docs = std::collections::HashSet::new();
    let mut texts = std::collections::HashSet::new();
    let (mut d, mut t) = (0, 0);
    for p in batch {
        d += usize::from(!docs.insert(p.document));
        t += usize::from(!texts.insert(p.positive.as_str()));
    }
    (d, t)
}

fn main() {
    println!("| rules | million pairs/s | time vs no rule | same-document pairs in batches | repeated positives in batches | groups per batch |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut base = None;
    let grouped = |g| BatchSection {
        group_by: Some(g),
        ..Default::default()
    };
    for (name, rules, groups) in [
        ("none", BatchSection::default(), Groups::None),
        (
            "no_duplicates",
            BatchSection {
                no_duplicates: true,
                ..Default::default()
            },
            Groups::None,
        ),
        (
            "one_per_document",
            BatchSection {
                one_per_document: true,
                ..Default::default()
            },
            Groups::None,
        ),
        (
            "both",
            BatchSection {
                no_duplicates: true,
                one_per_document: true,
                ..Default::default()
            },
            Groups::None,
        ),
        ("group_by = file", grouped(GroupBy::File), Groups::Files),
        (
            "group_by = cluster (64)",
            grouped(GroupBy::Cluster),
            Groups::Clusters,
        ),
    ] {
        let input = pairs(groups);
        let started = Instant::now();
        let mut composer = Composer::new(rules, BATCH);
        let mut batches = Vec::new();
        for p in input {
            batches.extend(composer.offer(p).expect("rules that can be met"));
        }
        let secs = started.elapsed().as_secs_f64();
        let (d, t) = batches
            .iter()
            .map(|b| clashes(b))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let base = *base.get_or_insert(secs);
        let spread = batches
            .iter()
            .map(|b| {
                let g: std::collections::HashSet<Option<u64>> = b.iter().map(|p| p.group).collect();
                g.len()
            })
            .max()
            .unwrap_or(0);
        println!(
            "| {name} | {:.1} | {:.2}x | {d} | {t} | {} |",
            PAIRS as f64 / secs / 1e6,
            secs / base,
            if matches!(groups, Groups::None) {
                "-".to_string()
            } else {
                format!("at most {spread}")
            }
        );
    }
}
