//! The mining rules: the rank window, the hard quota of an easy:hard mix,
//! the false-negative filters and the draw of easy negatives.

use std::borrow::Cow;

use rand::{Rng, RngExt};
use serde::Serialize;

use super::stats::MiningStats;
use super::{NegativesConfig, Sampling};

/// A ranked candidate: an item of the pool and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The item (document number, or query number for gold negatives).
    pub item: u32,
    /// The retriever's score.
    pub score: f32,
}

/// Why a candidate was dropped as a likely false negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// It is the positive's own document, or its text contains the positive.
    PositiveText,
    /// It contains one of the query's answer strings.
    Answer,
    /// It scores within the absolute margin of the positive (or above it).
    AbsoluteMargin,
    /// It scores within the relative margin of the positive (or above it).
    RelativeMargin,
    /// The second scorer rates it above the threshold.
    Rescore,
    /// The cross-encoder's probability of relevance is above the maximum
    /// (RocketQA's denoising).
    CrossEncoder,
}

impl Rule {
    /// All rules, in the order they are checked.
    pub const ALL: [Rule; 6] = [
        Rule::PositiveText,
        Rule::Answer,
        Rule::AbsoluteMargin,
        Rule::RelativeMargin,
        Rule::Rescore,
        Rule::CrossEncoder,
    ];

    /// The rule's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Rule::PositiveText => "positive-text",
            Rule::Answer => "answer",
            Rule::AbsoluteMargin => "absolute-margin",
            Rule::RelativeMargin => "relative-margin",
            Rule::Rescore => "rescore",
            Rule::CrossEncoder => "cross-encoder",
        }
    }
}

/// Second opinions on a pool item (RocketQA's denoising): a candidate is
/// dropped when a rater rates it above its threshold. Each is asked only
/// after the cheaper rules pass.
#[derive(Clone, Copy, Default)]
pub struct Raters<'r> {
    /// A second encoder's cosine similarity (`negatives.rescore`), dropped
    /// above `rescore_threshold`.
    pub encoder: Option<&'r dyn Fn(u32) -> f32>,
    /// A cross-encoder's probability of relevance (`negatives.rescore_ce`),
    /// dropped above `ce_max_score`.
    pub cross: Option<&'r dyn Fn(u32) -> f32>,
}

/// What kind of negative a pick is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// From the rank window of a retriever.
    Hard,
    /// A random passage of the corpus.
    Random,
    /// The positive of another query.
    Gold,
}

/// A chosen negative.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Picked {
    /// The pool item.
    pub item: u32,
    /// Hard, random or gold.
    pub kind: Kind,
    /// 1-based rank in the retriever's list (hard negatives).
    pub rank: Option<usize>,
    /// The retriever's score (hard negatives).
    pub score: Option<f32>,
}

/// Texts negatives are drawn from, by item number.
pub trait TextPool: Sync {
    /// Items in the pool.
    fn len(&self) -> usize;
    /// Whether the pool is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The text of `item`.
    fn text(&self, item: u32) -> Cow<'_, str>;
}

impl TextPool for Vec<String> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn text(&self, item: u32) -> Cow<'_, str> {
        Cow::Borrowed(&self[item as usize])
    }
}

/// What the miner knows of one query.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The positive's text.
    pub positive: &'a str,
    /// The positive's score under the same retriever (for the margins).
    pub positive_score: Option<f32>,
    /// Answer strings: a candidate containing one is not a negative.
    pub answers: &'a [String],
    /// The pool item that is the positive itself, if known.
    pub exclude: Option<u32>,
}

/// The negatives of one query.
pub type Mined = Vec<Picked>;

/// A query's positive text (trimmed), ready to be searched for in
/// candidates; `None` when it is empty (an empty positive is in every
/// text, and drops nothing).
struct PositiveFinder<'q>(Option<memchr::memmem::Finder<'q>>);

impl<'q> PositiveFinder<'q> {
    fn new(query: &Query<'q>) -> PositiveFinder<'q> {
        let positive = query.positive.trim();
        PositiveFinder((!positive.is_empty()).then(|| memchr::memmem::Finder::new(positive)))
    }

    /// Whether `text` holds the positive.
    fn is_in(&self, text: &str) -> bool {
        self.0
            .as_ref()
            .is_some_and(|f| f.find(text.as_bytes()).is_some())
    }
}

/// Applies a [`NegativesConfig`] to candidate lists.
#[derive(Debug, Clone, Copy)]
pub struct Miner<'c> {
    config: &'c NegativesConfig,
}

/// Draws of an easy negative per slot before a query counts as short.
const EASY_TRIES: usize = 20;

