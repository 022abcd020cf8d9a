//! Pseudo-queries from a document's own structure and salient spans, as in
//! AugTriever (Meng et al., 2023) without a generation model: the title asks
//! for the document, the first sentence for the rest, and the most salient
//! 16-word chunk (by BM25 weight against the document) for the passage around it.

use std::sync::Arc;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{check_range, Pair, PretextTask, Text};
use crate::corpus::Document;
use crate::idf::{span_key, DocFreq};
use crate::segment::{sentence_iter, word_count, words, Span, WordUnit};
use crate::stopwords::is_stopword_key;

/// Which pseudo-queries to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PseudoKind {
    /// Title → document (documents with a title only).
    Title,
    /// First sentence → the rest of the document.
    FirstSentence,
    /// Most salient chunk → the passage around it.
    Salient,
}

impl PseudoKind {
    fn task_name(self) -> &'static str {
        match self {
            PseudoKind::Title => "pseudo-query/title",
            PseudoKind::FirstSentence => "pseudo-query/first-sentence",
            PseudoKind::Salient => "pseudo-query/salient",
        }
    }
}

/// AugTriever-style pseudo-queries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PseudoQuery {
    /// The kinds of query made for each document.
    pub kinds: Vec<PseudoKind>,
    /// Words in a salient chunk (AugTriever: 16).
    pub salient_words: usize,
    /// Positives are cut to this many words (the start of the document, or
    /// for salient chunks a window centred on the chunk).
    pub max_positive_words: usize,
    /// The first sentence must have at least this many words.
    pub min_sentence_words: usize,
    /// BM25 k1 for the salience weight of a word's frequency in the document.
    pub k1: f64,
    /// A document none of the kinds fits (no title, one sentence, too short
    /// for a salient chunk: a question, a tweet, a one-line definition)
    /// still gets a query when it has at least `2 × min_sentence_words`
    /// words: its most salient run of half its words, for the whole
    /// document (`pseudo-query/short`). Without it such a corpus gives no
    /// pairs at all. A document that has a query of a kind never gets one.
    pub short_documents: bool,
    /// Corpus document frequencies; set by the caller before use (see
    /// [`super::TaskSpec::needs_doc_freq`]). Without them every word has the
    /// same idf and salience is term frequency alone.
    #[serde(skip)]
    pub doc_freq: Option<Arc<DocFreq>>,
}

impl PartialEq for PseudoQuery {
    fn eq(&self, o: &Self) -> bool {
        (
            self.kinds.as_slice(),
            self.salient_words,
            self.max_positive_words,
        ) == (o.kinds.as_slice(), o.salient_words, o.max_positive_words)
            && (
                self.min_sentence_words,
                self.k1.to_bits(),
                self.short_documents,
            ) == (o.min_sentence_words, o.k1.to_bits(), o.short_documents)
    }
}

impl Default for PseudoQuery {
    fn default() -> Self {
        PseudoQuery {
            kinds: vec![
                PseudoKind::Title,
                PseudoKind::FirstSentence,
                PseudoKind::Salient,
            ],
            salient_words: 16,
            max_positive_words: 256,
            min_sentence_words: 4,
            k1: 0.9,
            short_documents: true,
            doc_freq: None,
        }
    }
}

impl PseudoQuery {
    pub(crate) fn validate(&self) -> Result<(), String> {
        check_range(
            "pseudo-query.salient_words/max_positive_words",
            self.salient_words,
            self.max_positive_words,
        )?;
        if self.kinds.is_empty() {
            return Err("pseudo-query.kinds is empty".into());
        }
        Ok(())
    }

    /// Whether the task weighs words by salience, and so wants corpus
    /// document frequencies.
    pub(crate) fn uses_salience(&self) -> bool {
        self.short_documents || self.kinds.contains(&PseudoKind::Salient)
    }

    /// Start index of the chunk of `salient_words` words with the highest
    /// sum of per-word salience (idf × saturated document frequency).
    fn salient_chunk(&self, text: &str, ws: &[Span]) -> usize {
        self.salient_run(text, ws, self.salient_words)
    }

