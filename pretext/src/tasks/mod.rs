//! Pretext tasks: values that turn one document into positive pairs.
//!
//! Each task is a plain struct with the paper's defaults and serde, like a
//! tokenizers component; [`TaskSpec`] is the tagged enum a config names
//! (`type = "crop"`), and [`Mixture`] is one more task.

mod crop;
mod ict;
mod mixture;
mod neighbors;
mod pseudo_query;
mod spans;
mod spar;

use std::borrow::Cow;
use std::sync::Arc;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::corpus::Document;
use crate::idf::DocFreq;
use crate::segment::Span;

pub use crop::RandomCrop;
pub use ict::InverseCloze;
pub use mixture::{Mixture, Weighted};
pub use neighbors::Neighbors;
pub use pseudo_query::{PseudoKind, PseudoQuery};
pub use spans::RecurringSpans;
pub use spar::{LexicalIndex, Spar};

/// One side of a pair: text, an optional title, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Text<'a> {
    /// The text (borrowed from the document unless rewritten).
    pub text: Cow<'a, str>,
    /// A title to show with it (e.g. the document's, for passages).
    pub title: Option<Cow<'a, str>>,
    /// Bytes of the document text this side was taken from, if any.
    pub span: Option<Span>,
    /// The id of the document this side was taken from when it is another
    /// than the pair's own (`spar`'s retrieved passages); `None`: the
    /// pair's document.
    pub doc_id: Option<Cow<'a, str>>,
}

impl<'a> Text<'a> {
    /// A slice of `text` at `span`, without title.
    pub fn slice(text: &'a str, span: Span) -> Text<'a> {
        Text {
            text: Cow::Borrowed(span.of(text)),
            title: None,
            span: Some(span),
            doc_id: None,
        }
    }

    /// The same, with the document's title attached when `with_title`.
    pub fn with_title(mut self, doc: &Document<'a>, with_title: bool) -> Text<'a> {
        if with_title {
            self.title = doc.title.clone();
        }
        self
    }
}

/// A training example: a query, its positive and optional negatives.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair<'a> {
    /// The query (anchor).
    pub query: Text<'a>,
    /// The positive.
    pub positive: Text<'a>,
    /// Hard negatives the task found itself (e.g. Spider's same-document one).
    pub negatives: Vec<Text<'a>>,
    /// The span that ties query and positive, where the task has one (the
    /// recurring span of `spans`, as bytes of the query's occurrence).
    pub shared: Option<Span>,
    /// A teacher's scores of the positive and of each negative, in that
    /// order, where the task has them (`spar`: BM25's), for distillation.
    pub scores: Option<Vec<f32>>,
    /// Name of the task (and kind, for pseudo-queries) that made the pair.
    pub task: &'static str,
}

/// A pretext task: turns a document into pairs.
pub trait PretextTask {
    /// Short name, as in configs and summaries.
    fn name(&self) -> &'static str;

    /// The pairs of one document. The text of `doc` (whose `text` may be
    /// owned when JSON needed unescaping) is borrowed for `'a`, and so is
    /// the task: a side may borrow what the task holds (`spar`'s passages
    /// are its index's texts, not copies of them).
    fn pairs<'a, R: Rng + ?Sized>(&'a self, doc: &'a Document<'a>, rng: &mut R) -> Vec<Pair<'a>>;
}

/// Any task, as a config names it (`type = "crop"` and the task's fields).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum TaskSpec {
    /// Contriever's independent random crops.
    Crop(RandomCrop),
    /// ORQA's inverse cloze task.
    Ict(InverseCloze),
    /// Spider's recurring span retrieval.
    Spans(RecurringSpans),
    /// CPT's neighbouring text pieces.
    Neighbors(Neighbors),
    /// AugTriever's pseudo-queries from structure and salient spans.
    PseudoQuery(PseudoQuery),
    /// SPAR's lexical teacher: pseudo-queries with BM25's top-k passages.
    Spar(Spar),
    /// A weighted mixture of tasks.
    Mix(Mixture),
}

