//! Batches without false negatives by construction: every pair of a batch
//! is every other pair's negative, so two pairs with the same query or
//! positive text (`batch.no_duplicates`), or cut from the same document
//! (`batch.one_per_document`: the `spans` task makes four per document),
//! teach the model to push apart what belongs together.
//!
//! A pair that would break a rule waits for the next batch instead of
//! being dropped, and waiting pairs go first into every new batch, so the
//! stream keeps all its pairs and its order otherwise. Membership is by
//! 64-bit hashes of the texts and document numbers: exact duplicates, in
//! constant time per pair at any batch size.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

use rustc_hash::{FxHashMap, FxHashSet, FxHasher};

use crate::config::BatchSection;

/// What a pair is checked by: its texts and its source document.
pub trait Keyed {
    /// The query text.
    fn query(&self) -> &str;
    /// The positive text.
    fn positive(&self) -> &str;
    /// The document the pair was cut from, if known.
    fn document(&self) -> Option<u64>;
    /// The group whose batches the pair joins under `batch.group_by`
    /// (`None`: a group of its own for all such pairs).
    fn group(&self) -> Option<u64>;
}

/// Fills batches of `size` under the rules of `[batch]`.
pub struct Composer<P> {
    rules: BatchSection,
    size: usize,
    pending: Vec<P>,
    queries: FxHashSet<u64>,
    positives: FxHashSet<u64>,
    documents: FxHashSet<u64>,
    waiting: VecDeque<P>,
    /// `batch.group_by`: a composer per group, by key.
    groups: FxHashMap<Option<u64>, Composer<P>>,
}

/// Pairs held back before the rules are called impossible to meet.
const MAX_WAITING_BATCHES: usize = 64;

fn hash(text: &str) -> u64 {
    let mut h = FxHasher::default();
    text.hash(&mut h);
    h.finish()
}

impl<P: Keyed> Composer<P> {
    /// A composer of batches of `size` pairs.
    pub fn new(rules: BatchSection, size: usize) -> Composer<P> {
        Composer {
            rules,
            size,
            pending: Vec::with_capacity(size),
            queries: FxHashSet::default(),
            positives: FxHashSet::default(),
            documents: FxHashSet::default(),
            waiting: VecDeque::new(),
            groups: FxHashMap::default(),
        }
    }

    /// Pairs in the batch being filled and waiting for a later one.
    pub fn held(&self) -> usize {
        self.pending.len()
            + self.waiting.len()
            + self.groups.values().map(Composer::held).sum::<usize>()
    }

    /// Takes the next pair of the stream; returns the batches it completes
    /// (none, usually one).
    pub fn offer(&mut self, pair: P) -> Result<Vec<Vec<P>>, String> {
        if self.rules.group_by.is_some() {
            let (rules, size) = (
                BatchSection {
                    group_by: None,
                    ..self.rules
                },
                self.size,
            );
            return self
                .groups
                .entry(pair.group())
                .or_insert_with(|| Composer::new(rules, size))
                .offer(pair);
        }
        let mut done = Vec::new();
        let placed = self.try_place(pair, &mut done);
        if !placed && self.waiting.len() >= MAX_WAITING_BATCHES * self.size {
            let (without, what) = if self.rules.one_per_document {
                (
                    "a second pair of one document or a repeated text",
                    "documents",
                )
            } else {
                ("a repeated text", "texts")
            };
            return Err(format!(
                "[batch] rules cannot be met: {} pairs wait for a batch of {} without {without}; the data has too few distinct {what} for this batch size",
                self.waiting.len(),
                self.size,
            ));
        }
        Ok(done)
    }

    /// Places `pair` in the batch, or among the waiting ones (false).
    fn try_place(&mut self, pair: P, done: &mut Vec<Vec<P>>) -> bool {
        if !self.fits(&pair) {
            self.waiting.push_back(pair);
            return false;
        }
        self.insert(pair);
        if self.close_if_full(done) {
            // The waiting pairs first, in their order, into the new batch.
            for p in std::mem::take(&mut self.waiting) {
                if self.fits(&p) {
                    self.insert(p);
                    self.close_if_full(done);
                } else {
                    self.waiting.push_back(p);
                }
            }
        }
        true
    }

    /// Hands over the batch being filled when it is full, and starts the
    /// next one empty.
    fn close_if_full(&mut self, done: &mut Vec<Vec<P>>) -> bool {
        if self.pending.len() < self.size {
            return false;
        }
        done.push(std::mem::take(&mut self.pending));
        self.queries.clear();
        self.positives.clear();
        self.documents.clear();
        true
    }

    fn fits(&self, pair: &P) -> bool {
        let dup = self.rules.no_duplicates
            && (self.queries.contains(&hash(pair.query()))
                || self.positives.contains(&hash(pair.positive())));
        let same_doc = self.rules.one_per_document
            && pair.document().is_some_and(|d| self.documents.contains(&d));
        !dup && !same_doc
    }

