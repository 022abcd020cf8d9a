//! `Pooling::Weighted`'s per-token weights: started from a corpus's idf,
//! and written and read as sentence-transformers' `WordWeights` module (a
//! vocabulary in id order and a weight per token), so an exported model
//! pools the same way in sentence-transformers.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tokenizers::Tokenizer;

use super::pretrained::{read_json, sentence_modules};

/// The config file names: sentence-transformers 5 and later read
/// `config.json`, earlier versions `wordweights_config.json`; both are
/// written, the first found is read.
const CONFIG_FILES: [&str; 2] = ["config.json", "wordweights_config.json"];

/// Documents whose tokens are counted for the idf (the first ones): a
/// sample this size already ranks common tokens below rare ones, and the
/// count stays a few seconds on a corpus of any size.
pub const IDF_DOCS: usize = 100_000;

/// Per-token idf over `texts` (BM25's, always positive, as
/// [`pretext_tasks::idf::DocFreq::idf`]): `ln(1 + (N − df + 0.5) / (df +
/// 0.5))` for each of `vocab` ids. Texts are tokenized whole, with the
/// special tokens, so `[CLS]` and `[SEP]`, in every text, weigh almost
/// nothing, and tokens the texts never hold weigh the most.
pub fn idf<T: AsRef<str>>(tokenizer: &Tokenizer, texts: &[T], vocab: usize) -> Result<Vec<f32>> {
    let mut df = vec![0u64; vocab];
    let mut docs = 0u64;
    for_each_token_count(tokenizer, texts, |counts| {
        for &(id, _) in counts {
            if let Some(c) = df.get_mut(id as usize) {
                *c += 1;
            }
        }
        docs += 1;
    })?;
    let n = docs as f64;
    Ok(df
        .into_iter()
        .map(|d| {
            let d = d as f64;
            (1.0 + (n - d + 0.5) / (d + 0.5)).ln() as f32
        })
        .collect())
}

/// Calls `each` with every text's distinct token ids and their counts, in
/// id order: texts tokenized whole (no truncation), with the special
/// tokens, 1,024 at a time (the tokenizer's batches run in parallel).
pub(crate) fn for_each_token_count<T: AsRef<str>>(
    tokenizer: &Tokenizer,
    texts: &[T],
    mut each: impl FnMut(&[(u32, u32)]),
) -> Result<()> {
    let mut tok = tokenizer.clone();
    tok.with_truncation(None).map_err(|e| anyhow!("{e}"))?;
    tok.with_padding(None);
    let mut counts: Vec<(u32, u32)> = Vec::new();
    for chunk in texts.chunks(1024) {
        let chunk: Vec<&str> = chunk.iter().map(AsRef::as_ref).collect();
        let encoded = tok
            .encode_batch(chunk, true)
            .map_err(|e| anyhow!("tokenizing the corpus: {e}"))?;
        for e in encoded {
            let mut ids: Vec<u32> = e.get_ids().to_vec();
            ids.sort_unstable();
            counts.clear();
            for id in ids {
                match counts.last_mut() {
                    Some((last, n)) if *last == id => *n += 1,
                    _ => counts.push((id, 1)),
                }
            }
            each(&counts);
        }
    }
    Ok(())
}

/// The tokenizer's vocabulary in id order, `len` entries (ids it lacks get
/// a placeholder, as a model's vocabulary may be larger than its
/// tokenizer's).
fn vocab_in_order(tokenizer: &Tokenizer, len: usize) -> Vec<String> {
    let mut vocab: Vec<Option<String>> = vec![None; len];
    for (token, id) in tokenizer.get_vocab(true) {
        if let Some(slot) = vocab.get_mut(id as usize) {
            *slot = Some(token);
        }
    }
    vocab
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.unwrap_or_else(|| format!("[pretext-unused{i}]")))
        .collect()
}

/// Writes `weights` (one per id) as a `WordWeights` module in `dir`.
pub fn write(dir: &Path, tokenizer: &Path, weights: &[f32]) -> Result<()> {
    let tok = Tokenizer::from_file(tokenizer)
        .map_err(|e| anyhow!("reading {}: {e}", tokenizer.display()))?;
    let vocab = vocab_in_order(&tok, weights.len());
    let word_weights: serde_json::Map<String, Value> = vocab
        .iter()
        .zip(weights)
        .map(|(t, &w)| (t.clone(), json!(w)))
        .collect();
    let config = json!({"vocab": vocab, "word_weights": word_weights, "unknown_word_weight": 1.0});
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = serde_json::to_string(&config)? + "\n";
    for f in CONFIG_FILES {
        std::fs::write(dir.join(f), &text)
            .with_context(|| format!("writing {}", dir.join(f).display()))?;
    }
    Ok(())
}