/// Written by hand rather than derived: serde's internally tagged enums
/// buffer their input and lose the field's name from errors ("invalid type:
/// string, expected usize"); this one says `task crop: window: invalid type…`.
impl<'de> Deserialize<'de> for TaskSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        use serde_json::{Map, Value};

        fn part<T: serde::de::DeserializeOwned, E: serde::de::Error>(
            ty: &str,
            fields: Map<String, Value>,
        ) -> Result<T, E> {
            serde_path_to_error::deserialize(Value::Object(fields)).map_err(|e| {
                let path = e.path().to_string();
                match path.as_str() {
                    "." => E::custom(format!("task `{ty}`: {}", e.inner())),
                    _ => E::custom(format!("task `{ty}`: field `{path}`: {}", e.inner())),
                }
            })
        }

        let mut fields = Map::<String, Value>::deserialize(d)?;
        let ty = match fields.remove("type") {
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "task `type` must be a string, not {other}"
                )))
            }
            None => return Err(D::Error::missing_field("type")),
        };
        Ok(match ty.as_str() {
            "crop" => TaskSpec::Crop(part(&ty, fields)?),
            "ict" => TaskSpec::Ict(part(&ty, fields)?),
            "spans" => TaskSpec::Spans(part(&ty, fields)?),
            "neighbors" => TaskSpec::Neighbors(part(&ty, fields)?),
            "pseudo-query" => TaskSpec::PseudoQuery(part(&ty, fields)?),
            "spar" => TaskSpec::Spar(part(&ty, fields)?),
            "mix" => TaskSpec::Mix(part(&ty, fields)?),
            other => {
                return Err(D::Error::custom(format!(
                    "unknown task type `{other}`, expected one of {}",
                    TaskSpec::NAMES.join(", ")
                )))
            }
        })
    }
}

impl Default for TaskSpec {
    fn default() -> Self {
        TaskSpec::Crop(RandomCrop::default())
    }
}

impl TaskSpec {
    /// The default task of a name (`crop`, `ict`, `spans`, `neighbors`,
    /// `pseudo-query`, `mix`, the last an even mixture of all others).
    pub fn by_name(name: &str) -> Option<TaskSpec> {
        Some(match name {
            "crop" => TaskSpec::Crop(RandomCrop::default()),
            "ict" => TaskSpec::Ict(InverseCloze::default()),
            "spans" => TaskSpec::Spans(RecurringSpans::default()),
            "neighbors" => TaskSpec::Neighbors(Neighbors::default()),
            "pseudo-query" => TaskSpec::PseudoQuery(PseudoQuery::default()),
            "spar" => TaskSpec::Spar(Spar::default()),
            "mix" => TaskSpec::Mix(Mixture::default()),
            _ => return None,
        })
    }

    /// Names accepted by [`TaskSpec::by_name`].
    pub const NAMES: [&'static str; 7] = [
        "crop",
        "ict",
        "spans",
        "neighbors",
        "pseudo-query",
        "spar",
        "mix",
    ];

