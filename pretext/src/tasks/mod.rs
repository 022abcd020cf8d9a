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

/// One side of a pair: text, an optional title, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Text<'a> {
    /// The text (borrowed from the document unless rewritten).
    pub text: Cow<'a, str>,
    /// A title to show with it (e.g. the document's, for passages).
    pub title: Option<Cow<'a, str>>,
    /// Bytes of the document text this side was taken from, if any.
    pub span: Option<Span>,
}

impl<'a> Text<'a> {
    /// A slice of `text` at `span`, without title.
    pub fn slice(text: &'a str, span: Span) -> Text<'a> {
        Text {
            text: Cow::Borrowed(span.of(text)),
            title: None,
            span: Some(span),
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
    /// Name of the task (and kind, for pseudo-queries) that made the pair.
    pub task: &'static str,
}

/// A pretext task: turns a document into pairs.
pub trait PretextTask {
    /// Short name, as in configs and summaries.
    fn name(&self) -> &'static str;

    /// The pairs of one document. The text of `doc` (whose `text` may be
    /// owned when JSON needed unescaping) is borrowed for `'a`.
    fn pairs<'a, R: Rng + ?Sized>(&self, doc: &'a Document<'a>, rng: &mut R) -> Vec<Pair<'a>>;
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
            "mix" => TaskSpec::Mix(Mixture::default()),
            _ => return None,
        })
    }

    /// Names accepted by [`TaskSpec::by_name`].
    pub const NAMES: [&'static str; 6] =
        ["crop", "ict", "spans", "neighbors", "pseudo-query", "mix"];

    /// Checks parameters that serde cannot (ranges, probabilities, weights).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            TaskSpec::Crop(t) => t.validate(),
            TaskSpec::Ict(t) => t.validate(),
            TaskSpec::Spans(t) => t.validate(),
            TaskSpec::Neighbors(t) => t.validate(),
            TaskSpec::PseudoQuery(t) => t.validate(),
            TaskSpec::Mix(t) => t.validate(),
        }
    }

    /// Whether the task scores words against corpus statistics it has not
    /// been given yet (then [`crate::pipeline::ready_task`] computes a
    /// [`DocFreq`] and hands it to [`TaskSpec::set_doc_freq`]).
    pub fn needs_doc_freq(&self) -> bool {
        match self {
            TaskSpec::PseudoQuery(t) => {
                t.kinds.contains(&PseudoKind::Salient) && t.doc_freq.is_none()
            }
            TaskSpec::Mix(m) => m.tasks.iter().any(|w| w.task.needs_doc_freq()),
            _ => false,
        }
    }

    /// Hands corpus document frequencies to every task that uses them.
    pub fn set_doc_freq(&mut self, df: Arc<DocFreq>) {
        match self {
            TaskSpec::PseudoQuery(t) => t.doc_freq = Some(df),
            TaskSpec::Mix(m) => m
                .tasks
                .iter_mut()
                .for_each(|w| w.task.set_doc_freq(df.clone())),
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
            TaskSpec::Mix(t) => t.name(),
        }
    }

    fn pairs<'a, R: Rng + ?Sized>(&self, doc: &'a Document<'a>, rng: &mut R) -> Vec<Pair<'a>> {
        match self {
            TaskSpec::Crop(t) => t.pairs(doc, rng),
            TaskSpec::Ict(t) => t.pairs(doc, rng),
            TaskSpec::Spans(t) => t.pairs(doc, rng),
            TaskSpec::Neighbors(t) => t.pairs(doc, rng),
            TaskSpec::PseudoQuery(t) => t.pairs(doc, rng),
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
