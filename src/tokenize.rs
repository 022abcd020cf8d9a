//! Tokenization: any Hugging Face `tokenizer.json`, batches padded to their
//! longest member (never to a fixed length: short batches stay cheap), and
//! WordPiece training on a corpus for runs from scratch.

use std::collections::HashMap;
use std::path::Path;

use ahash::{AHashMap, RandomState};
use anyhow::{anyhow, Context, Result};
use compact_str::CompactString;
use rayon::iter::{ParallelBridge, ParallelIterator};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizedString, Normalizer, NormalizerWrapper,
    OffsetReferential, OffsetType, PaddingParams, PaddingStrategy, PostProcessorWrapper,
    PreTokenizedString, PreTokenizer, PreTokenizerWrapper, Tokenizer, TruncationParams,
};

/// Token ids of a batch, row-major `(batch, seq)`, with the 0/1 mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Ids, `rows × seq`.
    pub ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub mask: Vec<u32>,
    /// Rows.
    pub rows: usize,
    /// Columns (the longest row, at most the maximum length).
    pub seq: usize,
}

impl TokenBatch {
    /// Real (unpadded) tokens in the batch.
    pub fn tokens(&self) -> usize {
        self.mask.iter().filter(|&&m| m == 1).count()
    }
}

/// Which side of a pair a text is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A query (anchor).
    Query,
    /// A document (positive, negative, corpus passage).
    Document,
}

/// Text prepended to each side before tokenizing (E5's `"query: "` and
/// `"passage: "`), saved as sentence-transformers prompts on export.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Prompts {
    /// Before queries.
    pub query: String,
    /// Before documents.
    pub document: String,
}

impl Prompts {
    /// `texts` with the prompt of `side` prepended (borrowed when empty).
    pub fn apply<'t>(&self, side: Side, texts: &[&'t str]) -> Vec<std::borrow::Cow<'t, str>> {
        let prompt = match side {
            Side::Query => &self.query,
            Side::Document => &self.document,
        };
        texts
            .iter()
            .map(|t| match prompt.is_empty() {
                true => std::borrow::Cow::Borrowed(*t),
                false => std::borrow::Cow::Owned(format!("{prompt}{t}")),
            })
            .collect()
    }
}

/// The tokenizers of the two sides of a pair: one vocabulary, a maximum
/// length and a prompt each.
#[derive(Clone)]
pub struct PairTokenizer {
    /// Queries, cut at `query_max_len`.
    pub query: TextTokenizer,
    /// Documents, cut at `doc_max_len`.
    pub doc: TextTokenizer,
    /// The prompts.
    pub prompts: Prompts,
}

impl PairTokenizer {
    /// `base`'s vocabulary cut at `query_len` and `doc_len`.
    pub fn new(
        base: &TextTokenizer,
        query_len: usize,
        doc_len: usize,
        prompts: Prompts,
    ) -> Result<PairTokenizer> {
        Ok(PairTokenizer {
            query: base.with_max_len(query_len)?,
            doc: base.with_max_len(doc_len)?,
            prompts,
        })
    }

    /// Encodes texts of `side`, prompt prepended.
    pub fn encode(&self, side: Side, texts: &[&str]) -> Result<TokenBatch> {
        let prompted = self.prompts.apply(side, texts);
        let refs: Vec<&str> = prompted.iter().map(|c| c.as_ref()).collect();
        match side {
            Side::Query => self.query.encode(&refs),
            Side::Document => self.doc.encode(&refs),
        }
    }
}