    /// Checks parameters that serde cannot (ranges, probabilities, weights).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            TaskSpec::Crop(t) => t.validate(),
            TaskSpec::Ict(t) => t.validate(),
            TaskSpec::Spans(t) => t.validate(),
            TaskSpec::Neighbors(t) => t.validate(),
            TaskSpec::PseudoQuery(t) => t.validate(),
            TaskSpec::Spar(t) => t.validate(),
            TaskSpec::Mix(t) => t.validate(),
        }
    }

    /// Whether the task scores words against corpus statistics it has not
    /// been given yet (then [`crate::pipeline::ready_task`] computes a
    /// [`DocFreq`] and hands it to [`TaskSpec::set_doc_freq`]).
    pub fn needs_doc_freq(&self) -> bool {
        match self {
            TaskSpec::PseudoQuery(t) => t.uses_salience() && t.doc_freq.is_none(),
            TaskSpec::Spar(t) => t.queries.uses_salience() && t.queries.doc_freq.is_none(),
            TaskSpec::Mix(m) => m.tasks.iter().any(|w| w.task.needs_doc_freq()),
            _ => false,
        }
    }

    /// Hands corpus document frequencies to every task that uses them.
    pub fn set_doc_freq(&mut self, df: Arc<DocFreq>) {
        match self {
            TaskSpec::PseudoQuery(t) => t.doc_freq = Some(df),
            TaskSpec::Spar(t) => t.queries.doc_freq = Some(df),
            TaskSpec::Mix(m) => m
                .tasks
                .iter_mut()
                .for_each(|w| w.task.set_doc_freq(df.clone())),
            _ => {}
        }
    }

    /// About how many bytes of pairs a byte of document makes, rounded up
    /// to a whole number: 1 for tasks that cut their pairs from the
    /// document, and for `spar` its queries times `top_k` (each query
    /// carries that many whole corpus passages; 35× its input on the
    /// shipped corpus). A `pairs` job reads batches this much smaller, so
    /// a batch's pairs, held in memory until written in order, take about
    /// what every other task's take.
    pub fn output_factor(&self) -> usize {
        match self {
            TaskSpec::Spar(t) => t.top_k * t.queries.kinds.len().max(1),
            TaskSpec::Mix(m) => m
                .tasks
                .iter()
                .map(|w| w.task.output_factor())
                .max()
                .unwrap_or(1),
            _ => 1,
        }
    }

    /// The BM25 settings of every task that ranks the corpus and has not
    /// been given its index yet (`spar`); [`crate::pipeline::ready_task`]
    /// builds one and hands it to [`TaskSpec::set_index`].
    pub fn needs_index(&self) -> Option<crate::bm25::Bm25Config> {
        match self {
            TaskSpec::Spar(t) if t.index.is_none() => Some(t.bm25),
            TaskSpec::Mix(m) => m.tasks.iter().find_map(|w| w.task.needs_index()),
            _ => None,
        }
    }

    /// The corpus passages the task's pairs borrow and that a writer can
    /// copy already escaped: `spar`'s index (a mixture's, when it holds
    /// `spar`).
    pub fn known_texts(&self) -> Option<&LexicalIndex> {
        match self {
            TaskSpec::Spar(t) => t.index.as_deref(),
            TaskSpec::Mix(m) => m.tasks.iter().find_map(|w| w.task.known_texts()),
            _ => None,
        }
    }

    /// Hands a corpus index to every task that ranks the corpus.
    pub fn set_index(&mut self, index: Arc<LexicalIndex>) {
        match self {
            TaskSpec::Spar(t) => t.set_index(index),
            TaskSpec::Mix(m) => m
                .tasks
                .iter_mut()
                .for_each(|w| w.task.set_index(index.clone())),
            _ => {}
        }
    }
}

impl PretextTask for TaskSpec {
    fn name(&self) -> &'static str {
        match self {
            TaskSpec::Crop(t) => t.name(),
            TaskSpec::Ict(t) => t.name(),
            TaskSpec::Spans(t) => t.name(),
            TaskSpec::Neighbors(t) => t.name(),
            TaskSpec::PseudoQuery(t) => t.name(),
            TaskSpec::Spar(t) => t.name(),
            TaskSpec::Mix(t) => t.name(),
        }
    }

    fn pairs<'a, R: Rng + ?Sized>(&'a self, doc: &'a Document<'a>, rng: &mut R) -> Vec<Pair<'a>> {
        if doc.text.len() <= MAX_DOC_BYTES {
            return self.pairs_whole(doc, rng);
        }
        // A huge document (a 50 MB one-line dump) is cut into windows
        // processed one after the other: a task's working memory stays that
        // of one window, not 40 times the document.
        let mut out = Vec::new();
        for window in doc_windows(&doc.text, MAX_DOC_BYTES) {
            let part = Document {
                id: doc.id.clone(),
                title: doc.title.clone(),
                text: Cow::Borrowed(window.of(&doc.text)),
                ordinal: doc.ordinal,
                line: doc.line,
                source: doc.source,
            };
            out.extend(
                self.pairs_whole(&part, rng)
                    .into_iter()
                    .map(|p| rebase_pair(p, doc, window.start)),
            );
        }
        out
    }
}

/// Documents longer than this (bytes) are cut into windows of at most this
/// size, at whitespace, before a task sees them.
pub const MAX_DOC_BYTES: usize = 1 << 20;

