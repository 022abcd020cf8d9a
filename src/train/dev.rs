//! A self-supervised dev set, for runs without labels (`eval.held_out`):
//! a fraction of the corpus's documents is kept out of training, the
//! task's pairs are made from them, and the model is scored on retrieving
//! each pair's positive among all of their positives. Logged, selected and
//! guarded exactly like a BEIR `[eval]` set, so a user adapting a model to
//! an unlabelled corpus still gets `best/` and the no-harm guard.

use std::collections::BTreeMap;

use anyhow::Result;
use pretext_tasks::corpus::Corpus;
use pretext_tasks::formats::flat;
use pretext_tasks::pipeline::{doc_rng, for_each_batch, ReadOptions};
use pretext_tasks::tasks::{PretextTask, TaskSpec};

use crate::eval::beir::{Beir, Item};

/// Dev queries at most: enough for a stable mean, few enough that an
/// evaluation costs seconds.
pub const MAX_DEV_QUERIES: usize = 1000;

/// Salt of the held-out draw and of the dev pairs' generators, so neither
/// follows the training stream's choices.
const DEV_SALT: u64 = 0xde5e_7de5_e7de_5e70;

/// Which documents are held out: each with probability `fraction`, by a
/// hash of the seed and its corpus ordinal (no list to keep, the same on
/// every rank and on resume).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldOut {
    seed: u64,
    fraction: f64,
}

impl HeldOut {
    /// Holds out `fraction` of the documents (`None` for 0).
    pub fn new(seed: u64, fraction: f64) -> Option<HeldOut> {
        (fraction > 0.0).then_some(HeldOut { seed, fraction })
    }

    /// Whether the document of corpus ordinal `ordinal` is held out.
    pub fn contains(&self, ordinal: u64) -> bool {
        let h = doc_rng_u64(self.seed ^ DEV_SALT, ordinal);
        (h >> 11) as f64 / (1u64 << 53) as f64 <= self.fraction
    }
}

fn doc_rng_u64(seed: u64, ordinal: u64) -> u64 {
    use rand::Rng;
    doc_rng(seed, ordinal).next_u64()
}

/// The dev set: the task's pairs of the held-out documents, as a BEIR set
/// whose corpus is their positives (`p<i>`) and whose query `q<i>` has
/// one relevant document, its own positive. `None` when the held-out
/// documents gave no pairs.
pub fn dev_set(
    corpus: &Corpus,
    read: ReadOptions,
    task: &TaskSpec,
    held: HeldOut,
) -> Result<Option<Beir>> {
    let mut beir = Beir {
        corpus: Vec::new(),
        queries: Vec::new(),
        qrels: BTreeMap::new(),
        warnings: Vec::new(),
    };
    let work = |doc: &pretext_tasks::corpus::Document<'_>| {
        if !held.contains(doc.ordinal) {
            return Vec::new();
        }
        let mut rng = doc_rng(held.seed ^ DEV_SALT, doc.ordinal);
        task.pairs(doc, &mut rng)
            .iter()
            .map(|p| (flat(&p.query).into_owned(), flat(&p.positive).into_owned()))
            .collect::<Vec<_>>()
    };
    for_each_batch(corpus, read, work, |batch, _| {
        for (query, positive) in batch.into_iter().flatten() {
            let i = beir.queries.len();
            if i >= MAX_DEV_QUERIES {
                break;
            }
            let (qid, pid) = (format!("q{i}"), format!("p{i}"));
            beir.qrels
                .entry(qid.clone())
                .or_default()
                .insert(pid.clone(), 1);
            beir.queries.push(Item {
                id: qid,
                text: query,
            });
            beir.corpus.push(Item {
                id: pid,
                text: positive,
            });
        }
        Ok(())
    })?;
    Ok((!beir.queries.is_empty()).then_some(beir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_share_is_near_the_fraction_and_seeded() {
        let a = HeldOut::new(7, 0.1).unwrap();
        let held = (0..20_000u64).filter(|&o| a.contains(o)).count();
        assert!((1_700..2_300).contains(&held), "{held} of 20000 held out");
        let b = HeldOut::new(8, 0.1).unwrap();
        let differ = (0..1000u64)
            .filter(|&o| a.contains(o) != b.contains(o))
            .count();
        assert!(differ > 50, "another seed holds out other documents");
        assert!(HeldOut::new(7, 0.0).is_none());
    }
}
