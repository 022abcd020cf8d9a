//! Pair dataset formats users already train with: sentence-transformers
//! column tables, FlagEmbedding and Tevatron JSONL. One JSON object a line.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::corpus::Document;
use crate::error::Error;
use crate::segment::Span;
use crate::tasks::{Pair, Text};

/// A pair dataset layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairFormat {
    /// `{"anchor", "positive", "negative_1", …}` (sentence-transformers).
    #[default]
    SentenceTransformers,
    /// `{"query", "pos": [..], "neg": [..]}` (FlagEmbedding).
    Flag,
    /// `{"query_id", "query", "positive_passages", "negative_passages"}` (Tevatron).
    Tevatron,
}

impl PairFormat {
    /// Names accepted on the command line.
    pub const NAMES: [&'static str; 3] = ["sentence-transformers", "flag", "tevatron"];
}

impl FromStr for PairFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "sentence-transformers" | "st" => Ok(PairFormat::SentenceTransformers),
            "flag" | "flagembedding" => Ok(PairFormat::Flag),
            "tevatron" => Ok(PairFormat::Tevatron),
            _ => Err(Error::Config(format!(
                "pair format `{s}`: expected one of {}",
                PairFormat::NAMES.join(", ")
            ))),
        }
    }
}

impl fmt::Display for PairFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = *self as usize;
        f.write_str(PairFormat::NAMES[i])
    }
}

/// A side as one string: `title text` when it has a title (as BEIR encodes
/// documents), else the text.
pub fn flat<'t>(t: &'t Text<'_>) -> Cow<'t, str> {
    match &t.title {
        Some(title) => Cow::Owned(format!("{title} {}", t.text)),
        None => Cow::Borrowed(&t.text),
    }
}

/// Writes one pair as a JSON line (newline included) to `out`.
/// `index` is the pair's position among its document's pairs; with the
/// document id it makes the Tevatron `query_id`. Sides that `known` holds
/// are borrowed already escaped ([`KnownTexts`], [`Lines`]); the bytes are
/// the same.
///
/// The line is written by hand rather than through `serde_json`'s
/// serializer so that its strings, nearly all of the bytes, go through
/// [`json::push_escaped`]; the bytes are `serde_json`'s (the test
/// `hand_written_lines_are_serde_jsons` holds the two to each other).
pub fn write_pair<'k>(
    out: &mut Lines<'k>,
    format: PairFormat,
    doc: &Document<'_>,
    index: usize,
    pair: &Pair<'_>,
    with_meta: bool,
    known: Option<&'k dyn KnownTexts>,
) {
    let (p, id) = (pair, &*doc.id);
    let side = |out: &mut Lines<'k>, t: &Text<'_>| push_flat(out, t, known);
    let mut line = Line::open(out);
    match format {
        PairFormat::SentenceTransformers => {
            line.key("anchor");
            side(line.out, &p.query);
            line.key("positive");
            side(line.out, &p.positive);
            for (i, n) in p.negatives.iter().enumerate() {
                line.key(&format!("negative_{}", i + 1));
                side(line.out, n);
            }
            if let Some(scores) = &p.scores {
                line.key("scores");
                push_value(line.out.own(), scores);
            }
        }
        PairFormat::Flag => {
            line.key("query");
            side(line.out, &p.query);
            line.key("pos");
            push_list(line.out, std::slice::from_ref(&p.positive), side);
            line.key("neg");
            push_list(line.out, &p.negatives, side);
            if let Some(scores) = &p.scores {
                line.key("pos_scores");
                push_value(line.out.own(), &scores[..1]);
                line.key("neg_scores");
                push_value(line.out.own(), &scores[1..]);
            }
        }
        PairFormat::Tevatron => {
            line.key("query_id");
            json::push_str(line.out.own(), &format!("{id}#{index}"));
            line.key("query");
            side(line.out, &p.query);
            let score = |i: usize| p.scores.as_ref().and_then(|s| s.get(i).copied());
            line.key("positive_passages");
            line.out.own().push(b'[');
            push_passage(line.out, id, &p.positive, score(0), known);
            line.out.own().push(b']');
            line.key("negative_passages");
            let numbered: Vec<(usize, &Text)> = p.negatives.iter().enumerate().collect();
            push_list(line.out, &numbered, |o, &(i, n)| {
                push_passage(o, id, n, score(i + 1), known)
            });
        }
    }
    if with_meta {
        line.key("meta");
        push_value(line.out.own(), &Meta::of(id, p));
    }
    out.own().extend_from_slice(b"}\n");
}

