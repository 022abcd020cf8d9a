use std::borrow::Cow;

use serde_json::{json, Value};

use super::*;

fn sample() -> (Document<'static>, Pair<'static>) {
    let doc = Document {
        id: Cow::Borrowed("doc-1"),
        title: Some(Cow::Borrowed("Title")),
        text: Cow::Borrowed("query text. positive text. negative text."),
        ordinal: 0,
        line: None,
        source: 0,
    };
    let pair = Pair {
        query: Text {
            text: "query text.".into(),
            title: None,
            span: Some(Span::new(0, 11)),
            doc_id: None,
        },
        positive: Text {
            text: "positive text.".into(),
            title: Some("Title".into()),
            span: Some(Span::new(12, 26)),
            doc_id: None,
        },
        negatives: vec![Text {
            text: "negative \"text\".".into(),
            title: None,
            span: Some(Span::new(27, 41)),
            doc_id: None,
        }],
        shared: Some(Span::new(6, 10)),
        scores: None,
        task: "spans",
    };
    (doc, pair)
}

fn line(format: PairFormat, meta: bool) -> Value {
    let (doc, pair) = sample();
    let mut buf = Vec::new();
    write_pair(&mut buf, format, &doc, 3, &pair, meta);
    assert_eq!(buf.last(), Some(&b'\n'));
    assert_eq!(
        buf.iter().filter(|&&b| b == b'\n').count(),
        1,
        "one line per pair"
    );
    serde_json::from_slice(&buf).unwrap()
}

#[test]
fn sentence_transformers_columns() {
    assert_eq!(
        line(PairFormat::SentenceTransformers, false),
        json!({"anchor": "query text.", "positive": "Title positive text.", "negative_1": "negative \"text\"."})
    );
}

#[test]
fn flag_embedding_lists() {
    assert_eq!(
        line(PairFormat::Flag, false),
        json!({"query": "query text.", "pos": ["Title positive text."], "neg": ["negative \"text\"."]})
    );
}

#[test]
fn tevatron_passages() {
    assert_eq!(
        line(PairFormat::Tevatron, false),
        json!({
            "query_id": "doc-1#3",
            "query": "query text.",
            "positive_passages": [{"docid": "doc-1@12", "title": "Title", "text": "positive text."}],
            "negative_passages": [{"docid": "doc-1@27", "title": "", "text": "negative \"text\"."}],
        })
    );
}

#[test]
fn meta_adds_ids_task_and_offsets() {
    let v = line(PairFormat::Flag, true);
    assert_eq!(
        v["meta"],
        json!({
            "doc_id": "doc-1", "task": "spans",
            "query_span": {"start": 0, "end": 11},
            "positive_span": {"start": 12, "end": 26},
            "shared_span": {"start": 6, "end": 10},
        })
    );
}

#[test]
fn names_round_trip() {
    for name in PairFormat::NAMES {
        assert_eq!(name.parse::<PairFormat>().unwrap().to_string(), name);
    }
    assert!("csv".parse::<PairFormat>().is_err());
}

#[test]
fn every_written_format_reads_back() {
    let (doc, pair) = sample();
    for format in [
        PairFormat::SentenceTransformers,
        PairFormat::Flag,
        PairFormat::Tevatron,
    ] {
        let mut buf = Vec::new();
        write_pair(&mut buf, format, &doc, 0, &pair, true);
        let got = parse_pair_line(std::str::from_utf8(&buf).unwrap().trim()).unwrap();
        assert_eq!(
            got,
            vec![OwnedPair {
                query: "query text.".into(),
                positive: "Title positive text.".into(),
                negatives: vec!["negative \"text\".".into()],
                scores: None,
            }],
            "{format}"
        );
    }
    let two = parse_pair_line(r#"{"query": "q", "pos": ["a", "b"], "neg": []}"#).unwrap();
    assert_eq!(two.len(), 2);
    for bad in [
        r#"{"query": "q"}"#,
        r#"{"anchor": "a"}"#,
        r#"[1]"#,
        r#"{"query": "q", "pos": []}"#,
        "{",
    ] {
        assert!(parse_pair_line(bad).is_err(), "{bad}");
    }
}

#[test]
fn teacher_scores_read_in_all_three_layouts() {
    let st = parse_pair_line(
        r#"{"anchor": "q", "positive": "p", "negative_1": "n1", "negative_2": "n2", "scores": [9.5, 3, 1.5]}"#,
    )
    .unwrap();
    assert_eq!(st[0].scores, Some(vec![9.5, 3.0, 1.5]));
    // sentence-transformers' MarginMSE margins: positive 0, negatives at minus their margin.
    let margins =
        parse_pair_line(r#"{"anchor": "q", "positive": "p", "negative": "n", "label": 2.5}"#)
            .unwrap();
    assert_eq!(margins[0].scores, Some(vec![0.0, -2.5]));
    let flag = parse_pair_line(
        r#"{"query": "q", "pos": ["a", "b"], "neg": ["n"], "pos_scores": [5, 4], "neg_scores": [1]}"#,
    )
    .unwrap();
    assert_eq!(flag[0].scores, Some(vec![5.0, 1.0]));
    assert_eq!(flag[1].scores, Some(vec![4.0, 1.0]));
    let tev = parse_pair_line(
        r#"{"query": "q", "positive_passages": [{"text": "p", "score": 7}], "negative_passages": [{"text": "n", "score": 2}]}"#,
    )
    .unwrap();
    assert_eq!(tev[0].scores, Some(vec![7.0, 2.0]));
    // No negatives and no scores: no scores, not an error.
    let plain = parse_pair_line(
        r#"{"query": "q", "positive_passages": [{"text": "p"}], "negative_passages": []}"#,
    )
    .unwrap();
    assert_eq!(plain[0].scores, None);
    let only_pos = parse_pair_line(
        r#"{"query": "q", "positive_passages": [{"text": "p", "score": 3}], "negative_passages": []}"#,
    )
    .unwrap();
    assert_eq!(only_pos[0].scores, Some(vec![3.0]));
    for bad in [
        r#"{"anchor": "q", "positive": "p", "negative_1": "n", "scores": [1]}"#,
        r#"{"anchor": "q", "positive": "p", "scores": ["x"]}"#,
        r#"{"query": "q", "pos": ["a"], "neg": ["n"], "pos_scores": [1]}"#,
        r#"{"query": "q", "pos": ["a"], "neg": [], "neg_scores": [1]}"#,
        r#"{"query": "q", "positive_passages": [{"text": "p", "score": 1}], "negative_passages": [{"text": "n"}, {"text": "m", "score": 1}]}"#,
    ] {
        assert!(parse_pair_line(bad).is_err(), "{bad}");
    }
}
