use std::path::Path;

use super::*;

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metrics")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

/// The fixture's values come from pytrec_eval (`make_expected.py` beside them).
#[test]
fn matches_pytrec_eval_on_the_fixture() {
    let qrels = crate::eval::beir::parse_qrels(&fixture("qrels.tsv"), "qrels.tsv").unwrap();
    let run = crate::eval::beir::parse_trec_run(&fixture("run.trec"), "run.trec").unwrap();
    let expected: serde_json::Value = serde_json::from_str(&fixture("expected.json")).unwrap();
    let (means, per_query) = evaluate(&qrels, &run, &Measure::DEFAULT);
    assert_eq!(
        per_query.len(),
        expected["per_query"].as_object().unwrap().len()
    );
    for (q, values) in &per_query {
        for (name, v) in values {
            let want = expected["per_query"][q][name].as_f64().unwrap();
            assert!(
                (v - want).abs() < 1e-9,
                "{q} {name}: {v} vs pytrec_eval {want}"
            );
        }
    }
    for (name, v) in &means {
        let want = expected["means"][name].as_f64().unwrap();
        assert!((v - want).abs() < 1e-9, "{name}: {v} vs {want}");
    }
}

#[test]
fn hand_computed_values() {
    let judged: BTreeMap<String, i32> = [("a", 2), ("b", 1), ("c", 0)]
        .iter()
        .map(|(d, r)| (d.to_string(), *r))
        .collect();
    let mut hits = vec![
        ("c".to_string(), 3.0),
        ("b".to_string(), 2.0),
        ("z".to_string(), 2.0),
        ("a".to_string(), 1.0),
    ];
    trec_order(&mut hits);
    assert_eq!(hits[1].0, "z", "ties: higher document id first");
    let ndcg = score(Measure::Ndcg(10), &judged, &hits);
    let dcg = 1.0 / 4f64.log2() + 2.0 / 5f64.log2();
    let idcg = 2.0 + 1.0 / 3f64.log2();
    assert!((ndcg - dcg / idcg).abs() < 1e-12);
    assert_eq!(score(Measure::Rr(10), &judged, &hits), 1.0 / 3.0);
    assert_eq!(score(Measure::Recall(2), &judged, &hits), 0.0);
    assert_eq!(score(Measure::Recall(100), &judged, &hits), 1.0);
    assert!(
        (score(Measure::Ap(100), &judged, &hits) - (1.0 / 3.0 + 2.0 / 4.0) / 2.0).abs() < 1e-12
    );
}

#[test]
fn broken_ties_survive_trec_order() {
    // Ties in the order searched (ascending id, as Lucene's), a score one
    // step below a tie, and zeros: after the adjustment, trec order (which
    // would put "b" before "a") keeps the searched order.
    let searched: Vec<(String, f32)> = [
        ("a", 2.0f32),
        ("b", 2.0),
        ("c", 2.0),
        ("d", 1.5),
        ("e", 0.0),
        ("f", 0.0),
    ]
    .iter()
    .map(|(d, s)| (d.to_string(), *s))
    .collect();
    let mut hits = searched.clone();
    break_ties_in_place(&mut hits);
    assert!(hits.windows(2).all(|w| w[0].1 > w[1].1), "{hits:?}");
    for (h, s) in hits.iter().zip(&searched) {
        assert!((h.1 - s.1).abs() < 1e-6, "{h:?} vs {s:?}");
    }
    let mut resorted = hits.clone();
    trec_order(&mut resorted);
    assert_eq!(resorted, hits);
    let mut unadjusted = searched.clone();
    trec_order(&mut unadjusted);
    assert_ne!(unadjusted, searched, "without it, trec order reorders ties");
}
