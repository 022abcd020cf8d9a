//! Contriever's independent cropping (Izacard et al., 2022, §3.2): the
//! document is cut into windows of `window` words, and each window gives two
//! spans cropped independently, each 10–50 % of the window. The two views
//! overlap by chance, which is what makes the task learnable yet not trivial.

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use super::{check_range, Pair, PretextTask, Text};
use crate::corpus::Document;
use crate::segment::{words, Span, WordUnit};

/// Two random crops of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomCrop {
    /// Window length in words (Contriever: 256 tokens).
    pub window: usize,
    /// Smallest crop, as a fraction of the window (Contriever: 0.1).
    pub ratio_min: f64,
    /// Largest crop, as a fraction of the window (Contriever: 0.5).
    pub ratio_max: f64,
    /// A trailing window shorter than this many words gives no pair.
    pub min_words: usize,
    /// At most this many pairs a document (0: one per window).
    pub max_pairs_per_doc: usize,
    /// What a word is: whitespace-separated by default, as DPR counts its
    /// 100-word passages (and twice as fast as UAX #29 words).
    pub unit: WordUnit,
}

impl Default for RandomCrop {
    fn default() -> Self {
        RandomCrop {
            window: 256,
            ratio_min: 0.1,
            ratio_max: 0.5,
            min_words: 8,
            max_pairs_per_doc: 0,
            unit: WordUnit::Whitespace,
        }
    }
}

impl RandomCrop {
    pub(crate) fn validate(&self) -> Result<(), String> {
        check_range("crop.window/min_words", self.min_words.max(1), self.window)?;
        if !(0.0 < self.ratio_min && self.ratio_min <= self.ratio_max && self.ratio_max <= 1.0) {
            return Err(format!(
                "crop: need 0 < ratio_min <= ratio_max <= 1, got {}..{}",
                self.ratio_min, self.ratio_max
            ));
        }
        Ok(())
    }

    /// One crop of `window` (word spans): a run of ratio × len words.
    fn crop<R: Rng + ?Sized>(&self, window: &[Span], rng: &mut R) -> Span {
        let ratio = rng.random_range(self.ratio_min..=self.ratio_max);
        let len = ((ratio * window.len() as f64).round() as usize).clamp(1, window.len());
        let start = rng.random_range(0..=window.len() - len);
        Span::covering(&window[start..start + len]).expect("len >= 1")
    }
}

impl PretextTask for RandomCrop {
    fn name(&self) -> &'static str {
        "crop"
    }

    fn pairs<'a, R: Rng + ?Sized>(&'a self, doc: &'a Document<'a>, rng: &mut R) -> Vec<Pair<'a>> {
        let text: &'a str = &doc.text;
        let words = words(text, self.unit);
        let limit = if self.max_pairs_per_doc == 0 {
            usize::MAX
        } else {
            self.max_pairs_per_doc
        };
        words
            .chunks(self.window.max(1))
            .filter(|w| w.len() >= self.min_words.max(1))
            .take(limit)
            .map(|window| Pair {
                query: Text::slice(text, self.crop(window, rng)),
                positive: Text::slice(text, self.crop(window, rng)),
                negatives: Vec::new(),
                shared: None,
                scores: None,
                task: "crop",
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::testutil::{doc, long_text};
    use rand::SeedableRng;

    #[test]
    fn crops_are_within_ratio_of_their_window() {
        let text = long_text(200);
        let d = doc(&text, None);
        for unit in [WordUnit::Whitespace, WordUnit::Unicode] {
            let task = RandomCrop {
                window: 50,
                unit,
                ..Default::default()
            };
            let all = words(&text, unit);
            let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
            let pairs = task.pairs(&d, &mut rng);
            assert_eq!(pairs.len(), all.len().div_ceil(50));
            for (k, p) in pairs.iter().enumerate() {
                let window = Span::covering(&all[k * 50..((k + 1) * 50).min(all.len())]).unwrap();
                for side in [&p.query, &p.positive] {
                    let span = side.span.unwrap();
                    assert!(window.contains(span), "crop outside its window");
                    let n = words(&side.text, unit).len();
                    if k + 1 < pairs.len() {
                        assert!(
                            (5..=25).contains(&n),
                            "crop of {n} words not in 10-50% of 50"
                        );
                    }
                    assert_eq!(side.text, span.of(&text));
                }
            }
        }
    }

    #[test]
    fn short_documents_give_nothing() {
        let d = doc("too short", None);
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
        assert!(RandomCrop::default().pairs(&d, &mut rng).is_empty());
    }
}