    /// Start index of the run of `len` words with the highest sum of
    /// per-word salience.
    fn salient_run(&self, text: &str, ws: &[Span], len: usize) -> usize {
        SALIENCE.with(|s| self.salient_run_in(&mut s.borrow_mut(), text, ws, len))
    }

    fn salient_run_in(&self, s: &mut Salience, text: &str, ws: &[Span], len: usize) -> usize {
        s.reset(ws.len());
        let Salience {
            ids,
            counts,
            weights,
            entry,
            buf,
        } = s;
        // Per distinct word (by key): its frequency in the document, and
        // its idf until it becomes its weight; each word keeps its entry's
        // index, so the weights need no second lookup.
        entry.extend(ws.iter().map(|&w| {
            let key = span_key(text, w, buf);
            let k = ids.entry(key, || {
                weights.push(match &self.doc_freq {
                    _ if is_stopword_key(key) => 0.0,
                    Some(df) => df.idf_of(key),
                    None => 1.0,
                });
                counts.push(0.0);
                counts.len() as u32 - 1
            });
            counts[k as usize] += 1.0;
            k
        }));
        // A word's weight depends on its entry alone: made once per
        // distinct word, the same value every occurrence would make.
        for (w, &f) in weights.iter_mut().zip(counts.iter()) {
            *w = *w * f * (self.k1 + 1.0) / (f + self.k1);
        }
        let weight = |i: usize| weights[entry[i] as usize];
        let n = len.min(ws.len());
        let mut sum: f64 = (0..n).map(weight).sum();
        let (mut best, mut best_sum) = (0, sum);
        for i in n..entry.len() {
            sum += weight(i) - weight(i - n);
            if sum > best_sum + 1e-9 {
                (best, best_sum) = (i + 1 - n, sum);
            }
        }
        best
    }
}

/// A thread's buffers for [`PseudoQuery::salient_run`], kept across
/// documents rather than allocated anew for each.
#[derive(Default)]
struct Salience {
    ids: KeyIds,
    counts: Vec<f64>,
    weights: Vec<f64>,
    entry: Vec<u32>,
    buf: String,
}

impl Salience {
    /// Empties the buffers for a document of `words` words.
    fn reset(&mut self, words: usize) {
        self.ids.reset(words);
        self.counts.clear();
        self.weights.clear();
        self.entry.clear();
    }
}

/// The entry numbers of a document's distinct word keys: a table of open
/// addressing placed by the keys' own high bits (they are hashes
/// already), whose slots belong to the document that stamped them, so
/// that a new document starts with no clearing. It replaced a hash map
/// (hashing each key again, clearing its control bytes for every
/// document).
#[derive(Default)]
struct KeyIds {
    slots: Vec<Slot>,
    /// The current document's stamp; never 0, which no slot is given.
    stamp: u32,
    /// log2 of the slots the current document uses (the first ones).
    bits: u32,
}

/// A key, its entry number, and the document that wrote them.
#[derive(Clone, Copy, Default)]
struct Slot {
    key: u64,
    id: u32,
    stamp: u32,
}

impl KeyIds {
    /// Starts a document of at most `words` distinct keys: at least
    /// twice as many slots, so a probe is short.
    fn reset(&mut self, words: usize) {
        let size = (2 * words).next_power_of_two().max(16);
        self.bits = size.trailing_zeros();
        if self.slots.len() < size {
            self.slots.resize(size, Slot::default());
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            // Every stamp was used: slots from 2^32 documents ago would
            // pass for this one's.
            self.slots.fill(Slot::default());
            self.stamp = 1;
        }
    }

