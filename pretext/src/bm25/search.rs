//! Top-k search that skips what cannot reach the top k (MaxScore, Turtle
//! and Flood 1995, term at a time), with the ranking of scoring every
//! posting.
//!
//! Query terms are taken from the largest possible contribution down (a
//! term's bound is its largest impact under its weight). While the
//! bounds of the terms left could still lift an unseen document into the
//! top k, a term is scored over all its postings, as the exhaustive search
//! does. Once they sum below θ, the k-th best score so far (a lower bound
//! of the final k-th, since scores only grow), no unseen document can make
//! it: the remaining terms, usually the common ones with huge postings
//! (`what`, `how` under Lucene's 33 stopwords), only visit the documents
//! already seen (read from the term's row of frequencies when it has one,
//! [`super::dense`], else skipping whole blocks by their last document),
//! and drop every document whose score plus the bounds left falls below
//! θ.
//!
//! Why the ranking is the exhaustive one, bit for bit: a document is only
//! dropped when its score is below θ by a relative margin (1e-6) far wider
//! than a float's rounding step, so it cannot even tie the k-th; and the
//! scores of the documents kept are the same, although summed in another
//! term order, because sums of a few floats in double are exact (their
//! mantissas span far fewer than 53 bits). The test
//! `pruned_search_ranks_as_exhaustive_scoring` compares the two.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::postings::{Cursor, Decoded};
use super::{Analyzer, AnalyzerKind, Bm25Config, Bm25Index, Stats, TokenTerms};

/// How a search walks the postings. Both give the same ranking, bit for
/// bit; only the time differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Traversal {
    /// Skip what cannot reach the top k (the default).
    #[default]
    MaxScore,
    /// Score every posting of every query term: the reference the pruned
    /// search is tested and benchmarked against.
    Exhaustive,
}

/// The relative margin by which a bound must fall short of θ to prune.
const MARGIN: f64 = 1e-6;

/// The largest k a search looks ahead for ([`Bm25Index::look_ahead`]).
/// Measured: at `spar`'s k of 8 it made the task 6 % faster; at the BM25
/// negatives' k of 100 (long `crop` queries) it made them 6–15 % slower,
/// the leaders' lookups and their heap outweighing the documents dropped.
const LOOK_AHEAD_K: usize = 16;

/// A query term found in the index, with its weight and bound.
struct Term {
    index: usize,
    weight: f32,
    bound: f64,
}

/// A thread's working space, reused by each of its queries and reset
/// where touched, so a query costs its postings, not the corpus size.
#[derive(Default)]
struct Scratch {
    /// One score per document. Term scores are summed in double, as
    /// Lucene's disjunctions sum them, and rounded once; 0 is a document
    /// no term touched, a negative score one dropped from the top k.
    scores: Vec<f64>,
    /// The documents touched, in the order first touched, in the first
    /// places (as many as the query touched): one more place than
    /// documents, so that every posting
    /// writes its document there and counts it only when it is new (a
    /// store and an add where a branch mispredicted on every other
    /// posting).
    seen: Vec<u32>,
}

