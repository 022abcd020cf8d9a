//! Loads a sentence-transformers / Hugging Face model folder for inference:
//! `config.json`, `model.safetensors` (memory-mapped), `tokenizer.json`, and
//! the word weights, pooling, dense and normalize modules named in
//! `modules.json`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;

use super::{word_weights, BertConfig, Head, Mode, Pooling, Similarity, Tower};
use crate::tokenize::{Prompts, Side, TextTokenizer};

/// An encoder ready to embed text.
pub struct Pretrained {
    /// The tower (the query tower of a folder with two).
    pub tower: Tower,
    /// The document tower of a folder exported with separate towers
    /// (`doc/`, as `pretext export` writes `model.shared_towers = false`):
    /// documents encoded with the query tower would score a model with
    /// another encoder than it was trained with.
    pub doc_tower: Option<Tower>,
    /// Its tokenizer (the query tower's length).
    pub tokenizer: TextTokenizer,
    /// The tokenizer at the document tower's own length, when the folder
    /// has one (`doc/`): a two-tower export reads queries and documents at
    /// the lengths each was trained at.
    pub doc_tokenizer: Option<TextTokenizer>,
    /// The device.
    pub device: Device,
    /// How the folder says its embeddings are compared. Embeddings come out
    /// L2-normalised when it is cosine, so every consumer (eval, bench,
    /// mining, the ANCE refresh) scores them by dot product and gets the
    /// similarity the model was trained with.
    pub similarity: Similarity,
    /// The folder's prompts (`prompts.query`, `prompts.document` of
    /// `config_sentence_transformers.json`), prepended by [`Pretrained::embed_side`].
    pub prompts: Prompts,
}

/// The prompts a folder declares (`query`; `document`, `passage` or
/// `doc`), empty where it declares none.
pub fn declared_prompts(dir: &Path) -> Result<Prompts> {
    let p = dir.join("config_sentence_transformers.json");
    if !p.exists() {
        return Ok(Prompts::default());
    }
    let v = read_json(&p)?;
    let get = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| v["prompts"][*n].as_str())
            .unwrap_or_default()
            .to_string()
    };
    Ok(Prompts {
        query: get(&["query"]),
        document: get(&["document", "passage", "doc"]),
    })
}

/// The similarity a folder declares: `similarity_fn_name` of
/// `config_sentence_transformers.json` (`cosine`, `dot`), else
/// sentence-transformers' default, cosine, for a sentence-transformers folder
/// (one with `modules.json`), and dot product for a bare Hugging Face folder
/// (Contriever, DPR).
pub fn declared_similarity(dir: &Path) -> Result<Similarity> {
    let p = dir.join("config_sentence_transformers.json");
    let name = if p.exists() {
        read_json(&p)?["similarity_fn_name"]
            .as_str()
            .map(str::to_string)
    } else {
        None
    };
    match name.as_deref() {
        Some("cosine") => Ok(Similarity::Cosine),
        Some("dot") | Some("dot_product") => Ok(Similarity::Dot),
        Some(other) => Err(anyhow!(
            "{}: similarity_fn_name `{other}` is not supported (cosine or dot)",
            p.display()
        )),
        None if dir.join("modules.json").exists() => Ok(Similarity::Cosine),
        None => Ok(Similarity::Dot),
    }
}

/// The pooling a sentence-transformers `Pooling` config asks for: mean or
/// CLS, named either way sentence-transformers writes it (`pooling_mode`
/// since version 5, one `pooling_mode_*` flag before); anything else
/// (max, sqrt-length, weighted-mean, last-token, several modes
/// concatenated, the prompt left out of the mean) is described for the
/// refusal.
fn pooling_of(p: &Value) -> std::result::Result<Pooling, String> {
    if p["include_prompt"].as_bool() == Some(false) {
        return Err("pooling that leaves the prompt out".into());
    }
    let modes: Vec<String> = match &p["pooling_mode"] {
        Value::String(m) => vec![m.clone()],
        Value::Array(list) => list
            .iter()
            .map(|m| m.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => p
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| k.starts_with("pooling_mode_") && v.as_bool() == Some(true))
            .map(|(k, _)| match k.as_str() {
                "pooling_mode_cls_token" => "cls".to_string(),
                "pooling_mode_mean_tokens" => "mean".to_string(),
                other => other.trim_start_matches("pooling_mode_").to_string(),
            })
            .collect(),
    };
    match modes.as_slice() {
        [m] if m == "mean" => Ok(Pooling::Mean),
        [m] if m == "cls" => Ok(Pooling::Cls),
        _ => Err(format!("pooling by {modes:?}")),
    }
}