/// Windows of at most `max` bytes covering `text`, each ending at
/// whitespace where there is some (else at a character boundary).
pub fn doc_windows(text: &str, max: usize) -> Vec<Span> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + max).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if end < text.len() {
            if let Some(ws) = text[start..end].rfind(char::is_whitespace) {
                if ws > 0 {
                    end = start + ws;
                }
            }
        }
        if end == start {
            // One character wider than `max`: take it whole.
            end = start + text[start..].chars().next().map_or(1, char::len_utf8);
        }
        out.push(Span::new(start, end));
        start = end;
    }
    out
}

/// A pair made from a window starting at byte `offset` of `doc`, with its
/// spans moved to the document's coordinates and its borrowed text
/// re-borrowed from the document (the window was a temporary view).
fn rebase_pair<'a>(p: Pair<'_>, doc: &'a Document<'a>, offset: usize) -> Pair<'a> {
    let text = |t: Text<'_>| -> Text<'a> {
        let span = t.span.map(|s| Span::new(s.start + offset, s.end + offset));
        let body = match (&t.text, span) {
            (Cow::Borrowed(b), Some(s)) if s.of(&doc.text) == *b => Cow::Borrowed(s.of(&doc.text)),
            _ => Cow::Owned(t.text.into_owned()),
        };
        let title = match (&t.title, &doc.title) {
            (Some(a), Some(b)) if a == b => Some(b.clone()),
            (a, _) => a.as_ref().map(|a| Cow::Owned(a.to_string())),
        };
        Text {
            text: body,
            title,
            span,
            doc_id: t.doc_id.map(|d| Cow::Owned(d.into_owned())),
        }
    };
    Pair {
        query: text(p.query),
        positive: text(p.positive),
        negatives: p.negatives.into_iter().map(text).collect(),
        shared: p
            .shared
            .map(|s| Span::new(s.start + offset, s.end + offset)),
        scores: p.scores,
        task: p.task,
    }
}

impl TaskSpec {
    /// What a document needs for this task to make a pair from it, for the
    /// message of a run that made none.
    pub fn needs(&self) -> &'static str {
        match self {
            TaskSpec::Crop(_) => "crop needs documents with at least a few words",
            TaskSpec::Ict(_) => "ict needs documents of at least two sentences (ending in . ! or ?)",
            TaskSpec::Spans(_) => "spans needs documents in which a span of 2-10 words (no stopword at either end) occurs in two passages",
            TaskSpec::Neighbors(_) => "neighbors needs documents longer than one piece (task.piece words)",
            TaskSpec::PseudoQuery(_) => "pseudo-query needs titles, several sentences or salient chunks",
            TaskSpec::Spar(_) => "spar needs pseudo-queries (titles, several sentences or salient chunks) that BM25 matches in at least two documents",
            TaskSpec::Mix(_) => "none of the mixed tasks found what it needs",
        }
    }

    /// The pairs of a document of at most [`MAX_DOC_BYTES`].
    fn pairs_whole<'a, R: Rng + ?Sized>(
        &'a self,
        doc: &'a Document<'a>,
        rng: &mut R,
    ) -> Vec<Pair<'a>> {
        match self {
            TaskSpec::Crop(t) => t.pairs(doc, rng),
            TaskSpec::Ict(t) => t.pairs(doc, rng),
            TaskSpec::Spans(t) => t.pairs(doc, rng),
            TaskSpec::Neighbors(t) => t.pairs(doc, rng),
            TaskSpec::PseudoQuery(t) => t.pairs(doc, rng),
            TaskSpec::Spar(t) => t.pairs(doc, rng),
            TaskSpec::Mix(t) => t.pairs(doc, rng),
        }
    }
}

/// Checks `0 <= p <= 1` for a named probability.
pub(crate) fn check_prob(name: &str, p: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("{name} = {p} is not a probability in [0, 1]"))
    }
}

/// Checks `1 <= lo <= hi` for a named range.
pub(crate) fn check_range(name: &str, lo: usize, hi: usize) -> Result<(), String> {
    if lo >= 1 && lo <= hi {
        Ok(())
    } else {
        Err(format!("{name}: need 1 <= min <= max, got {lo}..{hi}"))
    }
}

