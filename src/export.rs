//! `pretext export`: a trained run as a folder that Hugging Face
//! transformers (`BertModel`) and sentence-transformers load as they are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use candle_core::Tensor;
use serde_json::json;

use crate::config::Config;
use crate::model::{word_weights, BertConfig, Pooling, Similarity, LOG_WEIGHTS};
use crate::train::{checkpoint, RunDir};

/// The checkpoint folder a path names: itself, or a run's latest.
pub fn resolve_checkpoint(path: &Path) -> Result<PathBuf> {
    if path.join("state.json").exists() {
        return Ok(path.to_path_buf());
    }
    RunDir::new(path).latest()?.ok_or_else(|| {
        anyhow!(
            "{}: no checkpoint (not a run directory or checkpoint)",
            path.display()
        )
    })
}

/// A cross-encoder checkpoint is already a `BertForSequenceClassification`
/// folder: its files are copied, the run's marker left behind.
fn export_cross_encoder(ckpt: &Path, out: &Path) -> Result<()> {
    if out.exists()
        && std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some())
        && !out.join("config.json").exists()
    {
        anyhow::bail!(
            "{} exists and is not a model folder; export into a new or empty folder",
            out.display()
        );
    }
    crate::atomic::write_dir(out, |tmp| {
        for f in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        ] {
            std::fs::copy(ckpt.join(f), tmp.join(f))
                .with_context(|| format!("copying {}", ckpt.join(f).display()))?;
        }
        Ok(())
    })
}

/// Exports the checkpoint at `path` (a run directory or one checkpoint) to
/// `out`. The folder is built beside `out` and renamed into place, so a
/// failed export (a full disk) leaves no partial folder and no previous
/// export half-replaced; files are readable by others (0644).
pub fn export(path: &Path, out: &Path) -> Result<()> {
    let ckpt = resolve_checkpoint(path)?;
    if crate::train::cross::is_checkpoint(&ckpt) {
        return export_cross_encoder(&ckpt, out);
    }
    let run = RunDir::of_checkpoint(&ckpt)?;
    let (state, tensors) = checkpoint::load(&ckpt)?;
    let config: Config = toml::from_str(&state.config)
        .with_context(|| format!("{}: the checkpoint's configuration", ckpt.display()))?;
    let p = run.model_config();
    let bert: BertConfig = serde_json::from_str(
        &std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
    )
    .with_context(|| format!("parsing {}", p.display()))?;
    if out.exists()
        && std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some())
        && !out.join("modules.json").exists()
    {
        anyhow::bail!(
            "{} exists and is not a model folder; export into a new or empty folder",
            out.display()
        );
    }
    let pooler = init_pooler(&config, &bert)?;
    let tokenizer = run.tokenizer();
    crate::atomic::write_dir(out, |tmp| {
        let shared = config.model.shared_towers;
        let reads = match shared {
            true => TowerReads::Both,
            false => TowerReads::Queries,
        };
        let parts = Shared {
            bert: &bert,
            config: &config,
            pooler: &pooler,
            tokenizer: &tokenizer,
        };
        write_tower(&tensors.model, "", &parts, reads, tmp)?;
        if !shared {
            let doc = tmp.join("doc");
            write_tower(&tensors.model, "doc.", &parts, TowerReads::Documents, &doc)?;
        }
        readable(tmp)
    })
}

/// `transformers.BertModel` has a pooler (a dense layer with tanh over
/// `[CLS]`) that retrieval does not use and pretext does not train. Without
/// its weights in the file, loading warns that they were "newly
/// initialized"; so the export carries the init model's pooler when it had
/// one, and otherwise an identity layer (weight I, bias 0).
fn init_pooler(config: &Config, bert: &BertConfig) -> Result<HashMap<String, Tensor>> {
    let h = bert.hidden_size;
    if let Some(dir) = &config.model.init {
        let p = dir.join("model.safetensors");
        if let Ok(t) = candle_core::safetensors::load(&p, &candle_core::Device::Cpu) {
            let get = |k: &str| t.get(k).or_else(|| t.get(&format!("bert.{k}"))).cloned();
            if let (Some(w), Some(b)) = (get("pooler.dense.weight"), get("pooler.dense.bias")) {
                if w.dims() == [h, h] && b.dims() == [h] {
                    return Ok([
                        ("pooler.dense.weight".to_string(), w),
                        ("pooler.dense.bias".to_string(), b),
                    ]
                    .into_iter()
                    .collect());
                }
            }
        }
    }
    let dev = candle_core::Device::Cpu;
    Ok([
        (
            "pooler.dense.weight".to_string(),
            Tensor::eye(h, candle_core::DType::F32, &dev)?,
        ),
        (
            "pooler.dense.bias".to_string(),
            Tensor::zeros(h, candle_core::DType::F32, &dev)?,
        ),
    ]
    .into_iter()
    .collect())
}

