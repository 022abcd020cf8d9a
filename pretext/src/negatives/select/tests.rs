use rand::SeedableRng;

use super::*;
use crate::negatives::{NegativesConfig, Source};
use crate::pipeline::TaskRng;

fn ranked(n: u32) -> Vec<Candidate> {
    (0..n)
        .map(|i| Candidate {
            item: i,
            score: 100.0 - i as f32,
        })
        .collect()
}

fn pool(n: u32) -> Vec<String> {
    (0..n).map(|i| format!("passage number {i}")).collect()
}

fn config(source: Source) -> NegativesConfig {
    NegativesConfig {
        source,
        ..NegativesConfig::default()
    }
}

fn query<'a>(positive: &'a str, score: Option<f32>, answers: &'a [String]) -> Query<'a> {
    Query {
        positive,
        positive_score: score,
        answers,
        exclude: None,
    }
}

#[test]
fn window_takes_ranks_after_range_min_up_to_range_max() {
    let c = NegativesConfig {
        range_min: 100,
        range_max: 500,
        ..config(Source::Bm25)
    };
    let list = ranked(1000);
    let w: Vec<(usize, u32)> = Miner::new(&c)
        .window(&list)
        .map(|(r, c)| (r, c.item))
        .collect();
    assert_eq!(w.len(), 400);
    assert_eq!(w[0], (101, 100), "EBR's window starts at rank 101");
    assert_eq!(*w.last().unwrap(), (500, 499));
    // A short list is cut, not padded.
    assert_eq!(Miner::new(&c).window(&list[..150]).count(), 50);
    assert_eq!(Miner::new(&c).window(&list[..50]).count(), 0);
}

#[test]
fn hard_quota_mixes_at_the_ratio_on_average_and_respects_the_cap() {
    let mut rng = TaskRng::seed_from_u64(1);
    let c = NegativesConfig {
        count: 4,
        easy_ratio: 3.0,
        ..config(Source::Bm25)
    };
    // 4 / (1 + 3) = 1 hard, exactly.
    assert!((0..100).all(|_| Miner::new(&c).hard_quota(&mut rng) == 1));
    let c = NegativesConfig {
        count: 2,
        easy_ratio: 100.0,
        ..config(Source::Bm25)
    };
    let hard: usize = (0..101_000)
        .map(|_| Miner::new(&c).hard_quota(&mut rng))
        .sum();
    let easy = 2 * 101_000 - hard;
    let ratio = easy as f64 / hard as f64;
    assert!((ratio - 100.0).abs() < 8.0, "easy:hard {ratio}");
    let c = NegativesConfig {
        count: 8,
        max_hard: 2,
        ..config(Source::Bm25)
    };
    assert_eq!(Miner::new(&c).hard_quota(&mut rng), 2, "EBR's cap");
    assert_eq!(Miner::new(&config(Source::Random)).hard_quota(&mut rng), 0);
}

#[test]
fn each_filter_rule_drops_what_it_names() {
    let c = NegativesConfig {
        absolute_margin: Some(1.0),
        relative_margin: Some(0.1),
        ..config(Source::Bm25)
    };
    let m = Miner::new(&c);
    let answers = vec!["Paris".to_string()];
    let q = query("the capital of France", Some(10.0), &answers);
    assert_eq!(
        m.check(&q, "Yes: the capital of France is nice", Some(1.0), None),
        Err(Rule::PositiveText)
    );
    assert_eq!(
        m.check(&q, "It lies in paris.", Some(1.0), None),
        Err(Rule::Answer),
        "answers match case-insensitively"
    );
    assert_eq!(
        m.check(&q, "other", Some(9.5), None),
        Err(Rule::AbsoluteMargin)
    );
    // 8.5 passes the absolute margin (<= 9) and a 10 % relative one (<= 9),
    // but not a 20 % one (<= 8).
    let c2 = NegativesConfig {
        relative_margin: Some(0.2),
        ..c.clone()
    };
    assert_eq!(
        Miner::new(&c2).check(&q, "other", Some(8.5), None),
        Err(Rule::RelativeMargin),
        "8.5 > 10 * (1 - 0.2)"
    );
    assert_eq!(m.check(&q, "other", Some(8.5), None), Ok(()));
    // Raters: a second encoder's cosine above rescore_threshold (0.9)
    // drops a candidate, then a cross-encoder's probability above
    // ce_max_score (0.1), asked only when the encoder lets it through.
    let rated = |encoder: f32, cross: Option<f32>| {
        let cross = cross.map(|p| move |_: u32| p);
        m.check(
            &q,
            "other",
            Some(1.0),
            Some((
                0,
                Raters {
                    encoder: Some(&move |_| encoder),
                    cross: cross.as_ref().map(|f| f as &dyn Fn(u32) -> f32),
                },
            )),
        )
    };
    assert_eq!(
        rated(0.95, None),
        Err(Rule::Rescore),
        "the second scorer rates it above 0.9"
    );
    assert_eq!(rated(0.05, None), Ok(()));
    assert_eq!(rated(0.05, Some(0.5)), Err(Rule::CrossEncoder));
    assert_eq!(rated(0.05, Some(0.05)), Ok(()));
    assert_eq!(rated(0.95, Some(0.05)), Err(Rule::Rescore));
    // Without the positive's score, the margins cannot apply.
    assert_eq!(
        m.check(&query("x y", None, &[]), "other", Some(99.0), None),
        Ok(())
    );
    // Turned off, the text rules keep everything.
    let off = NegativesConfig {
        drop_positive_text: false,
        drop_answers: false,
        ..config(Source::Bm25)
    };
    assert_eq!(
        Miner::new(&off).check(&q, "the capital of France, Paris", None, None),
        Ok(())
    );
}