/// Joins the text before and after a removed span with one space.
pub(crate) fn remove_span(text: &str, outer: Span, removed: Span) -> String {
    let before = text[outer.start..removed.start].trim_end();
    let after = text[removed.end..outer.end].trim_start();
    match (before.is_empty(), after.is_empty()) {
        (true, _) => after.to_string(),
        (_, true) => before.to_string(),
        _ => format!("{before} {after}"),
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// A document with `text` and an optional title.
    pub fn doc<'a>(text: &'a str, title: Option<&'a str>) -> Document<'a> {
        Document {
            id: Cow::Borrowed("d1"),
            title: title.map(Cow::Borrowed),
            text: Cow::Borrowed(text),
            ordinal: 0,
            line: None,
            source: 0,
        }
    }

    /// A long text of numbered sentences, distinct words in each.
    pub fn long_text(sentences: usize) -> String {
        (0..sentences)
            .map(|i| {
                format!(
                    "Sentence number {i} talks about topic{} and more words here.",
                    i % 7
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod window_tests {
    use super::testutil::doc;
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn windows_cover_the_text_at_whitespace_within_the_cap() {
        let text = "alpha beta gamma delta épsilon zeta ".repeat(40);
        let w = doc_windows(&text, 50);
        assert_eq!(w.first().unwrap().start, 0);
        assert_eq!(w.last().unwrap().end, text.len());
        for pair in w.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "contiguous");
        }
        for s in &w {
            assert!(s.end - s.start <= 50);
            assert!(s.end == text.len() || text[s.end..].starts_with(char::is_whitespace));
        }
        // A single unbroken word longer than the cap is still covered.
        let w = doc_windows(&"x".repeat(120), 50);
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn a_huge_document_is_processed_in_windows_with_document_offsets() {
        // 3 MiB on one line: three windows; every pair's text is the slice
        // of the document its span names, as for a small document.
        let sentence = "The interpreter reads each line of the module before it runs. ";
        let text = sentence.repeat(3 * MAX_DOC_BYTES / sentence.len());
        let d = doc(&text, Some("title"));
        for task in [
            TaskSpec::Crop(RandomCrop::default()),
            TaskSpec::Ict(InverseCloze::default()),
        ] {
            let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
            let pairs = task.pairs(&d, &mut rng);
            assert!(!pairs.is_empty(), "{}", task.name());
            let beyond = pairs
                .iter()
                .filter(|p| p.positive.span.is_some_and(|s| s.start > 2 * MAX_DOC_BYTES))
                .count();
            assert!(beyond > 0, "{}: the last window made pairs", task.name());
            for p in &pairs {
                for side in [&p.query, &p.positive] {
                    if let (Some(s), Cow::Borrowed(b)) = (side.span, &side.text) {
                        assert_eq!(s.of(&text), *b, "{}", task.name());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod validate_tests {
    use super::*;

    /// Zero-word spans and chunks have no first or last word; they were
    /// once let through and then panicked on the first document.
    #[test]
    fn zero_word_spans_and_chunks_are_refused() {
        let spans = TaskSpec::Spans(spans::RecurringSpans {
            span_min: 0,
            ..Default::default()
        });
        assert!(spans.validate().unwrap_err().contains("span_min"));
        let pq = TaskSpec::PseudoQuery(pseudo_query::PseudoQuery {
            salient_words: 0,
            ..Default::default()
        });
        assert!(pq.validate().unwrap_err().contains("salient_words"));
        assert!(TaskSpec::by_name("spans").unwrap().validate().is_ok());
    }

    /// A `spar` batch holds each query's `top_k` passages: the pairs job
    /// reads it that much smaller (a mixture by its largest part).
    #[test]
    fn output_factor_counts_spar_passages() {
        let spar = TaskSpec::by_name("spar").unwrap();
        assert_eq!(spar.output_factor(), 8 * 3);
        assert_eq!(TaskSpec::by_name("crop").unwrap().output_factor(), 1);
        let mix = TaskSpec::Mix(mixture::Mixture {
            tasks: vec![
                mixture::Weighted {
                    weight: 1.0,
                    task: TaskSpec::by_name("ict").unwrap(),
                },
                mixture::Weighted {
                    weight: 1.0,
                    task: spar,
                },
            ],
        });
        assert_eq!(mix.output_factor(), 24);
    }
}