/// Files 0644 and folders 0755 below `dir`, whatever the umask made them:
/// an exported model is meant to be shared.
fn readable(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        for entry in std::fs::read_dir(dir)? {
            let p = entry?.path();
            if p.is_dir() {
                readable(&p)?;
            } else {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The longest text a tower of the exported model reads: the length it
/// was trained at (a query tower's `query_max_len`, a document tower's
/// `doc_max_len`, a shared tower's longer of the two), or for a model
/// without positions (which reads every length the same way) the position
/// table's size.
fn read_length(
    m: &crate::config::ModelSection,
    bert: &BertConfig,
    reads: TowerReads,
) -> Result<usize> {
    if !m.positions {
        return Ok(bert.max_position_embeddings);
    }
    let (query, doc) = m.lengths().map_err(anyhow::Error::msg)?;
    Ok(match reads {
        TowerReads::Queries => query,
        TowerReads::Documents => doc,
        TowerReads::Both => query.max(doc),
    })
}

/// What a tower of the export encodes.
#[derive(Debug, Clone, Copy)]
enum TowerReads {
    Queries,
    Documents,
    Both,
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(v)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// What every tower of an export is written with.
struct Shared<'a> {
    bert: &'a BertConfig,
    config: &'a Config,
    pooler: &'a HashMap<String, Tensor>,
    tokenizer: &'a Path,
}

/// Writes the tower whose weights are `all`'s under `prefix` as a
/// sentence-transformers folder `out`.
fn write_tower(
    all: &HashMap<String, Tensor>,
    prefix: &str,
    parts: &Shared<'_>,
    reads: TowerReads,
    out: &Path,
) -> Result<()> {
    let Shared {
        bert,
        config,
        pooler,
        tokenizer,
    } = *parts;
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
    // Weighted pooling's weights are a module of their own (WordWeights),
    // not the encoder's.
    let log_weights = encoder.remove(LOG_WEIGHTS);
    if encoder.is_empty() {
        anyhow::bail!("the checkpoint holds no {prefix}encoder weights");
    }
    for (k, t) in pooler {
        encoder.entry(k.clone()).or_insert_with(|| t.clone());
    }
    candle_core::safetensors::save(&encoder, out.join("model.safetensors"))?;
    write_json(&out.join("config.json"), &bert.to_hf_json())?;
    std::fs::copy(tokenizer, out.join("tokenizer.json"))
        .with_context(|| format!("copying {}", tokenizer.display()))?;
    let m = &config.model;
    let dim = bert.hidden_size;
    let mut modules = vec![
        json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
    ];
    // Each further module in its own `IDX_Name` folder, numbered in order.
    let mut module = |name: &str, kind: &str| {
        let idx = modules.len();
        let path = format!("{idx}_{name}");
        modules.push(json!({"idx": idx, "name": idx.to_string(), "path": path,
                            "type": format!("sentence_transformers.models.{kind}")}));
        out.join(path)
    };
    if let Some(w) = log_weights {
        let weights = w.exp()?.to_vec1::<f32>()?;
        word_weights::write(&module("WordWeights", "WordWeights"), tokenizer, &weights)?;
    }
    write_json(
        &module("Pooling", "Pooling").join("config.json"),
        &json!({
            "word_embedding_dimension": dim,
            "pooling_mode_cls_token": m.pooling == Pooling::Cls,
            // WordWeights hands Pooling the weights' sum for its mean.
            "pooling_mode_mean_tokens": m.pooling != Pooling::Cls,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
        }),
    )?;
    if !dense.is_empty() {
        let dir = module("Dense", "Dense");
        std::fs::create_dir_all(&dir)?;
        candle_core::safetensors::save(&dense, dir.join("model.safetensors"))?;
        write_json(
            &dir.join("config.json"),
            &json!({"in_features": dim, "out_features": m.projection, "bias": true,
                    "activation_function": "torch.nn.modules.linear.Identity"}),
        )?;
    }
    // A cosine model is scored as sentence-transformers scores it: the
    // Normalize module makes its embeddings unit length, so dot product
    // and cosine agree for every consumer.
    if m.normalize || m.similarity == Similarity::Cosine {
        std::fs::create_dir_all(module("Normalize", "Normalize"))?;
    }
    write_json(
        &out.join("modules.json"),
        &serde_json::Value::Array(modules),
    )?;
    write_json(
        &out.join("sentence_bert_config.json"),
        &json!({"max_seq_length": read_length(m, bert, reads)?, "do_lower_case": false}),
    )?;
    let similarity = match m.similarity {
        Similarity::Dot => "dot",
        Similarity::Cosine => "cosine",
    };
    // Prompts as sentence-transformers keeps them (`encode(...,
    // prompt_name="query")`), and as `Pretrained::load` reads them back.
    let prompts = m.prompts();
    let mut st = json!({"__version__": {"sentence_transformers": "3.0.0", "pretext": env!("CARGO_PKG_VERSION")},
                        "similarity_fn_name": similarity});
    if !prompts.query.is_empty() || !prompts.document.is_empty() {
        st["prompts"] = json!({"query": prompts.query, "document": prompts.document});
        st["default_prompt_name"] = serde_json::Value::Null;
    }
    write_json(&out.join("config_sentence_transformers.json"), &st)?;
    Ok(())
}