/// A JSON file, with its path in any error.
pub(crate) fn read_json(p: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

/// The modules a sentence-transformers folder lists in its `modules.json`
/// (none for a bare Hugging Face folder), in order: each one's type (the
/// last segment of its class name, `Pooling` for
/// `sentence_transformers.models.Pooling`) and its folder.
pub(crate) fn sentence_modules(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let path = dir.join("modules.json");
    if !path.exists() {
        return Ok(Vec::new());
    }
    read_json(&path)?
        .as_array()
        .ok_or_else(|| anyhow!("{}: not a list", path.display()))?
        .iter()
        .map(|m| {
            let kind = m["type"].as_str().unwrap_or_default();
            let kind = kind.rsplit('.').next().unwrap_or_default().to_string();
            Ok((kind, dir.join(m["path"].as_str().unwrap_or_default())))
        })
        .collect()
}

impl Pretrained {
    /// Loads `dir`; `max_len` caps the input (default: the folder's
    /// `sentence_bert_config.json`, else 512).
    pub fn load(dir: &Path, device: &Device, max_len: Option<usize>) -> Result<Pretrained> {
        let config: BertConfig = serde_json::from_value(read_json(&dir.join("config.json"))?)
            .with_context(|| format!("{}: not a BERT config", dir.join("config.json").display()))?;
        let mut head = Head {
            pooling: Pooling::Mean,
            projection: None,
            normalize: false,
        };
        let mut dense = None;
        let mut token_weights = None;
        let modules = dir.join("modules.json");
        for (kind, path) in sentence_modules(dir)? {
            // A module read as another, or skipped, would embed
            // otherwise than the folder says: refused instead.
            let unsupported = |what: &str| {
                anyhow!(
                    "{}: {what} is not supported (pretext reads Transformer, WordWeights, \
                         Pooling by mean or CLS, Dense without activation, and Normalize)",
                    modules.display()
                )
            };
            match kind.as_str() {
                "Transformer" => {}
                "Pooling" => {
                    let p = read_json(&path.join("config.json"))?;
                    head.pooling = pooling_of(&p).map_err(|e| unsupported(&e))?;
                }
                "WordWeights" => token_weights = Some(word_weights::read(&path)?),
                "Normalize" => head.normalize = true,
                "Dense" => {
                    let c = read_json(&path.join("config.json"))?;
                    let act = c["activation_function"].as_str().unwrap_or_default();
                    if !act.is_empty() && !act.ends_with("Identity") {
                        return Err(unsupported(&format!("a Dense module with `{act}`")));
                    }
                    head.projection = c["out_features"].as_u64().map(|n| n as usize);
                    dense = Some(path.join("model.safetensors"));
                }
                _ => return Err(unsupported(&format!("module `{kind}`"))),
            }
        }
        let similarity = declared_similarity(dir)?;
        if similarity == Similarity::Cosine {
            // Normalising twice changes nothing when a Normalize module is there.
            head.normalize = true;
        }
        let explicit_len = max_len;
        let max_len = match max_len {
            Some(n) => n,
            None => {
                let p = dir.join("sentence_bert_config.json");
                if p.exists() {
                    read_json(&p)?["max_seq_length"].as_u64().unwrap_or(512) as usize
                } else {
                    512
                }
            }
        }
        .min(config.max_position_embeddings);
        let mut files = vec![dir.join("model.safetensors")];
        files.extend(dense.clone());
        // SAFETY: the checkpoint files are read-only inputs not modified while loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, device)? };
        let has_prefix = vb.contains_tensor("bert.embeddings.word_embeddings.weight");
        let vb = if has_prefix { vb.pp("bert") } else { vb };
        let vb = vb.rename_f(|name: &str| match name.strip_prefix("head.dense.") {
            Some(rest) => format!("linear.{rest}"),
            None => name.to_string(),
        });
        let mut tower = Tower::new(&config, head, vb)
            .with_context(|| format!("loading weights from {}", dir.display()))?;
        if let Some(mut w) = token_weights {
            if head.pooling != Pooling::Mean {
                anyhow::bail!(
                    "{}: WordWeights before CLS pooling is not supported (pretext weighs a mean)",
                    modules.display()
                );
            }
            // Ids past the module's vocabulary take its unknown weight, 1
            // (the tokenizer never produces them when the two agree).
            w.resize(config.vocab_size, 1.0);
            let w = Tensor::from_vec(w, config.vocab_size, device)?;
            tower = tower.with_token_weights(&w)?;
        }
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"), max_len)?;
        let doc = dir.join("doc");
        // The document tower at its own length, unless the caller caps
        // both (older exports wrote the document length for both towers).
        let (doc_tower, doc_tokenizer) = match doc.join("config.json").exists() {
            true => {
                let d = Pretrained::load(&doc, device, explicit_len)
                    .with_context(|| format!("loading the document tower {}", doc.display()))?;
                if d.similarity != similarity {
                    anyhow::bail!(
                        "{}: the document tower declares another similarity than the query tower",
                        doc.display()
                    );
                }
                (Some(d.tower), Some(d.tokenizer))
            }
            false => (None, None),
        };
        Ok(Pretrained {
            tower,
            doc_tower,
            tokenizer,
            doc_tokenizer,
            device: device.clone(),
            similarity,
            prompts: declared_prompts(dir)?,
        })
    }

    /// Runs both towers' dense layers in int8 (`--int8`; CPU only): faster
    /// encoding for a small loss of precision (see [`crate::model::Bert::quantize`]).
    pub fn quantize(&mut self) -> Result<()> {
        self.tower.quantize()?;
        if let Some(d) = &mut self.doc_tower {
            d.quantize()?;
        }
        Ok(())
    }

    /// Embeds texts of `side` with its prompt (no dropout), `(texts, dim)`.
    pub fn embed_side(&self, texts: &[&str], side: Side) -> Result<Tensor> {
        let prompted = self.prompts.apply(side, texts);
        let refs: Vec<&str> = prompted.iter().map(|c| c.as_ref()).collect();
        let (tower, tokenizer) = match side {
            Side::Document => (
                self.doc_tower.as_ref().unwrap_or(&self.tower),
                self.doc_tokenizer.as_ref().unwrap_or(&self.tokenizer),
            ),
            Side::Query => (&self.tower, &self.tokenizer),
        };
        self.encode_with(tower, tokenizer, &refs)
    }

    /// Embeds texts as they are with the query tower (no prompt, no
    /// dropout), `(texts, dim)`.
    pub fn embed(&self, texts: &[&str]) -> Result<Tensor> {
        self.encode_with(&self.tower, &self.tokenizer, texts)
    }

    fn encode_with(
        &self,
        tower: &Tower,
        tokenizer: &TextTokenizer,
        texts: &[&str],
    ) -> Result<Tensor> {
        let b = tokenizer.encode(texts)?;
        let ids = Tensor::from_slice(&b.ids, (b.rows, b.seq), &self.device)?;
        let mask = Tensor::from_slice(&b.mask, (b.rows, b.seq), &self.device)?;
        Ok(tower.encode(&ids, &mask, Mode::Eval)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Both ways sentence-transformers names a pooling mode are read, and
    /// a mode pretext cannot compute is refused rather than read as mean.
    #[test]
    fn pooling_modes_are_read_both_ways_and_others_refused() {
        let flags = json!({"pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true,
                           "pooling_mode_max_tokens": false, "pooling_mode_lasttoken": false});
        assert_eq!(pooling_of(&flags), Ok(Pooling::Mean));
        assert_eq!(
            pooling_of(&json!({"pooling_mode_cls_token": true})),
            Ok(Pooling::Cls)
        );
        assert_eq!(
            pooling_of(&json!({"pooling_mode": "cls"})),
            Ok(Pooling::Cls)
        );
        assert_eq!(
            pooling_of(&json!({"pooling_mode": ["mean"]})),
            Ok(Pooling::Mean)
        );
        for refused in [
            json!({"pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": true}),
            json!({"pooling_mode_weightedmean_tokens": true}),
            json!({"pooling_mode": "lasttoken"}),
            json!({"pooling_mode": ["mean", "max"]}),
            json!({"pooling_mode": "mean", "include_prompt": false}),
            json!({}),
        ] {
            assert!(pooling_of(&refused).is_err(), "{refused}");
        }
    }
}
