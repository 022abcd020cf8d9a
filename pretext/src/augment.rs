//! Augmentations: noise on one side of a pair so the encoder cannot match
//! on surface form alone (Contriever deletes words with p = 0.1). They work
//! on whitespace-separated tokens, compose in order, and rejoin with spaces.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::idf::{lower, DocFreq};
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
    /// Mask salient spans, REALM's salient span masking (Guu et al., 2020)
    /// without its NER model: each span is masked whole (every token
    /// becomes `token`) with probability `p`. A heuristic, see
    /// [`salient_spans`].
    SalientMask {
        /// Per-span probability.
        p: f64,
        /// The mask token (BERT's `[MASK]` by default).
        #[serde(default = "default_mask")]
        token: String,
        /// REALM's corpus-statistics cue: a word of three letters or more
        /// found in at most this share of the corpus's documents (high IDF:
        /// a rare term, `Reynolds`, `hypersonic`) is salient too. 0 (the
        /// default) turns the cue off; it needs the corpus's document
        /// frequencies, counted when the job starts.
        #[serde(default)]
        rare: f64,
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
            | Augmentation::SalientMask { p, .. }
            | Augmentation::Shuffle { p, .. } => *p,
        }
    }

    fn apply<'t, R: Rng + ?Sized>(
        &'t self,
        tokens: &mut Vec<&'t str>,
        original: &[&'t str],
        doc_freq: Option<&DocFreq>,
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
            Augmentation::SalientMask { p, token, rare } => {
                let rare = doc_freq.filter(|_| *rare > 0.0).map(|df| (df, *rare));
                for span in salient_spans_with(tokens, rare) {
                    if rng.random_bool(*p) {
                        tokens[span].fill(token);
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

    /// `delete:P`, `replace:P`, `mask:P[:TOKEN]`, `salient-mask:P[:TOKEN]`,
    /// `shuffle:P[:WINDOW]`.
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
            "salient-mask" => Augmentation::SalientMask {
                p,
                token: extra.map_or_else(default_mask, String::from),
                rare: 0.0,
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

/// The salient spans of whitespace tokens, in order and disjoint, as
/// REALM's named entities and dates stand in for them without a tagger:
///
/// - **dates**: a run of month names (`March`, `Sept.`) and numbers that
///   holds a month (`March 3, 1998`, `3 March 1998`);
/// - **numbers**: a token of digits and number punctuation (`1998`,
///   `3.5`, `12,000`, `10%`, `$5`, `1998-03-04`);
/// - **names**: a run of capitalised tokens, joined by `of`, `de`, `van`,
///   `von`, `der`, `du`, `la`, `del` or `the` between two of them
///   (`Bank of England`). At a sentence start a capital says nothing, so
///   a run there counts only when it is two tokens or more (`New York`);
///   the pronoun `I` never counts.
///
/// A run ends after a token that ends a clause (`,` `;` `:` `.` `!` `?`
/// `)`), so `Paris, France` is two spans. Rare common nouns (REALM's
/// other cue, through corpus statistics) are not found: augmentations see
/// one text at a time.
pub fn salient_spans(tokens: &[&str]) -> Vec<std::ops::Range<usize>> {
    fn core(t: &str) -> &str {
        t.trim_matches(|c: char| !c.is_alphanumeric())
    }
    let ends_clause = |t: &str| t.ends_with([',', ';', ':', '.', '!', '?', ')']);
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    let is_month = |t: &str| {
        let w = core(t);
        if !w.starts_with(char::is_uppercase) {
            return false;
        }
        let l = w.to_lowercase();
        let abbreviation = t.ends_with('.')
            && (l == "sept" || (l.len() == 3 && MONTHS.iter().any(|m| m.starts_with(&l))));
        abbreviation || MONTHS.contains(&l.as_str())
    };
    let is_number = |t: &str| {
        let w = t.trim_end_matches([',', ';', ':', '.', '!', '?', ')']);
        let w = w.trim_start_matches(['(', '$', '€', '£', '#']);
        w.chars().any(|c| c.is_ascii_digit())
            && w.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | ':' | '/' | '-' | '%'))
    };
    let is_capital = |t: &str| {
        let w = core(t);
        w != "I" && w.chars().next().is_some_and(char::is_uppercase)
    };
    const JOINERS: [&str; 9] = ["of", "de", "van", "von", "der", "du", "la", "del", "the"];
    let sentence_start = |i: usize| i == 0 || tokens[i - 1].ends_with(['.', '!', '?']);
    let mut spans = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        // A date: a run of months and numbers holding a month; a comma
        // goes on to a number after it (`March 3, 1998`).
        if is_month(t) || is_number(t) {
            let (mut j, mut month) = (i, false);
            while j < tokens.len() && (is_month(tokens[j]) || is_number(tokens[j])) {
                month |= is_month(tokens[j]);
                j += 1;
                let last = tokens[j - 1];
                let year_next = last.ends_with(',') && tokens.get(j).is_some_and(|n| is_number(n));
                let abbreviation = last.ends_with('.') && is_month(last) && core(last).len() <= 4;
                if ends_clause(last) && !year_next && !abbreviation {
                    break;
                }
            }
            if month {
                spans.push(i..j);
                i = j;
                continue;
            }
        }
        if is_number(t) {
            spans.push(i..i + 1);
            i += 1;
            continue;
        }
        if is_capital(t) {
            let mut j = i + 1;
            let mut stop = ends_clause(t);
            while !stop && j < tokens.len() {
                if is_capital(tokens[j]) && !sentence_start(j) {
                    stop = ends_clause(tokens[j]);
                    j += 1;
                } else if JOINERS.contains(&tokens[j])
                    && tokens.get(j + 1).is_some_and(|n| is_capital(n))
                {
                    j += 1;
                } else {
                    break;
                }
            }
            if !sentence_start(i) || j - i >= 2 {
                spans.push(i..j);
            }
            i = j;
            continue;
        }
        i += 1;
    }
    spans
}

/// [`salient_spans`], and with `rare = (df, share)` also every word not in
/// one of them that at most `share` of the corpus's documents hold: three
/// letters or more, matched lower-cased without its punctuation, as the
/// document frequencies count words. In text order.
pub fn salient_spans_with(
    tokens: &[&str],
    rare: Option<(&DocFreq, f64)>,
) -> Vec<std::ops::Range<usize>> {
    let mut spans = salient_spans(tokens);
    let Some((df, share)) = rare else {
        return spans;
    };
    let limit = share * df.docs() as f64;
    let mut covered = vec![false; tokens.len()];
    for s in &spans {
        covered[s.clone()].fill(true);
    }
    let mut buf = String::new();
    for (i, t) in tokens.iter().enumerate() {
        let w = t.trim_matches(|c: char| !c.is_alphanumeric());
        if covered[i] || w.chars().count() < 3 || !w.chars().all(char::is_alphabetic) {
            continue;
        }
        if (df.df(lower(w, &mut buf)) as f64) <= limit {
            spans.push(i..i + 1);
        }
    }
    spans.sort_by_key(|s| s.start);
    spans
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
    /// The corpus's document frequencies, for `salient-mask`'s `rare` cue
    /// (set by [`crate::pipeline::ready_augment`], never configured).
    #[serde(skip)]
    pub doc_freq: CorpusStats,
}

/// The corpus statistics a pipeline was readied with. Equal to any other:
/// they follow from the corpus, not from the configuration compared.
#[derive(Debug, Clone, Default)]
pub struct CorpusStats(pub Option<Arc<DocFreq>>);

impl PartialEq for CorpusStats {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Augmentations {
    /// Checks every probability.
    pub fn validate(&self) -> Result<(), String> {
        self.ops.iter().try_for_each(|op| {
            check_prob("augmentation p", op.p())?;
            match op {
                Augmentation::SalientMask { rare, .. } => check_prob("salient-mask rare", *rare),
                _ => Ok(()),
            }
        })
    }

    /// Whether an augmentation reads the corpus's document frequencies
    /// (a `salient-mask` with `rare > 0`).
    pub fn needs_doc_freq(&self) -> bool {
        self.ops
            .iter()
            .any(|op| matches!(op, Augmentation::SalientMask { rare, .. } if *rare > 0.0))
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
            op.apply(&mut tokens, &original, self.doc_freq.0.as_deref(), rng);
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

    fn spans_of(text: &str) -> Vec<String> {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        salient_spans(&tokens)
            .into_iter()
            .map(|r| tokens[r].join(" "))
            .collect()
    }

    #[test]
    fn salient_spans_are_names_dates_and_numbers() {
        assert_eq!(
            spans_of(
                "The treaty was signed in Paris on March 3, 1998 by Jacques Chirac and \
                 the Bank of England, with 12,000 guests."
            ),
            [
                "Paris",
                "March 3, 1998",
                "Jacques Chirac",
                "Bank of England,",
                "12,000"
            ]
        );
        // A capital at a sentence start says nothing; two capitals do.
        assert_eq!(
            spans_of("Water boils at 100 degrees. New York is big. I think so."),
            ["100", "New York"]
        );
        // Clause punctuation ends a name; dates in the other order and
        // abbreviated months; numbers with signs and units.
        assert_eq!(
            spans_of("born in Lyon, France on 14 July 1789 or Sept. 2 and cost $5 or 10%"),
            ["Lyon,", "France", "14 July 1789", "Sept. 2", "$5", "10%"]
        );
        assert_eq!(
            spans_of("nothing salient here at all"),
            Vec::<String>::new()
        );
        assert_eq!(spans_of(""), Vec::<String>::new());
    }

    #[test]
    fn rare_words_are_salient_by_corpus_document_frequency() {
        // Ten documents: "flow" and "the" in all, "hypersonic" in one.
        let mut df = DocFreq::default();
        for i in 0..10 {
            let extra = if i == 0 { " hypersonic" } else { "" };
            df = df.merge(DocFreq::from_text(&format!("the flow of air{extra}")));
        }
        let text = "the hypersonic flow near Mach 6, by Reynolds";
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let show = |spans: Vec<std::ops::Range<usize>>| -> Vec<String> {
            spans.into_iter().map(|r| tokens[r].join(" ")).collect()
        };
        // Without the cue: names and numbers only.
        assert_eq!(
            show(salient_spans_with(&tokens, None)),
            ["Mach", "6,", "Reynolds"]
        );
        // At 10 %: words in at most one document of ten, and words the
        // corpus never saw ("near"), in text order; short words and numbers
        // are left to the other rules.
        assert_eq!(
            show(salient_spans_with(&tokens, Some((&df, 0.1)))),
            ["hypersonic", "near", "Mach", "6,", "Reynolds"]
        );
        // Through the augmentation, once readied with the statistics.
        let mut aug = Augmentations {
            ops: vec![Augmentation::SalientMask {
                p: 1.0,
                token: "_".into(),
                rare: 0.1,
            }],
            ..Default::default()
        };
        assert!(aug.needs_doc_freq());
        aug.doc_freq = CorpusStats(Some(Arc::new(df)));
        assert_eq!(aug.apply_text(text, &mut rng()), "the _ flow _ _ _ by _");
        let bad = Augmentations {
            ops: vec![Augmentation::SalientMask {
                p: 1.0,
                token: "_".into(),
                rare: 2.0,
            }],
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn salient_mask_masks_whole_spans_only() {
        let text = "In 1969 Neil Armstrong walked on the Moon with Buzz Aldrin.";
        let all: Augmentations = Augmentations {
            ops: vec!["salient-mask:1.0".parse().unwrap()],
            ..Default::default()
        };
        assert_eq!(
            all.apply_text(text, &mut rng()),
            "In [MASK] [MASK] [MASK] walked on the [MASK] with [MASK] [MASK]"
        );
        let none = Augmentations {
            ops: vec!["salient-mask:0.0:<mask>".parse().unwrap()],
            ..Default::default()
        };
        assert_eq!(none.apply_text(text, &mut rng()), text);
        // At 0.5, spans are masked whole or not at all, about half of them.
        let half = Augmentations {
            ops: vec!["salient-mask:0.5:<mask>".parse().unwrap()],
            ..Default::default()
        };
        let mut r = rng();
        let mut masked = 0;
        for _ in 0..400 {
            let out = half.apply_text(text, &mut r);
            let w: Vec<&str> = out.split(' ').collect();
            assert_eq!(w[2] == "<mask>", w[3] == "<mask>", "{out}");
            assert_eq!(w[9] == "<mask>", w[10] == "<mask>", "{out}");
            assert!(!w[0].contains("mask") && !w[4].contains("mask"), "{out}");
            masked += w.iter().filter(|t| **t == "<mask>").count();
        }
        let share = masked as f64 / (400.0 * 6.0);
        assert!((share - 0.5).abs() < 0.06, "masked share {share}");
        assert!("salient-mask".parse::<Augmentation>().is_err());
        assert!("salient-mask:2".parse::<Augmentation>().is_err());
    }
}