/// About the bytes [`write_pair`] writes for `pair`, a little more rather
/// than less: its strings, a sixteenth for their escapes (text holds one
/// every 64 bytes or so), and room for keys, scores and the meta object.
/// A writer reserves it up front instead of growing its buffer by
/// doubling. (Sides borrowed from [`KnownTexts`] take no room, so a writer
/// that has them reserves nothing.)
pub fn line_size_hint(pair: &Pair<'_>) -> usize {
    let side = |t: &Text<'_>| {
        let len = |s: &Option<Cow<'_, str>>| s.as_ref().map_or(0, |s| s.len());
        t.text.len() + len(&t.title) + len(&t.doc_id) + 40
    };
    let strings =
        side(&pair.query) + side(&pair.positive) + pair.negatives.iter().map(side).sum::<usize>();
    strings + strings / 16 + pair.scores.as_ref().map_or(0, |s| 24 * s.len()) + 160
}

/// A JSON object being written: keys get their separating commas.
struct Line<'o, 'k> {
    out: &'o mut Lines<'k>,
    first: bool,
}

impl<'o, 'k> Line<'o, 'k> {
    fn open(out: &'o mut Lines<'k>) -> Line<'o, 'k> {
        out.own().push(b'{');
        Line { out, first: true }
    }

    /// The next key and its colon.
    fn key(&mut self, key: &str) {
        let out = self.out.own();
        if !std::mem::take(&mut self.first) {
            out.push(b',');
        }
        json::push_str(out, key);
        out.push(b':');
    }
}

/// A side as [`flat`] makes it, as a JSON string, without building the
/// joined string: escaping works character by character, so escaping the
/// title, a space and the text is escaping their concatenation.
fn push_flat<'k>(out: &mut Lines<'k>, t: &Text<'_>, known: Option<&'k dyn KnownTexts>) {
    out.own().push(b'"');
    if let Some(e) = known.and_then(|k| k.escaped(t)) {
        if t.title.is_some() {
            out.own().extend_from_slice(e.title);
            out.own().push(b' ');
        }
        out.push_borrowed(e.text);
        out.own().push(b'"');
        return;
    }
    let own = out.own();
    if let Some(title) = &t.title {
        json::push_escaped(own, title);
        own.push(b' ');
    }
    json::push_escaped(own, &t.text);
    own.push(b'"');
}

/// `[a,b,…]`, each item written by `item`.
fn push_list<'k, T>(out: &mut Lines<'k>, items: &[T], mut item: impl FnMut(&mut Lines<'k>, &T)) {
    out.own().push(b'[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.own().push(b',');
        }
        item(out, x);
    }
    out.own().push(b']');
}

/// A small value (scores, the meta object) through `serde_json`.
fn push_value<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(&mut *out, value).expect("serialising to a Vec cannot fail");
}

