//! Augmentations: noise on one side of a pair so the encoder cannot match
//! on surface form alone (Contriever deletes words with p = 0.1). They work
//! on whitespace-separated tokens, compose in order, and rejoin with spaces.

use std::borrow::Cow;
use std::str::FromStr;

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::tasks::{check_prob, Pair, Text};

/// One augmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Augmentation {
    /// Drop each token with probability `p` (at least one token stays).
    Delete {
        /// Per-token probability.
        p: f64,
    },
    /// Replace each token, with probability `p`, by a random token of the
    /// same text.
    Replace {
        /// Per-token probability.
        p: f64,
    },
    /// Replace each token, with probability `p`, by `token`.
    Mask {
        /// Per-token probability.
        p: f64,
        /// The mask token (BERT's `[MASK]` by default).
        #[serde(default = "default_mask")]
        token: String,
    },
    /// With probability `p`, shuffle locally: each token moves at most
    /// `window` places (sort by position plus uniform noise in [0, window]).
    Shuffle {
        /// Probability of shuffling a text at all.
        p: f64,
        /// Largest displacement.
        #[serde(default = "default_window")]
        window: usize,
    },
}

fn default_mask() -> String {
    "[MASK]".into()
}

fn default_window() -> usize {
    3
}

impl Augmentation {
    fn p(&self) -> f64 {
        match self {
            Augmentation::Delete { p }
            | Augmentation::Replace { p }
            | Augmentation::Mask { p, .. }
            | Augmentation::Shuffle { p, .. } => *p,
        }
    }

    fn apply<'t, R: Rng + ?Sized>(
        &'t self,
        tokens: &mut Vec<&'t str>,
        original: &[&'t str],
        rng: &mut R,
    ) {
        match self {
            Augmentation::Delete { p } => {
                if tokens.is_empty() {
                    return;
                }
                let before = std::mem::take(tokens);
                tokens.extend(before.iter().copied().filter(|_| !rng.random_bool(*p)));
                if tokens.is_empty() {
                    tokens.push(before[rng.random_range(0..before.len())]);
                }
            }
            Augmentation::Replace { p } => {
                for t in tokens.iter_mut() {
                    if rng.random_bool(*p) {
                        *t = original[rng.random_range(0..original.len())];
                    }
                }
            }
            Augmentation::Mask { p, token } => {
                for t in tokens.iter_mut() {
                    if rng.random_bool(*p) {
                        *t = token;
                    }
                }
            }
            Augmentation::Shuffle { p, window } => {
                if rng.random_bool(*p) {
                    let mut keyed: Vec<(f64, &str)> = tokens
                        .iter()
                        .enumerate()
                        .map(|(i, t)| (i as f64 + rng.random::<f64>() * (*window as f64 + 1.0), *t))
                        .collect();
                    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
                    *tokens = keyed.into_iter().map(|(_, t)| t).collect();
                }
            }
        }
    }
}

impl FromStr for Augmentation {
    type Err = Error;

    /// `delete:P`, `replace:P`, `mask:P[:TOKEN]`, `shuffle:P[:WINDOW]`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| {
            Error::Config(format!(
                "augmentation `{s}`: {why} (e.g. delete:0.1, mask:0.15:[MASK], shuffle:0.2:3)"
            ))
        };
        let mut parts = s.splitn(3, ':');
        let name = parts.next().unwrap_or("");
        let p: f64 = parts
            .next()
            .ok_or_else(|| bad("no probability"))?
            .parse()
            .map_err(|_| bad("probability is not a number"))?;
        let extra = parts.next();
        let aug = match name {
            "delete" => Augmentation::Delete { p },
            "replace" => Augmentation::Replace { p },
            "mask" => Augmentation::Mask {
                p,
                token: extra.map_or_else(default_mask, String::from),
            },
            "shuffle" => Augmentation::Shuffle {
                p,
                window: extra.map_or(Ok(default_window()), |w| {
                    w.parse().map_err(|_| bad("window is not a number"))
                })?,
            },
            _ => return Err(bad("unknown augmentation")),
        };
        if extra.is_some()
            && matches!(
                aug,
                Augmentation::Delete { .. } | Augmentation::Replace { .. }
            )
        {
            return Err(bad("takes only a probability"));
        }
        check_prob(name, p).map_err(|e| bad(&e))?;
        Ok(aug)
    }
}