impl Scratch {
    /// Room for a corpus of `n` documents.
    fn fit(&mut self, n: usize) {
        if self.scores.len() < n {
            self.scores.resize(n, 0.0);
        }
        if self.seen.len() < n + 1 {
            self.seen.resize(n + 1, 0);
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

#[cfg(test)]
thread_local! {
    /// Queries whose last terms only visited documents already seen.
    static PRUNED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Terms of those queries walked whole, walked by cursor, and read
    /// from their rows of frequencies.
    static WALKED: std::cell::Cell<[usize; 3]> = const { std::cell::Cell::new([0; 3]) };
    /// Searches whose look ahead raised θ.
    static LOOKED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl Bm25Index {
    /// The top `k` documents for `query` by document number (the position
    /// in the indexed list), best first. Ties go to the lexicographically
    /// smaller document id under Lucene's analyzer (Anserini's sort), to
    /// the lower number under the NLTK one.
    pub fn search_docs(&self, analyzer: &Analyzer, query: &str, k: usize) -> Vec<(u32, f32)> {
        self.search_docs_with(analyzer, query, k, Traversal::MaxScore)
    }

    /// [`Bm25Index::search_docs`] with a chosen traversal (the same
    /// ranking either way).
    pub fn search_docs_with(
        &self,
        analyzer: &Analyzer,
        query: &str,
        k: usize,
        traversal: Traversal,
    ) -> Vec<(u32, f32)> {
        self.search_terms(self.query_term_ids(analyzer, query, None), k, traversal)
    }

    /// [`Bm25Index::search_docs`] for a query whose tokens `known` mostly
    /// holds (built with the index by [`Bm25Index::build_with_tokens`]):
    /// the same ranking and scores, the tokens looked up rather than
    /// analysed.
    pub fn search_docs_known(
        &self,
        analyzer: &Analyzer,
        known: &TokenTerms,
        query: &str,
        k: usize,
    ) -> Vec<(u32, f32)> {
        let terms = self.query_term_ids(analyzer, query, Some(known));
        self.search_terms(terms, k, Traversal::MaxScore)
    }

    /// The top `k` for query terms given by number, with their counts.
    fn search_terms(
        &self,
        query: Vec<(usize, u32)>,
        k: usize,
        traversal: Traversal,
    ) -> Vec<(u32, f32)> {
        let prune = traversal == Traversal::MaxScore;
        if self.ids.is_empty() || k == 0 {
            return Vec::new();
        }
        let stats = &self.stats;
        let mut terms: Vec<Term> = query
            .into_iter()
            .map(|(index, count)| {
                let weight = self.weight(stats, count, self.postings.df(index));
                let bound = self.bound(weight, self.postings.term_max(index));
                Term {
                    index,
                    weight,
                    bound,
                }
            })
            .collect();
        if prune {
            terms.sort_by(|a, b| b.bound.total_cmp(&a.bound));
        }
        // What the terms from the i-th on can add at most.
        let mut rest: Vec<f64> = vec![0.0; terms.len() + 1];
        for i in (0..terms.len()).rev() {
            rest[i] = rest[i + 1] + terms[i].bound;
        }
        SCRATCH.with(|cell| {
            let scratch = &mut *cell.borrow_mut();
            scratch.fit(self.ids.len());
            let Scratch { scores, seen } = scratch;
            let mut touched = 0usize;
            // The best score so far: θ is at most that, so while the terms
            // left could add as much, θ need not be computed.
            let mut best = 0f64;
            // θ: the k-th best score so far, computed only once the terms
            // left could add less than the best score (θ is at most that).
            let mut theta = 0f64;
            // Postings scored since θ was last computed. θ only grows, so
            // an older θ is still a lower bound: it is recomputed (a pass
            // over every seen document) only once as many postings were
            // scored as there are seen documents, which bounds that work by
            // the scoring's; recomputed after every term, it was an eighth
            // of a long query's time.
            let mut scored = usize::MAX;
            let mut i = 0;
            while i < terms.len() {
                if prune && touched >= k && rest[i] * (1.0 + MARGIN) < best {
                    if rest[i] * (1.0 + MARGIN) >= theta && scored >= touched {
                        theta = kth(scores, &seen[..touched], k, theta);
                        scored = 0;
                    }
                    if rest[i] * (1.0 + MARGIN) < theta {
                        #[cfg(test)]
                        PRUNED.with(|p| p.set(p.get() + 1));
                        break;
                    }
                }
                let t = &terms[i];
                scored = scored.saturating_add(self.postings.df(t.index));
                let (n, b) = match self.term_scorer(t.weight) {
                    TermScorer::Lucene { weight, stats } => {
                        add_term(&self.postings, t.index, scores, seen, touched, |tf, d| {
                            lucene_score(stats, weight, tf, d)
                        })
                    }
                    TermScorer::Nltk { weight, index } => {
                        add_term(&self.postings, t.index, scores, seen, touched, |tf, d| {
                            index.robertson(&index.stats, weight, tf, index.lengths[d])
                        })
                    }
                };
                (touched, best) = (n, best.max(b));
                i += 1;
            }
            let seen = &seen[..touched];
            let mut candidates = if i < terms.len() {
                self.finish_seen(&terms[i..], &rest[i..], scores, seen, k, theta)
            } else {
                seen.to_vec()
            };
            let top = self.select_top(scores, &mut candidates, k);
            for &d in seen {
                scores[d as usize] = 0.0;
            }
            top
        })
    }

    /// The common terms' rows of frequencies, made on first use.
    fn dense_terms(&self) -> &super::dense::DenseTerms {
        self.dense.get_or_init(|| {
            let budget = (self.postings.payload_bytes() / 2).max(1 << 20);
            super::dense::DenseTerms::build(&self.postings, self.ids.len(), budget)
        })
    }

    /// Makes the search add every term from its postings, never from rows
    /// of frequencies (the reference the rows are tested against).
    #[cfg(test)]
    pub(crate) fn without_dense_rows(self) -> Self {
        let none = super::dense::DenseTerms::build(&self.postings, self.ids.len(), 0);
        assert!(self.dense.set(none).is_ok(), "rows not made yet");
        self
    }

    /// A term's score at weight `weight`, as a function of the term
    /// frequency and the document number: [`Bm25Index::score`] with the
    /// analyzer chosen once per term, not at every posting (the match kept
    /// the scoring loop from holding its state in registers).
    #[inline(always)]
    fn term_scorer(&self, weight: f32) -> TermScorer<'_> {
        match self.config.analyzer {
            AnalyzerKind::Lucene => TermScorer::Lucene {
                weight,
                stats: &self.stats,
            },
            AnalyzerKind::Nltk => TermScorer::Nltk {
                weight,
                index: self,
            },
        }
    }

    /// Adds the remaining terms' scores to the documents already seen that
    /// can still reach the top k. Returns those documents.
    ///
    /// θ is first raised by looking ahead ([`Bm25Index::look_ahead`]).
    /// A document that drops out is marked by a negative score (the final
    /// reset clears it with the others). A common term with a row of
    /// frequencies ([`super::dense`]) is read there for each live
    /// document. Another whose postings are mostly in blocks holding a
    /// live document is walked whole, adding to the positive scores only,
    /// without a branch; one whose live documents are few walks those in
    /// document order, skipping the blocks none of them is in.
    fn finish_seen(
        &self,
        terms: &[Term],
        rest: &[f64],
        scores: &mut [f64],
        seen: &[u32],
        k: usize,
        mut theta: f64,
    ) -> Vec<u32> {
        let dense = self.dense_terms();
        let rows: Vec<Option<super::dense::Row<'_>>> =
            terms.iter().map(|t| dense.row(t.index)).collect();
        if k <= LOOK_AHEAD_K {
            theta = self.look_ahead(terms, &rows, scores, seen, k, theta);
        }
        let mut alive = seen.to_vec();
        keep_live(&mut alive, scores, rest[0], theta);
        let mut ascending_yet = false;
        for (j, (t, row)) in terms.iter().zip(rows).enumerate() {
            // With four live documents a block, all but ~2 % of the blocks
            // hold one (e^-4), and the cursor's branches cost more than
            // scoring the postings it steps over; fewer, and the skipped
            // blocks pay (measured on `spar`: 1 per block was 10 % slower,
            // never walking whole 20 %).
            let way = match row {
                Some(row) => Way::Row(row),
                None if alive.len() >= 4 * self.postings.blocks(t.index).len() => Way::Whole,
                None => Way::Cursor,
            };
            #[cfg(test)]
            WALKED.with(|w| {
                let mut n = w.get();
                n[way.number()] += 1;
                w.set(n);
            });
            if matches!(way, Way::Cursor) && !ascending_yet {
                ascending(&mut alive, self.ids.len());
                ascending_yet = true;
            }
            let (postings, term) = (&self.postings, t.index);
            match self.term_scorer(t.weight) {
                TermScorer::Lucene { weight, stats } => {
                    add_live(way, postings, term, scores, &alive, |tf, d| {
                        lucene_score(stats, weight, tf, d)
                    })
                }
                TermScorer::Nltk { weight, index } => {
                    add_live(way, postings, term, scores, &alive, |tf, d| {
                        index.robertson(&index.stats, weight, tf, index.lengths[d])
                    })
                }
            }
            if alive.len() > k {
                theta = kth_above(scores, &alive, k, theta).map_or(theta, |t| theta.max(t));
            }
            keep_live(&mut alive, scores, rest[j + 1], theta);
        }
        alive
    }

    /// θ raised by looking ahead at the terms left (`terms`, with their
    /// rows of frequencies where they have one): the documents of the k
    /// best scores so far are given the scores of the terms left that
    /// have rows, a load each. Those are lower bounds of their final
    /// scores (the other terms add 0 or more), so the least of them is
    /// one of the final k-th, usually well above θ: MaxScore leaves the
    /// common terms, those with rows, for last, and the leaders hold them
    /// more often than not. On `spar`, the documents still alive as the
    /// last terms begin fell from ~420 to ~140 a query, its searches' time
    /// by 7 %. The leaders come out of the pass that finds the k-th best
    /// score: a second pass to find them cost all of that. Summed in
    /// another order than the final scores, but a dropped document misses
    /// θ by the relative [`MARGIN`], far wider than the rounding of a few
    /// additions.
    fn look_ahead(
        &self,
        terms: &[Term],
        rows: &[Option<super::dense::Row<'_>>],
        scores: &[f64],
        seen: &[u32],
        k: usize,
        theta: f64,
    ) -> f64 {
        if rows.iter().all(Option::is_none) {
            return theta;
        }
        let leaders = best_k::<Scored>(scores, seen, k, theta);
        let Some(&Reverse((kth, _))) = leaders.peek().filter(|_| leaders.len() == k) else {
            return theta;
        };
        let theta = theta.max(f64::from_bits(kth));
        let least = (leaders.iter())
            .map(|&Reverse((_, d))| {
                let mut s = scores[d as usize];
                for (t, row) in terms.iter().zip(rows) {
                    let tf = row.as_ref().map_or(0, |r| r.tf(d));
                    if tf != 0 {
                        s += f64::from(self.score(&self.stats, t.weight, tf, d as usize));
                    }
                }
                s
            })
            .fold(f64::INFINITY, f64::min);
        #[cfg(test)]
        if least > theta {
            LOOKED.with(|p| p.set(p.get() + 1));
        }
        theta.max(least)
    }

    /// The best `k` of `candidates` with the tie rule. The k-th best score
    /// is selected among bare floats first (a common term touches most of
    /// the corpus, and comparing through the documents was most of a
    /// query's time), then only the documents at or above it are ordered.
    fn select_top(&self, scores: &[f64], candidates: &mut Vec<u32>, k: usize) -> Vec<(u32, f32)> {
        let score = |d: u32| scores[d as usize] as f32;
        if candidates.len() > k {
            let mut values: Vec<f32> = candidates.iter().map(|&d| score(d)).collect();
            let (_, kth, _) = values.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
            let kth = *kth;
            candidates.retain(|&d| score(d) >= kth);
        }
        let lucene = self.config.analyzer == AnalyzerKind::Lucene;
        candidates.sort_unstable_by(|&a, &b| {
            score(b).total_cmp(&score(a)).then_with(|| {
                if lucene {
                    self.ids[a as usize].cmp(&self.ids[b as usize])
                } else {
                    a.cmp(&b)
                }
            })
        });
        candidates.truncate(k);
        candidates.iter().map(|&d| (d, score(d))).collect()
    }

    /// The scores `query` gives the documents numbered `docs` (any order,
    /// repeats allowed), as a search would score them; 0 for a document
    /// holding no query term. A teacher scoring another retriever's
    /// candidates (LTRe's fusion teacher) needs these few scores, not a
    /// search: each term's postings are walked once, skipping blocks, over
    /// the candidates in ascending order.
    pub fn score_docs(&self, analyzer: &Analyzer, query: &str, docs: &[u32]) -> Vec<f32> {
        let mut totals = vec![0f64; docs.len()];
        let mut order: Vec<usize> = (0..docs.len())
            .filter(|&i| (docs[i] as usize) < self.ids.len())
            .collect();
        order.sort_by_key(|&i| docs[i]);
        let stats = &self.stats;
        for (t, count) in self.query_term_ids(analyzer, query, None) {
            let weight = self.weight(stats, count, self.postings.df(t));
            let mut cursor = Cursor::new(&self.postings, t);
            for &i in &order {
                if let Some(tf) = cursor.tf(docs[i]) {
                    totals[i] += f64::from(self.score(stats, weight, tf, docs[i] as usize));
                }
            }
        }
        totals.into_iter().map(|s| s as f32).collect()
    }

    /// The largest contribution a term of weight `weight` can make where
    /// its largest impact is `max` (see [`impact`]).
    pub(super) fn bound(&self, weight: f32, max: f32) -> f64 {
        match self.config.analyzer {
            // The score is increasing in `tf · norm⁻¹`, and rounding keeps
            // it so: this is the score of the best posting itself.
            AnalyzerKind::Lucene => f64::from(super::lucene::term_score(weight, 1.0, max)),
            // `idf · tf·(k1+1)/(tf+norm)` is rounded in another order than
            // `idf · max`: a few float steps of slack.
            AnalyzerKind::Nltk => f64::from(weight) * f64::from(max) * (1.0 + 1e-5),
        }
    }
}

/// A term's scoring, by analyzer (see [`Bm25Index::term_scorer`]).
enum TermScorer<'a> {
    Lucene { weight: f32, stats: &'a Stats },
    Nltk { weight: f32, index: &'a Bm25Index },
}

/// Lucene's term score of a posting: `w − w / (1 + tf · norm⁻¹)` with the
/// document's cached reciprocal norm.
#[inline(always)]
pub(super) fn lucene_score(stats: &Stats, weight: f32, tf: u32, doc: usize) -> f32 {
    super::lucene::term_score(weight, tf as f32, stats.cache[stats.norms[doc] as usize])
}

/// Adds term `term`'s score (`score(tf, doc)`) to every document in its
/// postings, recording the documents touched for the first time in
/// `seen` after the first `touched`. Returns the new count of touched
/// documents and the best score among those this term reached.
#[inline(always)]
fn add_term(
    postings: &super::postings::Postings,
    term: usize,
    scores: &mut [f64],
    seen: &mut [u32],
    mut touched: usize,
    score: impl Fn(u32, usize) -> f32,
) -> (usize, f64) {
    let mut out = Decoded::default();
    // The new scores of a block, whose best is taken after it: a running
    // maximum in the loop was a chain through memory, half its time.
    let mut news = [0f64; super::postings::BLOCK];
    let mut best = [0f64; 4];
    for b in postings.blocks(term) {
        postings.decode(term, b, &mut out);
        for (j, (d, tf)) in out.iter().enumerate() {
            let s = scores[d as usize];
            // Every contribution is positive (idf > 0, tf > 0), so 0 is
            // a document not touched before.
            let new = s + f64::from(score(tf, d as usize));
            scores[d as usize] = new;
            news[j] = new;
            seen[touched] = d;
            touched += usize::from(s == 0.0);
        }
        // Four running maxima (a comparison, not `f64::max` and its NaN
        // rule), over the block rounded up to four: past its end, `news`
        // holds zeros or scores this term reached before, no higher than
        // those documents' scores now, so they cannot raise the best.
        let used = out.len.next_multiple_of(4);
        for four in news[..used].chunks_exact(4) {
            for (b, &x) in best.iter_mut().zip(four) {
                *b = if x > *b { x } else { *b };
            }
        }
    }
    let best = best
        .into_iter()
        .fold(0f64, |a, x| if x > a { x } else { a });
    (touched, best)
}

/// Keeps the documents of `docs` whose score plus `rest` can still reach
/// θ, in order, and marks the others dropped (a negative score). Without
/// a branch: whether a document stays is a coin toss the predictor lost.
fn keep_live(docs: &mut Vec<u32>, scores: &mut [f64], rest: f64, theta: f64) {
    let mut kept = 0;
    for i in 0..docs.len() {
        let d = docs[i];
        let s = scores[d as usize];
        let keep = (s + rest) * (1.0 + MARGIN) >= theta;
        scores[d as usize] = if keep { s } else { -1.0 };
        docs[kept] = d;
        kept += usize::from(keep);
    }
    docs.truncate(kept);
}

/// How [`Bm25Index::finish_seen`] adds a term to the live documents.
enum Way<'a> {
    /// Every posting, to the positive scores.
    Whole,
    /// The live documents' postings, by cursor.
    Cursor,
    /// The live documents' frequencies, from the term's row.
    Row(super::dense::Row<'a>),
}

impl Way<'_> {
    /// The way's place in the test's tally.
    #[cfg(test)]
    fn number(&self) -> usize {
        match self {
            Way::Whole => 0,
            Way::Cursor => 1,
            Way::Row(_) => 2,
        }
    }
}

/// Adds a term's score (`score(tf, doc)`) to the live documents `live`
/// (ascending when `way` is by cursor), the way `way` says.
#[inline(always)]
fn add_live(
    way: Way<'_>,
    postings: &super::postings::Postings,
    term: usize,
    scores: &mut [f64],
    live: &[u32],
    score: impl Fn(u32, usize) -> f32,
) {
    match way {
        Way::Row(row) => add_from_row(&row, scores, live, score),
        Way::Whole => add_to_positive(postings, term, scores, score),
        Way::Cursor => add_to_listed(postings, term, scores, live, score),
    }
}

/// Adds a term's score to the documents `docs`, their frequencies read
/// from its row; 0 adds nothing, without a branch: a document lacks a
/// common term about as often as it holds it.
#[inline(always)]
fn add_from_row(
    row: &super::dense::Row<'_>,
    scores: &mut [f64],
    docs: &[u32],
    score: impl Fn(u32, usize) -> f32,
) {
    for &d in docs {
        let tf = row.tf(d);
        let add = f64::from(score(tf, d as usize));
        // All bits cleared for a frequency of 0: the score of a missing
        // term need not even be a number (0/0 with k1 = 0), and a select
        // here was compiled into the branch it was meant to avoid.
        let mask = u64::from(tf != 0).wrapping_neg();
        scores[d as usize] += f64::from_bits(add.to_bits() & mask);
    }
}

/// Adds term `term`'s score to every document of its postings whose
/// score is positive (seen and still alive), leaving the others as
/// they are.
#[inline(always)]
fn add_to_positive(
    postings: &super::postings::Postings,
    term: usize,
    scores: &mut [f64],
    score: impl Fn(u32, usize) -> f32,
) {
    let mut out = Decoded::default();
    for b in postings.blocks(term) {
        postings.decode(term, b, &mut out);
        for (d, tf) in out.iter() {
            let s = scores[d as usize];
            let new = s + f64::from(score(tf, d as usize));
            scores[d as usize] = if s > 0.0 { new } else { s };
        }
    }
}

/// Adds term `term`'s score to the documents `docs` (ascending) that it
/// holds, skipping the blocks none of them is in.
#[inline(always)]
fn add_to_listed(
    postings: &super::postings::Postings,
    term: usize,
    scores: &mut [f64],
    docs: &[u32],
    score: impl Fn(u32, usize) -> f32,
) {
    let mut cursor = Cursor::new(postings, term);
    for &d in docs {
        if let Some(tf) = cursor.tf(d) {
            scores[d as usize] += f64::from(score(tf, d as usize));
        }
    }
}

/// The query-independent part of a posting's score, increasing with it:
/// what each term keeps the largest of (see [`Bm25Index::bound`]).
pub(super) fn impact(
    config: &Bm25Config,
    stats: &Stats,
    lengths: &[u32],
    tf: u32,
    doc: u32,
) -> f32 {
    match config.analyzer {
        AnalyzerKind::Lucene => tf as f32 * stats.cache[stats.norms[doc as usize] as usize],
        AnalyzerKind::Nltk => {
            let (k1, b, tf) = (config.k1, config.b, tf as f32);
            let norm = k1 * (1.0 - b + b * lengths[doc as usize] as f32 / stats.avgdl);
            tf * (k1 + 1.0) / (tf + norm)
        }
    }
}

/// Orders distinct document numbers below `n`. Many of them (a common
/// term's documents still alive, up to most of the corpus) are marked in a
/// bitmap and read back in order, one pass over `n / 64` words; a sort of
/// hundreds of thousands of numbers was a tenth of a query's time. Few are
/// sorted.
fn ascending(docs: &mut Vec<u32>, n: usize) {
    if docs.len() < n / 256 {
        docs.sort_unstable();
        return;
    }
    let mut bits = vec![0u64; n.div_ceil(64)];
    for &d in docs.iter() {
        bits[d as usize / 64] |= 1 << (d % 64);
    }
    docs.clear();
    for (w, &word) in bits.iter().enumerate() {
        let mut x = word;
        while x != 0 {
            docs.push((w * 64) as u32 + x.trailing_zeros());
            x &= x - 1;
        }
    }
}

/// The k-th best score among `docs` (0 when there are fewer), given
/// `floor`, a score at least k of them reach ([`best_k`]). Should fewer
/// than k reach the floor, it was not one, and all are counted.
fn kth(scores: &[f64], docs: &[u32], k: usize, floor: f64) -> f64 {
    kth_above(scores, docs, k, floor)
        // The floor was not one: all are counted.
        .or_else(|| (floor != 0.0).then(|| kth_above(scores, docs, k, 0.0))?)
        .unwrap_or(0.0)
}

/// The k-th best score among `docs` when at least k reach `floor`: what
/// can raise a θ of `floor`, without the second pass [`kth`] makes when
/// the floor is above its answer (after a look ahead, θ often is).
fn kth_above(scores: &[f64], docs: &[u32], k: usize, floor: f64) -> Option<f64> {
    let best = best_k::<Score>(scores, docs, k, floor);
    match best.peek() {
        Some(&Reverse(bits)) if best.len() == k => Some(f64::from_bits(bits)),
        _ => None,
    }
}

/// What [`best_k`] keeps of a document in its heap: enough to order it by
/// score (the score's bits first).
trait Ranked: Ord + Copy {
    fn of(bits: u64, doc: u32) -> Self;
    fn bits(&self) -> u64;
}

/// The score alone (the k-th best is all θ needs; half the heap's size).
type Score = u64;

impl Ranked for Score {
    fn of(bits: u64, _: u32) -> Self {
        bits
    }
    fn bits(&self) -> u64 {
        *self
    }
}

/// The score and its document.
type Scored = (u64, u32);

impl Ranked for Scored {
    fn of(bits: u64, doc: u32) -> Self {
        (bits, doc)
    }
    fn bits(&self) -> u64 {
        self.0
    }
}

/// The k best scores among `docs` at or above `floor`, with their
/// documents, least on top (fewer when fewer reach it). The floor is
/// usually θ as last computed: scores only grow, so the documents that
/// made it still reach it.
///
/// A heap of the best k so far, not a selection over all of them: this
/// runs over every document a query's terms touched (most of the corpus
/// with a common term), and copying their scores out to select among them
/// was a third of a query's time, where a score below the heap's least
/// costs one comparison. The heap is filled with documents at or above
/// the floor only, so the many below it never enter it (with the BM25
/// negatives' k of 100, filling and refilling the heap was most of this
/// function's time). Scores are positive or zero, so their bits order as
/// they do.
fn best_k<R: Ranked>(scores: &[f64], docs: &[u32], k: usize, floor: f64) -> BinaryHeap<Reverse<R>> {
    if docs.len() < k || k == 0 {
        return BinaryHeap::new();
    }
    let floor = floor.to_bits();
    let mut best = BinaryHeap::with_capacity(k);
    let mut rest = docs.iter();
    for &d in rest.by_ref() {
        let bits = scores[d as usize].to_bits();
        if bits >= floor {
            best.push(Reverse(R::of(bits, d)));
            if best.len() == k {
                break;
            }
        }
    }
    if best.len() < k {
        return best;
    }
    let mut least = best.peek().map_or(0, |r| r.0.bits());
    for &d in rest {
        let bits = scores[d as usize].to_bits();
        if bits > least {
            if let Some(mut top) = best.peek_mut() {
                *top = Reverse(R::of(bits, d));
            }
            least = best.peek().map_or(0, |r| r.0.bits());
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// Documents and queries of Zipf-distributed words: a few words in
    /// most documents (the stopword-like terms pruning is for), many rare
    /// ones, repeated words and many tied scores.
    fn corpus(seed: u64) -> (Vec<(String, String)>, Vec<String>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let zipf = rand_distr::Zipf::new(2000.0, 1.1).unwrap();
        let word = |rng: &mut rand::rngs::StdRng| {
            let r: f64 = rand_distr::Distribution::sample(&zipf, rng);
            format!("w{}", r as u32)
        };
        let docs = (0..3000)
            .map(|i| {
                let n = rng.random_range(1..40);
                let text: Vec<String> = (0..n).map(|_| word(&mut rng)).collect();
                // Ids out of order, so the id tie rule differs from numbers.
                (format!("d{}", (i * 7919) % 3000), text.join(" "))
            })
            .collect();
        let queries = (0..300)
            .map(|_| {
                let n = rng.random_range(1..9);
                (0..n).map(|_| word(&mut rng)).collect::<Vec<_>>().join(" ")
            })
            .collect();
        (docs, queries)
    }

    #[test]
    fn kth_and_ascending_agree_with_selection_and_sorting() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..100 {
            let n = rng.random_range(1..5000);
            // Scores on a grid (ties) with zeros among them.
            let scores: Vec<f64> = (0..n)
                .map(|_| rng.random_range(0..50) as f64 / 8.0)
                .collect();
            let mut docs: Vec<u32> = (0..n as u32).filter(|_| rng.random_bool(0.6)).collect();
            let k = rng.random_range(1..120);
            let mut values: Vec<f64> = docs.iter().map(|&d| scores[d as usize]).collect();
            let want = match values.len() < k {
                true => 0.0,
                false => {
                    *values
                        .select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a))
                        .1
                }
            };
            // No floor, floors at or below the answer, and ones above it
            // (not floors: fewer than k reach them) give the same.
            for floor in [0.0, want / 2.0, want, want + 0.125, 1e9] {
                assert_eq!(
                    kth(&scores, &docs, k, floor),
                    want,
                    "n {n} k {k} floor {floor}"
                );
                // Without the second pass: only a floor at or below the
                // answer gives it.
                let above = (floor <= want && values.len() >= k).then_some(want);
                assert_eq!(kth_above(&scores, &docs, k, floor), above, "n {n} k {k}");
            }
            let mut sorted = docs.clone();
            sorted.sort();
            // Shuffled, both paths (few and many documents).
            for i in (1..docs.len()).rev() {
                docs.swap(i, rng.random_range(0..=i));
            }
            let few = docs.len().min(n / 256 + 1).saturating_sub(1);
            let mut part = docs[..few].to_vec();
            let mut part_sorted = part.clone();
            part_sorted.sort();
            ascending(&mut part, n);
            assert_eq!(part, part_sorted);
            ascending(&mut docs, n);
            assert_eq!(docs, sorted);
        }
    }

    #[test]
    fn known_tokens_analyse_and_rank_as_the_analyzer_does() {
        let words = [
            "The",
            "cats",
            "Cat's",
            "RUNNING",
            "runs",
            "runner",
            "and",
            "of",
            "parks",
            "park",
            "Python's",
            "dictionaries",
            "dictionary",
            "é",
            "naïve",
            "x2",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut text = |n: usize| -> String {
            (0..n)
                .map(|_| words[rng.random_range(0..words.len())])
                .collect::<Vec<_>>()
                .join(" ")
        };
        let docs: Vec<(String, String)> = (0..300).map(|i| (format!("d{i}"), text(12))).collect();
        // Queries of the corpus's tokens, and of tokens it never holds.
        let mut queries: Vec<String> = (0..200).map(|_| text(6)).collect();
        queries.extend(
            [
                "zebra cats zebras",
                "THE the The",
                "Runs runs RUNS park's",
                "",
            ]
            .map(String::from),
        );
        for analyzer in [AnalyzerKind::Lucene, AnalyzerKind::Nltk] {
            let config = Bm25Config {
                analyzer,
                ..Default::default()
            };
            let (index, known) = Bm25Index::build_with_tokens(&docs, config);
            let a = Analyzer::new(config);
            assert!(
                known.len() >= words.len(),
                "{analyzer:?}: {} tokens",
                known.len()
            );
            assert_eq!(
                known.0.get("The"),
                Some(&None),
                "a stopword is known as one"
            );
            for q in &queries {
                // The string-keyed reference: terms, counted, then found.
                let want: Vec<(usize, u32)> = index
                    .query_terms(&a, q)
                    .into_iter()
                    .filter_map(|(t, c)| Some((index.term_index(&t)?, c)))
                    .collect();
                assert_eq!(
                    index.query_term_ids(&a, q, None),
                    want,
                    "{analyzer:?} {q:?}"
                );
                assert_eq!(
                    index.query_term_ids(&a, q, Some(&known)),
                    want,
                    "{analyzer:?} {q:?}"
                );
                // A text's score, by lookup or analysis, is the score the
                // search gives it as a document; and a text with words
                // the corpus never holds scores the same either way.
                for d in [0u32, 7, 150] {
                    let text = &docs[d as usize].1;
                    let searched = index.score_docs(&a, q, &[d])[0];
                    assert_eq!(index.score_text(&a, q, text).to_bits(), searched.to_bits());
                    assert_eq!(
                        index.score_text_known(&a, &known, q, text).to_bits(),
                        searched.to_bits(),
                        "{analyzer:?} {q:?} {text:?}"
                    );
                    let odd = format!("zebras {text} Zebra's quagga");
                    assert_eq!(
                        index.score_text_known(&a, &known, q, &odd).to_bits(),
                        index.score_text(&a, q, &odd).to_bits(),
                        "{analyzer:?} {q:?} {odd:?}"
                    );
                }
                for k in [1, 5, 300] {
                    let bits = |v: Vec<(u32, f32)>| -> Vec<(u32, u32)> {
                        v.into_iter().map(|(d, s)| (d, s.to_bits())).collect()
                    };
                    assert_eq!(
                        bits(index.search_docs_known(&a, &known, q, k)),
                        bits(index.search_docs(&a, q, k)),
                        "{analyzer:?} {q:?} k={k}"
                    );
                }
            }
        }
    }

    #[test]
    fn scored_candidates_get_their_search_scores() {
        for analyzer in [AnalyzerKind::Lucene, AnalyzerKind::Nltk] {
            let (docs, queries) = corpus(11);
            let config = Bm25Config {
                analyzer,
                ..Default::default()
            };
            let index = Bm25Index::build(&docs, config);
            let a = Analyzer::new(config);
            for q in queries.iter().take(50) {
                let hits = index.search_docs_with(&a, q, docs.len(), Traversal::Exhaustive);
                let mut want = vec![0f32; docs.len()];
                for &(d, s) in &hits {
                    want[d as usize] = s;
                }
                // Every third document, in descending order, one repeated
                // and one past the corpus.
                let mut asked: Vec<u32> = (0..docs.len() as u32).step_by(3).rev().collect();
                asked.push(asked[0]);
                let got = index.score_docs(&a, q, &asked);
                for (&d, &s) in asked.iter().zip(&got) {
                    assert_eq!(
                        s.to_bits(),
                        want[d as usize].to_bits(),
                        "{analyzer:?} {q:?} doc {d}"
                    );
                }
                assert_eq!(index.score_docs(&a, q, &[docs.len() as u32]), vec![0.0]);
            }
        }
    }

    #[test]
    fn pruned_search_ranks_as_exhaustive_scoring() {
        for analyzer in [AnalyzerKind::Lucene, AnalyzerKind::Nltk] {
            let (docs, queries) = corpus(7);
            let config = Bm25Config {
                analyzer,
                ..Default::default()
            };
            let a = Analyzer::new(config);
            // The common terms read from their rows, then from postings only.
            let mut ways = [0; 3];
            for rows in [true, false] {
                let index = Bm25Index::build(&docs, config);
                let index = if rows {
                    index
                } else {
                    index.without_dense_rows()
                };
                PRUNED.with(|p| p.set(0));
                WALKED.with(|w| w.set([0; 3]));
                LOOKED.with(|p| p.set(0));
                for k in [1, 10, 100] {
                    for q in &queries {
                        let fast = index.search_docs(&a, q, k);
                        let full = index.search_docs_with(&a, q, k, Traversal::Exhaustive);
                        let bits = |v: &[(u32, f32)]| -> Vec<(u32, u32)> {
                            v.iter().map(|&(d, s)| (d, s.to_bits())).collect()
                        };
                        assert_eq!(
                            bits(&fast),
                            bits(&full),
                            "{analyzer:?} k={k} rows {rows} {q:?}"
                        );
                    }
                }
                let pruned = PRUNED.with(|p| p.get());
                assert!(
                    pruned > 300,
                    "{analyzer:?}: only {pruned} of 900 searches pruned"
                );
                // Only rows are looked ahead in.
                let looked = LOOKED.with(|p| p.get());
                assert!(
                    (looked > 50) == rows,
                    "{analyzer:?}: θ raised by looking ahead {looked} times, rows {rows}"
                );
                let n = WALKED.with(|w| w.get());
                (0..3).for_each(|i| ways[i] += n[i]);
            }
            // Every way of adding the last terms was compared.
            let [whole, cursor, row] = ways;
            assert!(
                whole > 100 && cursor > 100 && row > 100,
                "{analyzer:?}: {whole} terms walked whole, {cursor} by cursor, {row} from rows"
            );
        }
    }
}