/// A tokenizer that pads to the longest text and truncates at `max_len`.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: &Path, max_len: usize) -> Result<TextTokenizer> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("loading tokenizer {}", path.display()))?;
        Self::new(inner, max_len)
    }

    /// Wraps a tokenizer, setting padding and truncation.
    pub fn new(mut inner: Tokenizer, max_len: usize) -> Result<TextTokenizer> {
        let pad_id = ["[PAD]", "<pad>"]
            .iter()
            .find_map(|t| inner.token_to_id(t))
            .unwrap_or(0);
        let pad_token = inner.id_to_token(pad_id).unwrap_or_else(|| "[PAD]".into());
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            pad_token,
            ..PaddingParams::default()
        }));
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..TruncationParams::default()
            }))
            .map_err(|e| anyhow!("{e}"))?;
        Ok(TextTokenizer { inner })
    }

    /// The same vocabulary cut at another length.
    pub fn with_max_len(&self, max_len: usize) -> Result<TextTokenizer> {
        TextTokenizer::new(self.inner.clone(), max_len)
    }

    /// The vocabulary size (added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The wrapped tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Encodes texts with special tokens into one padded batch.
    pub fn encode(&self, texts: &[&str]) -> Result<TokenBatch> {
        let encodings = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow!("{e}"))?;
        let rows = encodings.len();
        let seq = encodings.first().map_or(0, |e| e.len());
        let mut ids = Vec::with_capacity(rows * seq);
        let mut mask = Vec::with_capacity(rows * seq);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        Ok(TokenBatch {
            ids,
            mask,
            rows,
            seq,
        })
    }

    /// Encodes (first, second) text pairs as one input each, with special
    /// tokens (`[CLS] a [SEP] b [SEP]` for BERT) and the segment type of
    /// every token (0 for the first text, 1 for the second, as the
    /// tokenizer's post-processor assigns them). A pair longer than the
    /// maximum is cut from its longer text first, as `transformers` does
    /// with `truncation=True`.
    pub fn encode_pairs(&self, pairs: &[(&str, &str)]) -> Result<(TokenBatch, Vec<u32>)> {
        let inputs: Vec<tokenizers::EncodeInput> = pairs
            .iter()
            .map(|&(a, b)| tokenizers::EncodeInput::Dual(a.into(), b.into()))
            .collect();
        let encodings = self
            .inner
            .encode_batch(inputs, true)
            .map_err(|e| anyhow!("{e}"))?;
        let rows = encodings.len();
        let seq = encodings.first().map_or(0, |e| e.len());
        let mut ids = Vec::with_capacity(rows * seq);
        let mut mask = Vec::with_capacity(rows * seq);
        let mut types = Vec::with_capacity(rows * seq);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
            types.extend_from_slice(e.get_type_ids());
        }
        let batch = TokenBatch {
            ids,
            mask,
            rows,
            seq,
        };
        Ok((batch, types))
    }

    /// Saves `tokenizer.json` (without the run's padding and truncation),
    /// atomically: a full disk never leaves a truncated tokenizer in place
    /// of a good one.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut plain = self.inner.clone();
        plain.with_padding(None);
        plain.with_truncation(None).map_err(|e| anyhow!("{e}"))?;
        let json = plain.to_string(true).map_err(|e| anyhow!("{e}"))?;
        crate::atomic::write(path, json)
    }
}

/// Trains a WordPiece vocabulary of about `vocab_size` tokens on the
/// documents of `corpus` (the first `max_docs` of them, when given), as
/// `read` walks it: the one path `pretext tokenizer` and a run from scratch
/// share. Returns the tokenizer (cut at `max_len`) and the documents used.
pub fn train_on_corpus(
    corpus: &pretext_tasks::corpus::Corpus,
    read: pretext_tasks::pipeline::ReadOptions,
    vocab_size: usize,
    max_docs: Option<usize>,
    max_len: usize,
) -> Result<(TextTokenizer, usize)> {
    let texts = first_texts(corpus, read, max_docs)?;
    if texts.is_empty() {
        anyhow::bail!("no documents to train a tokenizer on");
    }
    let tok = TextTokenizer::new(train_wordpiece(texts.iter(), vocab_size)?, max_len)?;
    Ok((tok, texts.len()))
}

/// The texts of the corpus's first `max_docs` documents (all without a
/// limit), in corpus order; the walk stops once it has them.
pub fn first_texts(
    corpus: &pretext_tasks::corpus::Corpus,
    read: pretext_tasks::pipeline::ReadOptions,
    max_docs: Option<usize>,
) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    let mut enough = false;
    let walked = pretext_tasks::pipeline::for_each_batch(
        corpus,
        read,
        |d| d.text.to_string(),
        |batch, _| {
            texts.extend(batch);
            if max_docs.is_some_and(|m| texts.len() >= m) {
                enough = true;
                // Stops the walk; told apart from a real error below.
                return Err(pretext_tasks::Error::Config("enough documents".into()));
            }
            Ok(())
        },
    );
    if !enough {
        walked?;
    }
    if let Some(m) = max_docs {
        texts.truncate(m);
    }
    Ok(texts)
}