impl<'c> Miner<'c> {
    /// A miner for `config`.
    pub fn new(config: &'c NegativesConfig) -> Miner<'c> {
        Miner { config }
    }

    /// How many of the `count` negatives are hard: `count / (1 + easy_ratio)`
    /// rounded stochastically (so the mean easy:hard ratio is exact even
    /// when one query's share is a fraction), capped at `max_hard`. Zero
    /// for sources without a ranking.
    pub fn hard_quota(&self, rng: &mut impl Rng) -> usize {
        let c = self.config;
        if !c.source.ranked() {
            return 0;
        }
        let exact = c.count as f64 / (1.0 + c.easy_ratio);
        let mut n = exact.floor() as usize;
        if rng.random::<f64>() < exact - exact.floor() {
            n += 1;
        }
        if c.max_hard > 0 {
            n = n.min(c.max_hard);
        }
        n.min(c.count)
    }

    /// The candidates of the rank window: ranks `range_min + 1 ..= range_max`
    /// of a best-first list, with their 1-based ranks.
    pub fn window<'l>(
        &self,
        ranked: &'l [Candidate],
    ) -> impl Iterator<Item = (usize, &'l Candidate)> + 'l {
        let lo = self.config.range_min.min(ranked.len());
        let hi = self.config.range_max.min(ranked.len());
        ranked[lo..hi]
            .iter()
            .enumerate()
            .map(move |(i, c)| (lo + i + 1, c))
    }

    /// The first rule `text` breaks for `query`, if any. `score` is the
    /// candidate's retriever score; `rated` names the pool item and who
    /// rates it.
    pub fn check(
        &self,
        query: &Query<'_>,
        text: &str,
        score: Option<f32>,
        rated: Option<(u32, Raters<'_>)>,
    ) -> Result<(), Rule> {
        self.check_with(&PositiveFinder::new(query), query, text, score, rated)
    }

    /// [`Miner::check`] with the positive's searcher made once for all of
    /// a query's candidates: building it per candidate, and the standard
    /// library's substring search, were two fifths of mining BM25
    /// negatives for long positives (a `crop` pair's).
    fn check_with(
        &self,
        positive: &PositiveFinder<'_>,
        query: &Query<'_>,
        text: &str,
        score: Option<f32>,
        rated: Option<(u32, Raters<'_>)>,
    ) -> Result<(), Rule> {
        let c = self.config;
        if c.drop_positive_text && positive.is_in(text) {
            return Err(Rule::PositiveText);
        }
        if c.drop_answers && !query.answers.is_empty() {
            let lower = text.to_lowercase();
            if query
                .answers
                .iter()
                .map(|a| a.trim().to_lowercase())
                .any(|a| !a.is_empty() && lower.contains(&a))
            {
                return Err(Rule::Answer);
            }
        }
        if let (Some(s), Some(p)) = (score, query.positive_score) {
            if let Some(m) = c.absolute_margin {
                if s > p - m {
                    return Err(Rule::AbsoluteMargin);
                }
            }
            if let Some(m) = c.relative_margin {
                if s > p * (1.0 - m) {
                    return Err(Rule::RelativeMargin);
                }
            }
        }
        if let Some((item, raters)) = rated {
            if raters
                .encoder
                .is_some_and(|r| r(item) > c.rescore_threshold)
            {
                return Err(Rule::Rescore);
            }
            if raters.cross.is_some_and(|r| r(item) > c.ce_max_score) {
                return Err(Rule::CrossEncoder);
            }
        }
        Ok(())
    }

    /// The negatives of one query: hard ones from the window of `ranked`
    /// (best first) that pass every rule, drawn `top` or `random`, then easy
    /// ones drawn at random from `easy` (of kind `easy_kind`) to fill the
    /// count. `raters` give second opinions on the hard candidates.
    #[allow(clippy::too_many_arguments)]
    pub fn mine(
        &self,
        query: &Query<'_>,
        ranked: &[Candidate],
        pool: &dyn TextPool,
        easy: (&dyn TextPool, Kind),
        raters: Raters<'_>,
        rng: &mut impl Rng,
        stats: &mut MiningStats,
    ) -> Mined {
        let c = self.config;
        stats.queries += 1;
        if let Some(s) = query.positive_score {
            stats.positive_scores.push(s);
        }
        let quota = self.hard_quota(rng);
        let positive = PositiveFinder::new(query);
        let mut eligible = Vec::new();
        if quota > 0 {
            for (rank, cand) in self.window(ranked) {
                stats.candidates += 1;
                let verdict = if Some(cand.item) == query.exclude {
                    Err(Rule::PositiveText)
                } else {
                    self.check_with(
                        &positive,
                        query,
                        &pool.text(cand.item),
                        Some(cand.score),
                        Some((cand.item, raters)),
                    )
                };
                match verdict {
                    Err(rule) => stats.dropped(rule),
                    Ok(()) => eligible.push(Picked {
                        item: cand.item,
                        kind: Kind::Hard,
                        rank: Some(rank),
                        score: Some(cand.score),
                    }),
                }
            }
        }
        let mut picked = sample(eligible, quota, c.sampling, rng);
        stats.hard += picked.len() as u64;
        for p in &picked {
            stats.negative_scores.extend(p.score);
        }
        let (easy_pool, kind) = easy;
        let want = c.count - quota;
        let mut tries = 0;
        let mut easy_taken = 0;
        while easy_taken < want && tries < want * EASY_TRIES && !easy_pool.is_empty() {
            tries += 1;
            let item = rng.random_range(0..easy_pool.len()) as u32;
            if Some(item) == query.exclude || picked.iter().any(|p| p.item == item) {
                continue;
            }
            if let Err(rule) = self.check_with(&positive, query, &easy_pool.text(item), None, None)
            {
                stats.dropped(rule);
                continue;
            }
            picked.push(Picked {
                item,
                kind,
                rank: None,
                score: None,
            });
            easy_taken += 1;
        }
        stats.easy += easy_taken as u64;
        if picked.len() < c.count {
            stats.short_queries += 1;
        }
        picked
    }
}

/// `n` of `eligible` (in rank order): the first `n`, or `n` drawn uniformly
/// without replacement and put back in rank order.
pub fn sample<T>(mut eligible: Vec<T>, n: usize, how: Sampling, rng: &mut impl Rng) -> Vec<T> {
    if eligible.len() <= n {
        return eligible;
    }
    match how {
        Sampling::Top => {
            eligible.truncate(n);
            eligible
        }
        Sampling::Random => {
            let mut keep = rand::seq::index::sample(rng, eligible.len(), n).into_vec();
            keep.sort_unstable();
            let mut out = Vec::with_capacity(n);
            let mut it = eligible.into_iter().enumerate();
            for k in keep {
                for (i, x) in it.by_ref() {
                    if i == k {
                        out.push(x);
                        break;
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests;