/// A Tevatron passage: `{"docid","title","text"[,"score"]}`. The docid is
/// the passage's own document's where it has one (`spar`), else the
/// pair's document's, `@` its byte offset when it is a span of it.
fn push_passage<'k>(
    out: &mut Lines<'k>,
    doc_id: &str,
    t: &Text<'_>,
    score: Option<f32>,
    known: Option<&'k dyn KnownTexts>,
) {
    let own = out.own();
    own.extend_from_slice(b"{\"docid\":\"");
    match (&t.doc_id, t.span) {
        (Some(other), _) => json::push_escaped(own, other),
        (None, Some(s)) => {
            json::push_escaped(own, doc_id);
            own.extend_from_slice(format!("@{}", s.start).as_bytes());
        }
        (None, None) => json::push_escaped(own, doc_id),
    }
    own.extend_from_slice(b"\",\"title\":\"");
    match known.and_then(|k| k.escaped(t)) {
        Some(e) => {
            own.extend_from_slice(e.title);
            own.extend_from_slice(b"\",\"text\":\"");
            out.push_borrowed(e.text);
        }
        None => {
            json::push_escaped(own, t.title.as_deref().unwrap_or(""));
            own.extend_from_slice(b"\",\"text\":\"");
            json::push_escaped(own, &t.text);
        }
    }
    let own = out.own();
    own.push(b'"');
    if let Some(score) = score {
        own.extend_from_slice(b",\"score\":");
        push_value(own, &score);
    }
    own.push(b'}');
}

#[derive(Serialize)]
struct Meta<'r> {
    doc_id: &'r str,
    task: &'r str,
    query_span: Option<Span>,
    positive_span: Option<Span>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shared_span: Option<Span>,
}

impl<'r> Meta<'r> {
    /// The meta object of `pair`, made from document `doc_id`.
    fn of(doc_id: &'r str, pair: &'r Pair<'_>) -> Meta<'r> {
        Meta {
            doc_id,
            task: pair.task,
            query_span: pair.query.span,
            positive_span: pair.positive.span,
            shared_span: pair.shared,
        }
    }
}

mod json;
mod known;
mod lines;

pub use known::{Escaped, EscapedTexts, KnownTexts};
pub use lines::{write_runs, Lines};

#[cfg(test)]
mod tests;

/// A pair read back from a dataset file, in any of the three layouts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OwnedPair {
    /// The query.
    pub query: String,
    /// The positive.
    pub positive: String,
    /// Negatives, in file order.
    pub negatives: Vec<String>,
    /// A teacher's scores of the positive and of each negative, in that
    /// order, when the line carries them (for distillation): `scores`
    /// (or `label`, margins `teacher(q, p) - teacher(q, n_i)`, as
    /// sentence-transformers' MarginMSE datasets hold them), FlagEmbedding's
    /// `pos_scores`/`neg_scores`, a `score` in each Tevatron passage.
    pub scores: Option<Vec<f32>>,
}