/// Trains a BERT-style WordPiece tokenizer (lower-casing, accent
/// stripping, `[CLS] … [SEP]`) of about `vocab_size` tokens on `texts`.
///
/// The same texts give the same vocabulary in every process. HF
/// tokenizers' own `Tokenizer::train` counts words in hash maps seeded at
/// random per process, and its trainer numbers the `##` sub-word tokens in
/// that map's order and breaks ties between equally frequent merges by
/// those numbers, so two runs could learn different vocabularies. Here the
/// words are counted first, then handed to the same trainer in a map with
/// fixed hash seeds, filled in sorted order: its iteration order, and so
/// every id and tie, is the same each time.
pub fn train_wordpiece<I, S>(texts: I, vocab_size: usize) -> Result<Tokenizer>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    let trainer = BpeTrainerBuilder::new()
        .continuing_subword_prefix("##".into())
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(
            specials
                .iter()
                .map(|t| AddedToken::from(*t, true))
                .collect(),
        )
        .build();
    let mut tok = Tokenizer::new(ModelWrapper::WordPiece(WordPiece::default()));
    tok.with_normalizer(Some(NormalizerWrapper::BertNormalizer(
        BertNormalizer::default(),
    )))
    .map_err(|e| anyhow!("{e}"))?;
    tok.with_pre_tokenizer(Some(PreTokenizerWrapper::BertPreTokenizer(
        BertPreTokenizer,
    )));
    tok.with_decoder(Some(DecoderWrapper::WordPiece(
        tokenizers::decoders::wordpiece::WordPiece::default(),
    )));
    let mut bpe = BPE::default();
    let special_tokens = trainer
        .do_train(&word_counts(&tok, texts)?, &mut bpe)
        .map_err(|e| anyhow!("{e}"))?;
    tok.with_model(ModelWrapper::WordPiece(WordPiece::from_bpe(&bpe)));
    tok.add_special_tokens(special_tokens)
        .map_err(|e| anyhow!("{e}"))?;
    let id = |t: &str| {
        tok.token_to_id(t)
            .ok_or_else(|| anyhow!("trained vocabulary lacks {t}"))
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    tok.with_post_processor(Some(PostProcessorWrapper::Bert(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    ))));
    Ok(tok)
}

/// How often each word of `texts` occurs, words as `tok`'s normaliser and
/// pre-tokenizer cut them (what `Tokenizer::train` feeds its trainer), in
/// a map whose iteration order is the same in every process.
fn word_counts<I, S>(tok: &Tokenizer, texts: I) -> Result<AHashMap<CompactString, u64>>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    let counts = texts
        .par_bridge()
        .map(|text| -> Result<HashMap<String, u64>> {
            let mut normalized = NormalizedString::from(text.as_ref());
            if let Some(n) = tok.get_normalizer() {
                n.normalize(&mut normalized).map_err(|e| anyhow!("{e}"))?;
            }
            let mut words = PreTokenizedString::from(normalized);
            if let Some(p) = tok.get_pre_tokenizer() {
                p.pre_tokenize(&mut words).map_err(|e| anyhow!("{e}"))?;
            }
            let mut counts = HashMap::new();
            for (word, _, _) in words.get_splits(OffsetReferential::Original, OffsetType::Byte) {
                *counts.entry(word.to_owned()).or_default() += 1;
            }
            Ok(counts)
        })
        .try_reduce(HashMap::new, |mut a, b| {
            for (word, n) in b {
                *a.entry(word).or_default() += n;
            }
            Ok(a)
        })?;
    let mut sorted: Vec<(String, u64)> = counts.into_iter().collect();
    sorted.sort_unstable();
    let mut map =
        AHashMap::with_capacity_and_hasher(sorted.len(), RandomState::with_seeds(1, 2, 3, 4));
    map.extend(
        sorted
            .into_iter()
            .map(|(word, n)| (CompactString::from(word), n)),
    );
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trains_pads_and_truncates() {
        let texts: Vec<String> = (0..200)
            .map(|i| {
                format!("The quick brown fox number {i} jumps over the lazy dog again and again.")
            })
            .collect();
        let tok = train_wordpiece(texts.iter(), 200).unwrap();
        let tok = TextTokenizer::new(tok, 8).unwrap();
        assert!(tok.vocab_size() <= 200 && tok.vocab_size() > 30);
        let b = tok
            .encode(&[
                "the quick brown fox",
                "lazy dog jumps over the fox again and again and again",
            ])
            .unwrap();
        assert_eq!(
            (b.rows, b.seq),
            (2, 8),
            "padded to the longest, cut at max_len"
        );
        assert_eq!(b.ids[0], tok.inner().token_to_id("[CLS]").unwrap());
        assert_eq!(
            b.mask[..8].iter().sum::<u32>() as usize,
            6,
            "[CLS] 4 words [SEP]"
        );
        assert_eq!(b.mask[8..].iter().sum::<u32>(), 8);
        assert_eq!(b.ids[6], tok.inner().token_to_id("[PAD]").unwrap());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        tok.save(&p).unwrap();
        let again = TextTokenizer::from_file(&p, 8).unwrap();
        assert_eq!(
            again.encode(&["the quick brown fox"]).unwrap().ids,
            b.ids[..6]
        );
    }
}