    /// The entry number of `key`, made by `new` the first time.
    #[inline]
    fn entry(&mut self, key: u64, new: impl FnOnce() -> u32) -> u32 {
        let mask = (1usize << self.bits) - 1;
        let mut i = (key >> (64 - self.bits)) as usize;
        loop {
            let slot = &mut self.slots[i];
            if slot.stamp != self.stamp {
                let id = new();
                *slot = Slot {
                    key,
                    id,
                    stamp: self.stamp,
                };
                return id;
            }
            if slot.key == key {
                return slot.id;
            }
            i = (i + 1) & mask;
        }
    }
}

thread_local! {
    static SALIENCE: std::cell::RefCell<Salience> = std::cell::RefCell::default();
}

impl PretextTask for PseudoQuery {
    fn name(&self) -> &'static str {
        "pseudo-query"
    }

    fn pairs<'a, R: Rng + ?Sized>(&'a self, doc: &'a Document<'a>, _rng: &mut R) -> Vec<Pair<'a>> {
        let text: &'a str = &doc.text;
        let ws = words(text, WordUnit::Unicode);
        let max = self.max_positive_words.max(1);
        let mut out = Vec::new();
        let pair = |query: Text<'a>, positive: Text<'a>, kind: PseudoKind| Pair {
            query,
            positive,
            negatives: Vec::new(),
            shared: None,
            scores: None,
            task: kind.task_name(),
        };
        for &kind in &self.kinds {
            match kind {
                PseudoKind::Title => {
                    let Some(title) = doc.title.as_deref().filter(|t| !t.trim().is_empty()) else {
                        continue;
                    };
                    let Some(body) = Span::covering(&ws[..ws.len().min(max)]) else {
                        continue;
                    };
                    let query = Text {
                        text: title.trim().into(),
                        title: None,
                        span: None,
                        doc_id: None,
                    };
                    out.push(pair(query, Text::slice(text, body), kind));
                }
                PseudoKind::FirstSentence => {
                    let mut sents = sentence_iter(text);
                    let (Some(first), Some(_)) = (sents.next(), sents.next()) else {
                        continue;
                    };
                    if word_count(first.of(text)) < self.min_sentence_words {
                        continue;
                    }
                    let rest: Vec<Span> = ws
                        .iter()
                        .copied()
                        .filter(|w| w.start >= first.end)
                        .take(max)
                        .collect();
                    let Some(body) = Span::covering(&rest) else {
                        continue;
                    };
                    let positive = Text::slice(text, body).with_title(doc, true);
                    out.push(pair(Text::slice(text, first), positive, kind));
                }
                PseudoKind::Salient => {
                    if ws.len() < self.salient_words * 2 {
                        continue; // the chunk would be most of the document
                    }
                    let start = self.salient_chunk(text, &ws);
                    let end = start + self.salient_words;
                    let chunk = Span::covering(&ws[start..end]).expect("non-empty");
                    // A window of `max` words centred on the chunk, kept inside the document.
                    let lo = (start + self.salient_words / 2)
                        .saturating_sub(max / 2)
                        .min(ws.len().saturating_sub(max));
                    let body =
                        Span::covering(&ws[lo..(lo + max).min(ws.len())]).expect("non-empty");
                    let positive = Text::slice(text, body).with_title(doc, true);
                    out.push(pair(Text::slice(text, chunk), positive, kind));
                }
            }
        }
        if out.is_empty() && self.short_documents && ws.len() >= 2 * self.min_sentence_words {
            let len = ws.len() / 2;
            let start = self.salient_run(text, &ws, len);
            let run = Span::covering(&ws[start..start + len]).expect("non-empty");
            let whole = Span::covering(&ws[..ws.len().min(max)]).expect("non-empty");
            out.push(Pair {
                query: Text::slice(text, run),
                positive: Text::slice(text, whole).with_title(doc, true),
                negatives: Vec::new(),
                shared: None,
                scores: None,
                task: "pseudo-query/short",
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::testutil::doc;
    use rand::SeedableRng;

    #[test]
    fn title_first_sentence_and_salient_chunk() {
        let filler = "It is on the mat. ".repeat(8);
        let text = format!(
            "Tokenizers split text into pieces. {filler} Byte pair encoding merges frequent \
             symbol pairs, byte pair encoding merges again, and encoding merges byte pairs. {filler}"
        );
        let d = doc(&text, Some("Tokenizers"));
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
        let task = PseudoQuery {
            max_positive_words: 40,
            ..Default::default()
        };
        let pairs = task.pairs(&d, &mut rng);
        let names: Vec<&str> = pairs.iter().map(|p| p.task).collect();
        assert_eq!(
            names,
            [
                "pseudo-query/title",
                "pseudo-query/first-sentence",
                "pseudo-query/salient"
            ]
        );
        assert_eq!(pairs[0].query.text, "Tokenizers");
        assert_eq!(pairs[1].query.text, "Tokenizers split text into pieces.");
        assert!(!pairs[1].positive.text.contains("split text"));
        assert!(
            pairs[2].query.text.contains("encoding merges"),
            "{}",
            pairs[2].query.text
        );
        assert!(pairs[2]
            .positive
            .span
            .unwrap()
            .contains(pairs[2].query.span.unwrap()));
        for p in &pairs {
            assert!(words(&p.positive.text, WordUnit::Unicode).len() <= 40);
        }
    }

    #[test]
    fn a_short_document_no_kind_fits_gets_its_salient_half() {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
        let task = PseudoQuery::default();
        // No title, one sentence, 10 words: no kind fits.
        let text = "How do I convert a string to a datetime object";
        let d = doc(text, None);
        let pairs = task.pairs(&d, &mut rng);
        assert_eq!(pairs.len(), 1);
        let p = &pairs[0];
        assert_eq!(p.task, "pseudo-query/short");
        assert_eq!(words(&p.query.text, WordUnit::Unicode).len(), 5);
        assert_eq!(p.positive.text, text);
        assert!(p.positive.span.unwrap().contains(p.query.span.unwrap()));
        // Off, or too short, or a document a kind fits: no such pair.
        let off = PseudoQuery {
            short_documents: false,
            ..Default::default()
        };
        assert!(off.pairs(&d, &mut rng).is_empty());
        assert!(task
            .pairs(&doc("Too short to ask", None), &mut rng)
            .is_empty());
        let titled = doc(text, Some("Dates"));
        let names: Vec<&str> = task
            .pairs(&titled, &mut rng)
            .iter()
            .map(|p| p.task)
            .collect();
        assert_eq!(names, ["pseudo-query/title"]);
    }

    /// The key table numbers a document's keys as a map does, document
    /// after document, long ones and short ones (whose slots are left
    /// from longer ones), with keys that share their high bits (probes
    /// that wrap round the table), and across the stamps' wrap.
    #[test]
    fn key_table_numbers_keys_as_a_map() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(7);
        let mut table = KeyIds::default();
        for doc in 0..60 {
            if doc == 30 {
                table.stamp = u32::MAX - 1;
            }
            let words = [1, 5, 300, 9, 1000, 40][doc % 6];
            table.reset(words);
            let mut map = std::collections::HashMap::new();
            for _ in 0..words {
                let key = match rng.random_range(0..3) {
                    0 => rng.random_range(0..8u64),
                    1 => u64::MAX - rng.random_range(0..8u64),
                    _ => rng.random::<u64>() % (words as u64 * 3),
                };
                let next = map.len() as u32;
                let want = *map.entry(key).or_insert(next);
                assert_eq!(table.entry(key, || next), want, "document {doc}");
            }
        }
    }

    #[test]
    fn idf_prefers_rare_words() {
        let mut df = DocFreq::from_text("common words everywhere");
        for _ in 0..20 {
            df = df.merge(DocFreq::from_text("common words everywhere"));
        }
        let task = PseudoQuery {
            salient_words: 2,
            doc_freq: Some(Arc::new(df)),
            ..Default::default()
        };
        let text = "common words common words everywhere zebra quagga common words";
        let ws = words(text, WordUnit::Unicode);
        assert_eq!(task.salient_chunk(text, &ws), 5);
    }
}
