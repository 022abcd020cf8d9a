//! `pretext export`: a trained run as a folder that Hugging Face
//! transformers (`BertModel`) and sentence-transformers load as they are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use candle_core::Tensor;
use serde_json::json;

use crate::config::Config;
use crate::model::{BertConfig, Pooling, Similarity};
use crate::train::checkpoint;

/// The checkpoint folder a path names: itself, or a run's latest.
pub fn resolve_checkpoint(path: &Path) -> Result<PathBuf> {
    if path.join("state.json").exists() {
        return Ok(path.to_path_buf());
    }
    checkpoint::latest(path)?.ok_or_else(|| {
        anyhow!(
            "{}: no checkpoint (not a run directory or checkpoint)",
            path.display()
        )
    })
}

/// Exports the checkpoint at `path` (a run directory or one checkpoint) to `out`.
pub fn export(path: &Path, out: &Path) -> Result<()> {
    let ckpt = resolve_checkpoint(path)?;
    let run = ckpt
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("{}: not inside a run", ckpt.display()))?;
    let (state, tensors) = checkpoint::load(&ckpt)?;
    let config: Config = toml::from_str(&state.config).context("the checkpoint's configuration")?;
    let bert: BertConfig = serde_json::from_str(
        &std::fs::read_to_string(run.join("config.json"))
            .with_context(|| format!("reading {}/config.json", run.display()))?,
    )?;
    let tokenizer = run.join("tokenizer.json");
    write_tower(&tensors.model, "", &bert, &config, &tokenizer, out)?;
    if !config.model.shared_towers {
        write_tower(
            &tensors.model,
            "doc.",
            &bert,
            &config,
            &tokenizer,
            &out.join("doc"),
        )?;
    }
    Ok(())
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(v)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

fn write_tower(
    all: &HashMap<String, Tensor>,
    prefix: &str,
    bert: &BertConfig,
    config: &Config,
    tokenizer: &Path,
    out: &Path,
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut encoder = HashMap::new();
    let mut dense = HashMap::new();
    for (name, t) in all {
        let Some(key) = name.strip_prefix(prefix) else {
            continue;
        };
        if prefix.is_empty() && name.starts_with("doc.") {
            continue;
        }
        match key.strip_prefix("head.dense.") {
            Some(rest) => dense.insert(format!("linear.{rest}"), t.clone()),
            None => encoder.insert(key.to_string(), t.clone()),
        };
    }
    candle_core::safetensors::save(&encoder, out.join("model.safetensors"))?;
    write_json(&out.join("config.json"), &bert.to_hf_json())?;
    std::fs::copy(tokenizer, out.join("tokenizer.json"))
        .with_context(|| format!("copying {}", tokenizer.display()))?;
    let m = &config.model;
    let dim = bert.hidden_size;
    let mut modules = vec![
        json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
        json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
    ];
    write_json(
        &out.join("1_Pooling/config.json"),
        &json!({
            "word_embedding_dimension": dim,
            "pooling_mode_cls_token": m.pooling == Pooling::Cls,
            "pooling_mode_mean_tokens": m.pooling == Pooling::Mean,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
        }),
    )?;
    if !dense.is_empty() {
        std::fs::create_dir_all(out.join("2_Dense"))?;
        candle_core::safetensors::save(&dense, out.join("2_Dense").join("model.safetensors"))?;
        write_json(
            &out.join("2_Dense/config.json"),
            &json!({"in_features": dim, "out_features": m.projection, "bias": true,
                    "activation_function": "torch.nn.modules.linear.Identity"}),
        )?;
        modules.push(json!({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}));
    }
    if m.normalize {
        let idx = modules.len();
        std::fs::create_dir_all(out.join(format!("{idx}_Normalize")))?;
        modules.push(
            json!({"idx": idx, "name": idx.to_string(), "path": format!("{idx}_Normalize"),
                            "type": "sentence_transformers.models.Normalize"}),
        );
    }
    write_json(
        &out.join("modules.json"),
        &serde_json::Value::Array(modules),
    )?;
    write_json(
        &out.join("sentence_bert_config.json"),
        &json!({"max_seq_length": m.max_len, "do_lower_case": false}),
    )?;
    let similarity = match m.similarity {
        Similarity::Dot => "dot",
        Similarity::Cosine => "cosine",
    };
    write_json(
        &out.join("config_sentence_transformers.json"),
        &json!({"__version__": {"sentence_transformers": "3.0.0", "pretext": env!("CARGO_PKG_VERSION")},
                "similarity_fn_name": similarity}),
    )?;
    Ok(())
}
