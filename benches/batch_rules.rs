//! The cost of `[batch]` rules: 1M pairs (four per document, as the
//! `spans` task cuts them, one positive in a hundred repeated) composed
//! into batches of 8,192 with no rule, `no_duplicates`, `one_per_document`
//! and both, timed in the same run; the pairs a batch would otherwise share
//! are counted too.
//!
//! `cargo bench --bench batch_rules` prints a table.

use std::time::Instant;

use pretext::config::BatchSection;
use pretext::train::compose::{Composer, Keyed};

const PAIRS: usize = 1_000_000;
const BATCH: usize = 8192;

struct Pair {
    query: String,
    positive: String,
    document: u64,
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
}

fn pairs() -> Vec<Pair> {
    (0..PAIRS)
        .map(|i| Pair {
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
    println!("| rules | million pairs/s | time vs no rule | same-document pairs in batches | repeated positives in batches |");
    println!("|---|---:|---:|---:|---:|");
    let mut base = None;
    for (name, rules) in [
        ("none", BatchSection::default()),
        (
            "no_duplicates",
            BatchSection {
                no_duplicates: true,
                ..Default::default()
            },
        ),
        (
            "one_per_document",
            BatchSection {
                one_per_document: true,
                ..Default::default()
            },
        ),
        (
            "both",
            BatchSection {
                no_duplicates: true,
                one_per_document: true,
            },
        ),
    ] {
        let input = pairs();
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
        println!(
            "| {name} | {:.1} | {:.2}x | {d} | {t} |",
            PAIRS as f64 / secs / 1e6,
            secs / base
        );
    }
}