/// Which side of a pair an augmentation pipeline rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The query only.
    Query,
    /// The positive only.
    Positive,
    /// Both, independently.
    #[default]
    Both,
}

impl FromStr for Target {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "query" => Ok(Target::Query),
            "positive" => Ok(Target::Positive),
            "both" => Ok(Target::Both),
            _ => Err(Error::Config(format!(
                "augment target `{s}`: expected query, positive or both"
            ))),
        }
    }
}

/// A sequence of augmentations and the side(s) it applies to.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augmentations {
    /// Which side(s).
    pub apply_to: Target,
    /// Applied in order.
    pub ops: Vec<Augmentation>,
}

impl Augmentations {
    /// Checks every probability.
    pub fn validate(&self) -> Result<(), String> {
        self.ops
            .iter()
            .try_for_each(|op| check_prob("augmentation p", op.p()))
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Rewrites one text.
    pub fn apply_text<R: Rng + ?Sized>(&self, text: &str, rng: &mut R) -> String {
        let original: Vec<&str> = text.split_whitespace().collect();
        let mut tokens = original.clone();
        for op in &self.ops {
            op.apply(&mut tokens, &original, rng);
        }
        tokens.join(" ")
    }

    /// Rewrites the chosen side(s) of a pair in place (titles untouched).
    pub fn apply<R: Rng + ?Sized>(&self, pair: &mut Pair<'_>, rng: &mut R) {
        if self.ops.is_empty() {
            return;
        }
        let mut one = |t: &mut Text<'_>| t.text = Cow::Owned(self.apply_text(&t.text, rng));
        if self.apply_to != Target::Positive {
            one(&mut pair.query);
        }
        if self.apply_to != Target::Query {
            one(&mut pair.positive);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::Xoshiro256PlusPlus {
        rand::rngs::Xoshiro256PlusPlus::seed_from_u64(11)
    }

    fn text(n: usize) -> String {
        (0..n)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn deletion_rate_and_order() {
        let t = text(10_000);
        let augs = Augmentations {
            ops: vec![Augmentation::Delete { p: 0.1 }],
            ..Default::default()
        };
        let out = augs.apply_text(&t, &mut rng());
        let kept: Vec<usize> = out.split(' ').map(|w| w[1..].parse().unwrap()).collect();
        assert!(
            kept.windows(2).all(|w| w[0] < w[1]),
            "deletion reordered tokens"
        );
        let rate = 1.0 - kept.len() as f64 / 10_000.0;
        assert!((rate - 0.1).abs() < 0.01, "deletion rate {rate}");
        let all = Augmentations {
            ops: vec![Augmentation::Delete { p: 1.0 }],
            ..Default::default()
        };
        assert_eq!(all.apply_text("a b c", &mut rng()).split(' ').count(), 1);
    }

    #[test]
    fn mask_replace_shuffle() {
        let t = text(2000);
        let mask = Augmentations {
            ops: vec!["mask:0.2".parse().unwrap()],
            ..Default::default()
        };
        let out = mask.apply_text(&t, &mut rng());
        let masked = out.split(' ').filter(|w| *w == "[MASK]").count() as f64 / 2000.0;
        assert!((masked - 0.2).abs() < 0.03, "mask rate {masked}");

        let replace = Augmentations {
            ops: vec!["replace:1.0".parse().unwrap()],
            ..Default::default()
        };
        let out = replace.apply_text(&t, &mut rng());
        assert!(out.split(' ').all(|w| t.split(' ').any(|o| o == w)));
        assert_ne!(out, t);

        let shuffle = Augmentations {
            ops: vec!["shuffle:1.0:3".parse().unwrap()],
            ..Default::default()
        };
        let out = shuffle.apply_text(&t, &mut rng());
        let pos: Vec<i64> = out.split(' ').map(|w| w[1..].parse().unwrap()).collect();
        assert_ne!(out, t);
        for (i, p) in pos.iter().enumerate() {
            assert!((i as i64 - p).abs() <= 4, "token {p} moved to {i}");
        }
        let mut sorted = pos.clone();
        sorted.sort();
        assert_eq!(sorted, (0..2000).collect::<Vec<_>>());
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "delete",
            "delete:x",
            "delete:1.5",
            "blur:0.1",
            "delete:0.1:3",
            "shuffle:0.1:x",
        ] {
            assert!(bad.parse::<Augmentation>().is_err(), "{bad}");
        }
    }
}
