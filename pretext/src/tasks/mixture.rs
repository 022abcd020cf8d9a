//! A weighted mixture of tasks: each document goes to one task drawn by
//! weight, so the mix is exact in expectation and a document's pairs stay
//! coherent (all from one task).

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use super::{
    InverseCloze, Neighbors, Pair, PretextTask, PseudoQuery, RandomCrop, RecurringSpans, TaskSpec,
};
use crate::corpus::Document;

/// A task and its weight in a mixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weighted {
    /// Relative weight (> 0).
    pub weight: f64,
    /// The task.
    pub task: TaskSpec,
}

/// Several tasks, one drawn for each document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mixture {
    /// The tasks and their weights.
    pub tasks: Vec<Weighted>,
}

impl Default for Mixture {
    /// An even mix of the five single tasks with their defaults.
    fn default() -> Self {
        let tasks = [
            TaskSpec::Crop(RandomCrop::default()),
            TaskSpec::Ict(InverseCloze::default()),
            TaskSpec::Spans(RecurringSpans::default()),
            TaskSpec::Neighbors(Neighbors::default()),
            TaskSpec::PseudoQuery(PseudoQuery::default()),
        ];
        Mixture {
            tasks: tasks
                .into_iter()
                .map(|task| Weighted { weight: 1.0, task })
                .collect(),
        }
    }
}

impl Mixture {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.tasks.is_empty() {
            return Err("mix.tasks is empty".into());
        }
        for w in &self.tasks {
            if !(w.weight.is_finite() && w.weight > 0.0) {
                return Err(format!(
                    "mix: weight {} of task `{}` must be > 0",
                    w.weight,
                    w.task.name()
                ));
            }
            w.task.validate()?;
        }
        Ok(())
    }
}

impl PretextTask for Mixture {
    fn name(&self) -> &'static str {
        "mix"
    }

    fn pairs<'a, R: Rng + ?Sized>(&'a self, doc: &'a Document<'a>, rng: &mut R) -> Vec<Pair<'a>> {
        let total: f64 = self.tasks.iter().map(|w| w.weight).sum();
        let mut x = rng.random::<f64>() * total;
        let pick = self
            .tasks
            .iter()
            .find(|w| {
                x -= w.weight;
                x < 0.0
            })
            .or(self.tasks.last());
        pick.map_or_else(Vec::new, |w| w.task.pairs(doc, rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::testutil::{doc, long_text};
    use rand::SeedableRng;

    #[test]
    fn tasks_drawn_by_weight() {
        let text = long_text(60);
        let d = doc(&text, Some("T"));
        let mix = Mixture {
            tasks: vec![
                Weighted {
                    weight: 3.0,
                    task: TaskSpec::Crop(RandomCrop {
                        max_pairs_per_doc: 1,
                        ..Default::default()
                    }),
                },
                Weighted {
                    weight: 1.0,
                    task: TaskSpec::Neighbors(Neighbors {
                        max_pairs_per_doc: 1,
                        ..Default::default()
                    }),
                },
            ],
        };
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(9);
        let mut crops = 0;
        for _ in 0..4000 {
            let pairs = mix.pairs(&d, &mut rng);
            assert_eq!(pairs.len(), 1);
            crops += (pairs[0].task == "crop") as usize;
        }
        let share = crops as f64 / 4000.0;
        assert!((share - 0.75).abs() < 0.03, "crop share {share}");
    }
}