#[test]
fn mine_takes_the_top_of_the_window_skips_the_positive_and_counts_drops() {
    let c = NegativesConfig {
        count: 3,
        range_min: 2,
        range_max: 10,
        absolute_margin: Some(0.0),
        ..config(Source::Bm25)
    };
    let texts = pool(20);
    let mut list = ranked(20);
    // Rank 3 is the positive's own document; rank 4 contains the positive text.
    let positive = "the true positive";
    let mut texts = texts;
    texts[3] = format!("intro, {positive}, outro");
    list[4].score = 200.0; // above the positive's score: margin rule
    let q = Query {
        positive,
        positive_score: Some(150.0),
        answers: &[],
        exclude: Some(2),
    };
    let mut stats = MiningStats::default();
    let mut rng = TaskRng::seed_from_u64(7);
    let got = Miner::new(&c).mine(
        &q,
        &list,
        &texts,
        (&texts, Kind::Random),
        Raters::default(),
        &mut rng,
        &mut stats,
    );
    let items: Vec<u32> = got.iter().map(|p| p.item).collect();
    assert_eq!(items, vec![5, 6, 7]);
    assert_eq!(got[0].rank, Some(6));
    assert_eq!(got[0].kind, Kind::Hard);
    assert_eq!(stats.candidates, 8);
    assert_eq!(stats.filtered[&Rule::PositiveText], 2);
    assert_eq!(stats.filtered[&Rule::AbsoluteMargin], 1);
    assert_eq!((stats.hard, stats.easy, stats.short_queries), (3, 0, 0));
    assert_eq!(stats.positive_scores, vec![150.0]);
    assert_eq!(stats.negative_scores.len(), 3);
}

#[test]
fn easy_negatives_fill_the_mix_and_a_short_query_is_counted() {
    let c = NegativesConfig {
        count: 4,
        easy_ratio: 1.0,
        range_max: 3,
        ..config(Source::Bm25)
    };
    let texts = pool(50);
    let list = ranked(3);
    let q = Query {
        exclude: Some(10),
        ..query("nothing", None, &[])
    };
    let mut stats = MiningStats::default();
    let mut rng = TaskRng::seed_from_u64(3);
    let got = Miner::new(&c).mine(
        &q,
        &list,
        &texts,
        (&texts, Kind::Random),
        Raters::default(),
        &mut rng,
        &mut stats,
    );
    let hard = got.iter().filter(|p| p.kind == Kind::Hard).count();
    let easy: Vec<u32> = got
        .iter()
        .filter(|p| p.kind == Kind::Random)
        .map(|p| p.item)
        .collect();
    assert_eq!((hard, easy.len()), (2, 2));
    assert!(easy.iter().all(|&i| i != 10), "the positive is never drawn");
    let mut dedup = got.iter().map(|p| p.item).collect::<Vec<_>>();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 4, "no negative twice");
    // A window with one candidate leaves the query short (no silent fill).
    let mut stats = MiningStats::default();
    let c1 = NegativesConfig {
        count: 2,
        range_max: 1,
        easy_ratio: 0.0,
        ..c
    };
    let got = Miner::new(&c1).mine(
        &q,
        &list,
        &texts,
        (&texts, Kind::Random),
        Raters::default(),
        &mut rng,
        &mut stats,
    );
    assert_eq!(got.len(), 1);
    assert_eq!(stats.short_queries, 1);
}

#[test]
fn random_sampling_is_seeded_and_keeps_rank_order() {
    let c = NegativesConfig {
        count: 5,
        range_max: 100,
        sampling: Sampling::Random,
        ..config(Source::Dense)
    };
    let texts = pool(100);
    let list = ranked(100);
    let run = |seed| {
        let mut rng = TaskRng::seed_from_u64(seed);
        Miner::new(&c).mine(
            &query("zzz", None, &[]),
            &list,
            &texts,
            (&texts, Kind::Random),
            Raters::default(),
            &mut rng,
            &mut MiningStats::default(),
        )
    };
    let a = run(11);
    assert_eq!(a, run(11), "same seed, same negatives");
    assert_ne!(a, run(12));
    assert!(a.windows(2).all(|w| w[0].rank < w[1].rank));
    assert!(a.iter().any(|p| p.rank.unwrap() > 5), "not just the top");
}

#[test]
fn summary_quantiles() {
    let s = crate::negatives::Summary::of(&[4.0, 1.0, 3.0, 2.0, 5.0]).unwrap();
    assert_eq!((s.min, s.p50, s.max, s.count), (1.0, 3.0, 5.0, 5));
    assert!((s.mean - 3.0).abs() < 1e-6);
    assert!(crate::negatives::Summary::of(&[]).is_none());
}