/// Parses one JSON line of a pair dataset, recognising the layout by its
/// keys: `anchor` (sentence-transformers), `query` + `pos` (FlagEmbedding;
/// each positive gives one pair), `query` + `positive_passages` (Tevatron).
pub fn parse_pair_line(line: &str) -> Result<Vec<OwnedPair>, String> {
    use serde_json::Value;
    let v: Value = serde_json::from_str(line).map_err(|e| format!("malformed JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let text = |v: &Value, what: &str| -> Result<String, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Object(p) => {
                let body = p
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or(format!("{what}: passage without `text`"))?;
                Ok(
                    match p
                        .get("title")
                        .and_then(Value::as_str)
                        .filter(|t| !t.is_empty())
                    {
                        Some(t) => format!("{t} {body}"),
                        None => body.to_string(),
                    },
                )
            }
            _ => Err(format!("{what} is not a string")),
        }
    };
    let numbers = |key: &str| -> Result<Option<Vec<f32>>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(Some(vec![n.as_f64().unwrap_or(f64::NAN) as f32])),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_f64()
                        .filter(|f| f.is_finite())
                        .map(|f| f as f32)
                        .ok_or(format!("`{key}` holds a value that is not a finite number"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(format!("`{key}` is not a list of numbers")),
        }
    };
    // Scores must cover the positive and every negative.
    let check = |scores: Option<Vec<f32>>, negatives: usize| -> Result<Option<Vec<f32>>, String> {
        match scores {
            Some(s) if s.len() != negatives + 1 => Err(format!(
                "{} teacher scores for a positive and {negatives} negatives (need {})",
                s.len(),
                negatives + 1
            )),
            s => Ok(s),
        }
    };
    let list = |key: &str| -> Result<Vec<String>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a.iter().map(|x| text(x, key)).collect(),
            Some(_) => Err(format!("`{key}` is not a list")),
        }
    };
    if let Some(anchor) = obj.get("anchor") {
        let positive = text(
            obj.get("positive").ok_or("missing field `positive`")?,
            "positive",
        )?;
        let mut negatives = Vec::new();
        for i in 1.. {
            match obj.get(&format!("negative_{i}")).or(if i == 1 {
                obj.get("negative")
            } else {
                None
            }) {
                Some(n) => negatives.push(text(n, "negative")?),
                None => break,
            }
        }
        let scores = match (numbers("scores")?, numbers("label")?) {
            (Some(s), _) => Some(s),
            // Margins: positive at 0, each negative at minus its margin.
            (None, Some(m)) => Some(std::iter::once(0.0).chain(m.iter().map(|x| -x)).collect()),
            (None, None) => None,
        };
        let n = negatives.len();
        return Ok(vec![OwnedPair {
            query: text(anchor, "anchor")?,
            positive,
            negatives,
            scores: check(scores, n)?,
        }]);
    }
    let query = text(
        obj.get("query")
            .ok_or("no `anchor` or `query` field: not a pair dataset line")?,
        "query",
    )?;
    // Per-positive and per-negative teacher scores, when present.
    let passage_scores = |key: &str| -> Result<Option<Vec<f32>>, String> {
        let Some(Value::Array(a)) = obj
            .get(key)
            .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        else {
            return Ok(None);
        };
        let s: Vec<Option<f32>> = a
            .iter()
            .map(|p| p.get("score").and_then(Value::as_f64).map(|f| f as f32))
            .collect();
        match (s.iter().all(Option::is_some), s.iter().any(Option::is_some)) {
            (true, _) => Ok(Some(s.into_iter().flatten().collect())),
            (false, true) => Err(format!("some of `{key}` have a `score`, some not")),
            (false, false) => Ok(None),
        }
    };
    let (positives, negatives, pos_scores, neg_scores) = if obj.contains_key("positive_passages") {
        (
            list("positive_passages")?,
            list("negative_passages")?,
            passage_scores("positive_passages")?,
            passage_scores("negative_passages")?,
        )
    } else if obj.contains_key("pos") {
        (
            list("pos")?,
            list("neg")?,
            numbers("pos_scores")?,
            numbers("neg_scores")?,
        )
    } else {
        return Err("missing field `pos` or `positive_passages`".into());
    };
    if positives.is_empty() {
        return Err("no positive".into());
    }
    let n_pos = positives.len();
    let scores_of = |i: usize| -> Result<Option<Vec<f32>>, String> {
        match (&pos_scores, &neg_scores) {
            (None, None) => Ok(None),
            (Some(p), n) => {
                let Some(&ps) = p.get(i).filter(|_| p.len() == n_pos) else {
                    return Err(format!("{} positive scores for {n_pos} positives", p.len()));
                };
                let negs = match n {
                    Some(n) => n.clone(),
                    None if negatives.is_empty() => Vec::new(),
                    None => return Err("positive scores without negative scores".into()),
                };
                check(
                    Some(std::iter::once(ps).chain(negs).collect()),
                    negatives.len(),
                )
            }
            (None, Some(_)) => Err("negative scores without positive scores".into()),
        }
    };
    positives
        .into_iter()
        .enumerate()
        .map(|(i, positive)| {
            Ok(OwnedPair {
                query: query.clone(),
                positive,
                negatives: negatives.clone(),
                scores: scores_of(i)?,
            })
        })
        .collect()
}