    fn insert(&mut self, pair: P) {
        if self.rules.no_duplicates {
            self.queries.insert(hash(pair.query()));
            self.positives.insert(hash(pair.positive()));
        }
        if self.rules.one_per_document {
            if let Some(d) = pair.document() {
                self.documents.insert(d);
            }
        }
        self.pending.push(pair);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct P(String, String, Option<u64>);

    impl Keyed for P {
        fn query(&self) -> &str {
            &self.0
        }
        fn positive(&self) -> &str {
            &self.1
        }
        fn document(&self) -> Option<u64> {
            self.2
        }
        /// Documents in three groups by number (a file, a cluster).
        fn group(&self) -> Option<u64> {
            self.2.map(|d| d % 3)
        }
    }

    fn run(rules: BatchSection, size: usize, pairs: Vec<P>) -> Result<Vec<Vec<P>>, String> {
        Ok(run_held(rules, size, pairs)?.0)
    }

    /// The batches, and how many pairs are still held at the end.
    fn run_held(
        rules: BatchSection,
        size: usize,
        pairs: Vec<P>,
    ) -> Result<(Vec<Vec<P>>, usize), String> {
        let mut c = Composer::new(rules, size);
        let mut out = Vec::new();
        for p in pairs {
            out.extend(c.offer(p)?);
        }
        Ok((out, c.held()))
    }

    /// Four pairs per document, documents in order: what `spans` gives.
    fn spans(docs: u64) -> Vec<P> {
        (0..docs)
            .flat_map(|d| (0..4).map(move |i| P(format!("q{d}.{i}"), format!("p{d}.{i}"), Some(d))))
            .collect()
    }

    #[test]
    fn one_pair_per_document_and_no_pair_lost() {
        let rules = BatchSection {
            one_per_document: true,
            ..Default::default()
        };
        let pairs = spans(40);
        let batches = run(rules, 8, pairs.clone()).unwrap();
        for b in &batches {
            let mut docs: Vec<u64> = b.iter().map(|p| p.2.unwrap()).collect();
            docs.sort();
            docs.dedup();
            assert_eq!(docs.len(), b.len(), "{b:?}");
        }
        // 160 pairs in batches of 8: all 20 batches come out.
        assert_eq!(batches.len(), 20);
        let mut seen: Vec<P> = batches.into_iter().flatten().collect();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        let mut all = pairs;
        all.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(seen, all);
        // Without the rule the same stream puts a document's pairs together.
        let plain = run(BatchSection::default(), 8, spans(40)).unwrap();
        assert_eq!(plain[0][0].2, plain[0][1].2);
    }

    #[test]
    fn no_repeated_query_or_positive_in_a_batch() {
        let rules = BatchSection {
            no_duplicates: true,
            ..Default::default()
        };
        // Every text three times over (a corpus with duplicated passages).
        let pairs: Vec<P> = (0..30)
            .flat_map(|i| (0..3).map(move |_| P(format!("q{i}"), format!("p{}", i % 10), None)))
            .collect();
        let (batches, held) = run_held(rules, 5, pairs).unwrap();
        assert_eq!(batches.len() * 5 + held, 90, "a pair was lost");
        assert!(batches.len() >= 15, "{} batches", batches.len());
        for b in &batches {
            let mut q: Vec<&str> = b.iter().map(|p| p.0.as_str()).collect();
            let mut p: Vec<&str> = b.iter().map(|p| p.1.as_str()).collect();
            q.sort();
            q.dedup();
            p.sort();
            p.dedup();
            assert_eq!((q.len(), p.len()), (5, 5), "{b:?}");
        }
    }

    #[test]
    fn grouped_batches_hold_one_group_each_under_the_other_rules() {
        let rules = BatchSection {
            group_by: Some(crate::config::GroupBy::File),
            one_per_document: true,
            ..Default::default()
        };
        // 60 documents of 4 pairs: 20 per group, 80 pairs per group.
        let (batches, held) = run_held(rules, 8, spans(60)).unwrap();
        assert_eq!(batches.len() * 8 + held, 240, "a pair was lost");
        // Each group fills batches of its own; the stream's end leaves the
        // pairs still waiting for a batch without their document held.
        for g in 0..3 {
            let n = batches.iter().filter(|b| b[0].2.unwrap() % 3 == g).count();
            assert!(n >= 7, "group {g}: {n} batches");
        }
        for b in &batches {
            let groups: std::collections::BTreeSet<u64> =
                b.iter().map(|p| p.2.unwrap() % 3).collect();
            assert_eq!(groups.len(), 1, "{b:?}");
            let mut docs: Vec<u64> = b.iter().map(|p| p.2.unwrap()).collect();
            docs.sort();
            docs.dedup();
            assert_eq!(docs.len(), 8, "{b:?}");
        }
        // Pairs without a group form a group of their own.
        let loose: Vec<P> = (0..16)
            .map(|i| P(format!("q{i}"), format!("p{i}"), None))
            .collect();
        assert_eq!(run(rules, 8, loose).unwrap().len(), 2);
        // Without grouping, batches mix groups.
        let plain = run(BatchSection::default(), 8, spans(60)).unwrap();
        assert!(plain[0]
            .iter()
            .any(|p| p.2.unwrap() % 3 != plain[0][0].2.unwrap() % 3));
    }

    #[test]
    fn impossible_rules_are_an_error_not_a_hang() {
        let rules = BatchSection {
            one_per_document: true,
            ..Default::default()
        };
        let pairs: Vec<P> = (0..10_000)
            .map(|i| P(format!("q{i}"), format!("p{i}"), Some(i % 3)))
            .collect();
        let e = run(rules, 8, pairs).unwrap_err();
        assert!(e.contains("too few distinct documents"), "{e}");
    }
}