/// The weights of the `WordWeights` module a sentence-transformers folder
/// lists in its `modules.json`, if it has one.
pub fn find(model: &Path) -> Result<Option<Vec<f32>>> {
    sentence_modules(model)?
        .into_iter()
        .find(|(kind, _)| kind == "WordWeights")
        .map(|(_, dir)| read(&dir))
        .transpose()
}

/// Reads a `WordWeights` module in `dir`: the weight of each of the
/// module's vocabulary entries, which index by token id as its embedding
/// does. Weights must be positive (pretext pools by their logarithms).
pub fn read(dir: &Path) -> Result<Vec<f32>> {
    let path = CONFIG_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
        .ok_or_else(|| anyhow!("{}: no WordWeights config.json", dir.display()))?;
    let v = read_json(&path)?;
    let field = |name: &str| {
        v.get(name)
            .ok_or_else(|| anyhow!("{}: no `{name}` field", path.display()))
    };
    let vocab = field("vocab")?
        .as_array()
        .ok_or_else(|| anyhow!("{}: `vocab` is not a list", path.display()))?;
    let weights = field("word_weights")?
        .as_object()
        .ok_or_else(|| anyhow!("{}: `word_weights` is not an object", path.display()))?;
    let unknown = v
        .get("unknown_word_weight")
        .and_then(Value::as_f64)
        .unwrap_or(1.0);
    let mut out = Vec::with_capacity(vocab.len());
    for (i, token) in vocab.iter().enumerate() {
        let token = token.as_str().unwrap_or_default();
        // sentence-transformers' lookup: the token, then its lower case.
        let w = weights
            .get(token)
            .or_else(|| weights.get(&token.to_lowercase()))
            .and_then(Value::as_f64)
            .unwrap_or(unknown);
        if !(w > 0.0 && w.is_finite()) {
            bail!(
                "{}: token {i} (`{token}`) has weight {w}; pretext reads positive weights only",
                path.display()
            );
        }
        out.push(w as f32);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXTS: [&str; 3] = ["the cat sat", "the dog ran", "the cat ran far"];

    /// Every word a whole token (twice over: the trainer keeps words seen twice).
    fn tokenizer() -> Tokenizer {
        crate::tokenize::train_wordpiece(TEXTS.iter().chain(TEXTS.iter()), 64).unwrap()
    }

    #[test]
    fn idf_ranks_rare_tokens_above_common_ones() {
        let tok = tokenizer();
        let idf = idf(&tok, &TEXTS, tok.get_vocab_size(true)).unwrap();
        let id = |t: &str| tok.token_to_id(t).unwrap() as usize;
        assert!(idf[id("far")] > idf[id("cat")], "{idf:?}");
        assert!(idf[id("cat")] > idf[id("the")]);
        // In every text: almost nothing, as the special tokens.
        assert!(idf[id("[CLS]")] < 0.2 && idf[id("[SEP]")] < 0.2);
        assert!(idf.iter().all(|&w| w > 0.0));
    }

    #[test]
    fn written_weights_read_back_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let tok = tokenizer();
        let path = dir.path().join("tokenizer.json");
        tok.save(&path, false).unwrap();
        let n = tok.get_vocab_size(true) + 2;
        let weights: Vec<f32> = (0..n).map(|i| 0.5 + i as f32).collect();
        write(&dir.path().join("ww"), &path, &weights).unwrap();
        assert_eq!(read(&dir.path().join("ww")).unwrap(), weights);
        let legacy = dir.path().join("ww/wordweights_config.json");
        assert!(legacy.exists());
        // A weight pretext cannot take is an error naming the file.
        std::fs::remove_file(&legacy).unwrap();
        let config = dir.path().join("ww/config.json");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, text.replacen(":0.5", ":-1.0", 1)).unwrap();
        let err = read(&dir.path().join("ww")).unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains("positive"),
            "{err}"
        );
    }
}
