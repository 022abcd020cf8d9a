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
    let mut lines = Lines::default();
    write_pair(&mut lines, format, &doc, 3, &pair, meta, None);
    let buf = lines.to_vec();
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
        let mut lines = Lines::default();
        write_pair(&mut lines, format, &doc, 0, &pair, true, None);
        let buf = lines.to_vec();
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

/// The lines as `serde_json` serialised them before `write_pair` wrote
/// them by hand: the reference the hand-written bytes are held to.
mod reference {
    use serde::ser::{SerializeMap, Serializer};

    use super::*;

    pub(super) struct Row<'r, 'a> {
        pub format: PairFormat,
        pub doc: &'r Document<'a>,
        pub index: usize,
        pub pair: &'r Pair<'a>,
        pub with_meta: bool,
    }

    // The `meta` object is `formats::Meta`, serialised by serde_json in
    // both writers.

    #[derive(Serialize)]
    struct TevatronPassage<'r> {
        docid: String,
        title: &'r str,
        text: &'r str,
        #[serde(skip_serializing_if = "Option::is_none")]
        score: Option<f32>,
    }

    impl<'r> TevatronPassage<'r> {
        fn new(doc_id: &str, t: &'r Text<'_>, score: Option<f32>) -> Self {
            TevatronPassage {
                docid: match (&t.doc_id, t.span) {
                    (Some(other), _) => other.to_string(),
                    (None, Some(s)) => format!("{doc_id}@{}", s.start),
                    (None, None) => doc_id.to_string(),
                },
                title: t.title.as_deref().unwrap_or(""),
                text: &t.text,
                score,
            }
        }
    }

    impl Serialize for Row<'_, '_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let (p, id) = (self.pair, &*self.doc.id);
            let mut m = s.serialize_map(None)?;
            match self.format {
                PairFormat::SentenceTransformers => {
                    m.serialize_entry("anchor", &flat(&p.query))?;
                    m.serialize_entry("positive", &flat(&p.positive))?;
                    for (i, n) in p.negatives.iter().enumerate() {
                        m.serialize_entry(&format!("negative_{}", i + 1), &flat(n))?;
                    }
                    if let Some(scores) = &p.scores {
                        m.serialize_entry("scores", scores)?;
                    }
                }
                PairFormat::Flag => {
                    m.serialize_entry("query", &flat(&p.query))?;
                    m.serialize_entry("pos", &[flat(&p.positive)])?;
                    let neg: Vec<Cow<str>> = p.negatives.iter().map(flat).collect();
                    m.serialize_entry("neg", &neg)?;
                    if let Some(scores) = &p.scores {
                        m.serialize_entry("pos_scores", &scores[..1])?;
                        m.serialize_entry("neg_scores", &scores[1..])?;
                    }
                }
                PairFormat::Tevatron => {
                    m.serialize_entry("query_id", &format!("{id}#{}", self.index))?;
                    m.serialize_entry("query", &flat(&p.query))?;
                    let score = |i: usize| p.scores.as_ref().and_then(|s| s.get(i).copied());
                    m.serialize_entry(
                        "positive_passages",
                        &[TevatronPassage::new(id, &p.positive, score(0))],
                    )?;
                    let neg: Vec<TevatronPassage> = p
                        .negatives
                        .iter()
                        .enumerate()
                        .map(|(i, n)| TevatronPassage::new(id, n, score(i + 1)))
                        .collect();
                    m.serialize_entry("negative_passages", &neg)?;
                }
            }
            if self.with_meta {
                m.serialize_entry("meta", &Meta::of(id, p))?;
            }
            m.end()
        }
    }
}

#[test]
fn hand_written_lines_are_serde_jsons() {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(11);
    let pieces = [
        "",
        "plain text",
        "é€😀",
        "a \"quoted\" word",
        "back\\slash",
        "tab\tnew\nline\r",
        "\u{0}\u{1f}\u{7f}",
        "ends with a long run of clean ascii text to fill words",
    ];
    let mut text = |rng: &mut rand::rngs::Xoshiro256PlusPlus| -> String {
        (0..rng.random_range(0..4))
            .map(|_| pieces[rng.random_range(0..pieces.len())])
            .collect()
    };
    for round in 0..400 {
        let side =
            |rng: &mut rand::rngs::Xoshiro256PlusPlus,
             text: &mut dyn FnMut(&mut rand::rngs::Xoshiro256PlusPlus) -> String| {
                Text {
                    text: Cow::Owned(text(rng)),
                    title: rng.random_bool(0.5).then(|| Cow::Owned(text(rng))),
                    span: rng
                        .random_bool(0.5)
                        .then(|| Span::new(rng.random_range(0..9), 9 + rng.random_range(0..9))),
                    doc_id: rng.random_bool(0.3).then(|| Cow::Owned(text(rng))),
                }
            };
        let negatives = (0..rng.random_range(0..4))
            .map(|_| side(&mut rng, &mut text))
            .collect::<Vec<_>>();
        let scores = rng.random_bool(0.5).then(|| {
            (0..=negatives.len())
                .map(|i| match (round + i) % 7 {
                    0 => f32::NAN,
                    1 => -0.0,
                    2 => 1e-38,
                    _ => rng.random_range(-30.0..30.0),
                })
                .collect()
        });
        let pair = Pair {
            query: side(&mut rng, &mut text),
            positive: side(&mut rng, &mut text),
            negatives,
            shared: rng.random_bool(0.5).then(|| Span::new(1, 2)),
            scores,
            task: "spar",
        };
        let doc = Document {
            id: Cow::Owned(format!("d\"{}\\{round}", text(&mut rng))),
            title: None,
            text: Cow::Borrowed(""),
            ordinal: round as u64,
            line: None,
            source: 0,
        };
        for format in [
            PairFormat::SentenceTransformers,
            PairFormat::Flag,
            PairFormat::Tevatron,
        ] {
            for with_meta in [false, true] {
                let mut lines = Lines::default();
                write_pair(&mut lines, format, &doc, round, &pair, with_meta, None);
                let ours = lines.to_vec();
                let row = reference::Row {
                    format,
                    doc: &doc,
                    index: round,
                    pair: &pair,
                    with_meta,
                };
                let mut theirs = serde_json::to_vec(&row).unwrap();
                theirs.push(b'\n');
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    String::from_utf8(theirs).unwrap(),
                    "{format} meta {with_meta}"
                );
            }
        }
    }
}
