//! Training a cross-encoder (`model.kind = "cross-encoder"`): each query is
//! read with its positive and its negatives from a pair file, one input
//! per (query, passage), and the classifier learns to score the positive
//! highest (listwise softmax) or each pair on its own (binary
//! cross-entropy). Checkpoints are cross-encoder folders in Hugging Face's
//! `BertForSequenceClassification` layout, which `pretext rerank`, `eval
//! --rerank`, `mine --rescore-ce` and `label` load, and which `export`
//! copies as they are.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use pretext_tasks::formats::{parse_pair_line, OwnedPair};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::metrics::{MetricsFile, StepLog};
use super::setup::{device, load_or_train_tokenizer, sorted_vars};
use super::{RunDir, Start, TrainProgress};
use crate::config::{Config, CrossLoss};
use crate::model::cross::{CrossEncoder, Output};
use crate::model::{weights, BertConfig, DropoutRng, Mode};
use crate::objective::softplus;
use crate::optim::{clip_scale, learning_rate, AdamW, AdamWConfig};
use crate::tokenize::TextTokenizer;

/// What a cross-encoder run ended with.
#[derive(Debug, Clone)]
pub struct CrossReport {
    /// The last step's log.
    pub last: Option<StepLog>,
    /// The last checkpoint (a cross-encoder folder).
    pub checkpoint: PathBuf,
    /// The run directory.
    pub run: PathBuf,
    /// Pair-file lines used (with a positive and at least one negative).
    pub pairs: usize,
}

/// The marker a cross-encoder checkpoint carries beside its model files.
const STATE: &str = "state.json";

/// Whether `dir` is a cross-encoder checkpoint written by [`train`].
pub fn is_checkpoint(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(STATE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["kind"] == "cross-encoder")
}

/// The pairs of a pair file that have negatives, in file order; a bad
/// line is an error naming the file and line.
fn read_pairs(path: &Path) -> Result<(Vec<OwnedPair>, usize)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (mut out, mut without) = (Vec::new(), 0);
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let at = || format!("{}:{}", path.display(), i + 1);
        let line = std::str::from_utf8(line).with_context(|| format!("{}: invalid UTF-8", at()))?;
        if line.trim().is_empty() {
            continue;
        }
        for p in parse_pair_line(line).map_err(|e| anyhow::anyhow!("{}: {e}", at()))? {
            if p.negatives.is_empty() {
                without += 1;
            } else {
                out.push(p);
            }
        }
    }
    if out.is_empty() {
        bail!(
            "{}: no pair has a negative; a cross-encoder learns from negatives (mine them with `pretext mine`)",
            path.display()
        );
    }
    Ok((out, without))
}

/// The model's shape and output: the init folder's (its labels too when
/// it is a cross-encoder), else the preset's with `[cross_encoder] labels`.
fn shape(config: &Config, vocab: usize) -> Result<(BertConfig, Output)> {
    let labels = config.cross_encoder.labels;
    let fresh = Output::from_labels(labels).context("cross_encoder.labels must be 1 or 2")?;
    let Some(dir) = &config.model.init else {
        let bert = BertConfig::preset(&config.model.preset, vocab)
            .with_context(|| format!("unknown model preset `{}`", config.model.preset))?;
        return Ok((bert, fresh));
    };
    let p = dir.join("config.json");
    let raw: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
    )
    .with_context(|| format!("parsing {}", p.display()))?;
    let is_ce = raw["architectures"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == "BertForSequenceClassification"));
    let output = match is_ce {
        true => {
            let n = raw["id2label"].as_object().map_or(2, |m| m.len());
            Output::from_labels(n)
                .with_context(|| format!("{}: {n} labels (1 or 2 supported)", p.display()))?
        }
        false => fresh,
    };
    let bert: BertConfig = serde_json::from_value(raw)
        .with_context(|| format!("{}: not a BERT config", p.display()))?;
    Ok((bert, output))
}

/// Loads an init folder's weights: every BERT tensor must be there (with
/// or without the `bert.` prefix of a classification checkpoint); the
/// pooler and classifier keep their fresh values when the folder has none
/// (a sentence-transformers or bare BERT folder). Returns the names left
/// fresh.
fn load_init(varmap: &VarMap, dir: &Path) -> Result<Vec<String>> {
    let path = dir.join("model.safetensors");
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
        .with_context(|| format!("reading {}", path.display()))?;
    let data = varmap.data().lock().expect("varmap lock");
    let (mut fresh, mut missing) = (Vec::new(), Vec::new());
    for (name, var) in data.iter() {
        let bare = name.strip_prefix("bert.").unwrap_or(name);
        let Some(t) = tensors.get(name).or_else(|| tensors.get(bare)) else {
            if name.starts_with("classifier.") || name.starts_with("bert.pooler.") {
                fresh.push(name.clone());
            } else {
                missing.push(name.clone());
            }
            continue;
        };
        if t.shape() != var.shape() {
            bail!(
                "{}: tensor `{name}` has shape {:?}, the model expects {:?}",
                path.display(),
                t.dims(),
                var.dims()
            );
        }
        var.set(&t.to_dtype(DType::F32)?.to_device(var.device())?)?;
    }
    if !missing.is_empty() {
        missing.sort();
        bail!(
            "{}: {} tensors the model needs are missing, e.g. {}",
            path.display(),
            missing.len(),
            missing[..missing.len().min(3)].join(", ")
        );
    }
    fresh.sort();
    Ok(fresh)
}

/// One step's inputs: every (query, passage) of the batch as one input,
/// and where each lands in the `(batch, 1 + n)` score grid.
struct StepInputs {
    ids: Tensor,
    types: Tensor,
    mask: Tensor,
    /// For each grid cell, the input's row, or the padding row (`inputs`)
    /// where the pair has fewer negatives.
    cells: Tensor,
    /// 1 where a grid cell holds a real input.
    present: Tensor,
    tokens: usize,
}

fn inputs(
    tok: &TextTokenizer,
    batch: &[&OwnedPair],
    negatives: usize,
    prompts: &crate::tokenize::Prompts,
    device: &Device,
) -> Result<StepInputs> {
    let q = |t: &str| format!("{}{t}", prompts.query);
    let d = |t: &str| format!("{}{t}", prompts.document);
    let mut texts: Vec<(String, String)> = Vec::new();
    let mut cells = Vec::with_capacity(batch.len() * (1 + negatives));
    let mut present = Vec::with_capacity(cells.capacity());
    let mut slots = Vec::new();
    for p in batch {
        let passages = std::iter::once(&p.positive).chain(p.negatives.iter().take(negatives));
        let mut row = Vec::with_capacity(1 + negatives);
        for text in passages {
            row.push(texts.len());
            texts.push((q(&p.query), d(text)));
        }
        slots.push(row);
    }
    let pad = texts.len() as u32;
    for row in &slots {
        for j in 0..=negatives {
            match row.get(j) {
                Some(&i) => {
                    cells.push(i as u32);
                    present.push(1f32);
                }
                None => {
                    cells.push(pad);
                    present.push(0f32);
                }
            }
        }
    }
    let refs: Vec<(&str, &str)> = texts
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let (b, types) = tok.encode_pairs(&refs)?;
    let shape = (b.rows, b.seq);
    let grid = (batch.len(), 1 + negatives);
    Ok(StepInputs {
        ids: Tensor::from_slice(&b.ids, shape, device)?,
        types: Tensor::from_slice(&types, shape, device)?,
        mask: Tensor::from_slice(&b.mask, shape, device)?,
        cells: Tensor::from_vec(cells, batch.len() * grid.1, device)?,
        present: Tensor::from_vec(present, grid, device)?,
        tokens: b.tokens(),
    })
}

/// The loss and the share of queries whose positive scores highest, from
/// the `(batch, 1 + n)` relevance grid (`present` marks real cells).
fn loss(scores: &Tensor, present: &Tensor, kind: CrossLoss) -> candle_core::Result<(Tensor, f32)> {
    let (b, width) = scores.dims2()?;
    // Missing negatives score far below anything real.
    let masked = scores.mul(present)?.add(&present.affine(1e4, -1e4)?)?;
    let best = masked.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let accuracy = best.iter().filter(|&&i| i == 0).count() as f32 / b.max(1) as f32;
    let l = match kind {
        CrossLoss::Listwise => {
            let logp = candle_nn::ops::log_softmax(&masked, D::Minus1)?;
            (logp.narrow(1, 0, 1)?.sum_all()? / -(b as f64))?
        }
        CrossLoss::Bce => {
            // The positive's label is 1 (loss softplus(-s)), each
            // negative's 0 (softplus(s)); averaged over real pairs.
            let sign = Tensor::cat(
                &[
                    Tensor::full(-1f32, (b, 1), scores.device())?,
                    Tensor::ones((b, width - 1), DType::F32, scores.device())?,
                ],
                1,
            )?;
            let per = (softplus(&(scores * sign)?)? * present)?;
            (per.sum_all()? / present.sum_all()?.to_scalar::<f32>()? as f64)?
        }
    };
    Ok((l, accuracy))
}

/// Writes a cross-encoder folder: `config.json` (with its architecture and
/// labels), `model.safetensors`, the tokenizer and its maximum length.
pub fn write_folder(
    dir: &Path,
    varmap: &VarMap,
    bert: &BertConfig,
    output: Output,
    tokenizer: &TextTokenizer,
    max_len: usize,
    state: Option<serde_json::Value>,
) -> Result<()> {
    crate::atomic::write_dir(dir, |tmp| {
        let mut config = bert.to_hf_json();
        config["architectures"] = serde_json::json!(["BertForSequenceClassification"]);
        let labels = output.labels();
        config["id2label"] = (0..labels)
            .map(|i| (i.to_string(), serde_json::json!(format!("LABEL_{i}"))))
            .collect();
        config["label2id"] = (0..labels)
            .map(|i| (format!("LABEL_{i}"), serde_json::json!(i)))
            .collect();
        std::fs::write(
            tmp.join("config.json"),
            serde_json::to_string_pretty(&config)? + "\n",
        )?;
        let tensors = weights::all_tensors(varmap);
        candle_core::safetensors::save(&tensors, tmp.join("model.safetensors"))
            .with_context(|| format!("writing {}", dir.join("model.safetensors").display()))?;
        tokenizer.save(&tmp.join("tokenizer.json"))?;
        std::fs::write(
            tmp.join("tokenizer_config.json"),
            serde_json::to_string_pretty(&serde_json::json!({
                "model_max_length": max_len,
                "tokenizer_class": "BertTokenizer",
                "do_lower_case": true,
            }))? + "\n",
        )?;
        if let Some(s) = state {
            std::fs::write(tmp.join(STATE), serde_json::to_string_pretty(&s)? + "\n")?;
        }
        Ok(())
    })
}

/// Trains the cross-encoder `config` describes (checked beforehand).
pub fn train(
    config: &Config,
    start: Start,
    progress: &mut dyn TrainProgress,
) -> Result<CrossReport> {
    if start == Start::Resume {
        bail!("--resume is not supported for model.kind = \"cross-encoder\" yet: start again with --overwrite");
    }
    let t = &config.train;
    let pairs_path = t
        .pairs
        .as_ref()
        .context("a cross-encoder needs train.pairs")?;
    let (pairs, without) = read_pairs(pairs_path)?;
    if without > 0 {
        eprintln!(
            "note: {}: {without} pairs have no negative and are not used",
            pairs_path.display()
        );
    }
    let run_dir = RunDir::new(&t.out);
    run_dir.prepare(start, config)?;
    let dev = device(&t.device)?;
    let max_len = config.model.max_len;
    let tokenizer = load_or_train_tokenizer(config, &run_dir.tokenizer())?;
    let (mut bert, output) = shape(config, tokenizer.vocab_size())?;
    if let Some(p) = config.model.dropout {
        bert.hidden_dropout_prob = p;
        bert.attention_probs_dropout_prob = p;
    }
    bert.validate()
        .map_err(|e| anyhow::anyhow!("model config: {e}"))?;
    if tokenizer.vocab_size() > bert.vocab_size {
        bail!(
            "the tokenizer has {} tokens, the model only {}",
            tokenizer.vocab_size(),
            bert.vocab_size
        );
    }
    let max_len = max_len.min(bert.max_position_embeddings);
    let tokenizer = tokenizer.with_max_len(max_len)?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let model = CrossEncoder::new(&bert, output, vb)?;
    weights::seeded_init(&varmap, config.seed)?;
    if let Some(dir) = &config.model.init {
        let fresh = load_init(&varmap, dir)?;
        if !fresh.is_empty() {
            eprintln!(
                "note: {} has no classification head; {} starts from random weights",
                dir.display(),
                fresh.join(", ")
            );
        }
    }
    let freeze = t.freeze;
    let trained: Vec<_> = sorted_vars(&varmap)
        .into_iter()
        .filter(|(name, _)| !freeze.covers(name.strip_prefix("bert.").unwrap_or(name)))
        .collect();
    let mut optimizer = AdamW::new(
        trained,
        AdamWConfig {
            weight_decay: t.weight_decay,
            ..AdamWConfig::default()
        },
    )?;
    let mut log = MetricsFile::open(&run_dir.metrics(0), 0)?;
    let prompts = config.model.prompts();
    let dropout = DropoutRng::new(config.seed ^ 0xc505_e7c0);
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(config.seed);
    let mut cursor = order.len();
    let mut last = None;
    let mut checkpoint = run_dir.checkpoint(0);
    let batch_size = t.batch_size.min(pairs.len()).max(1);
    for step in 1..=t.steps {
        let started = Instant::now();
        let mut batch = Vec::with_capacity(batch_size);
        while batch.len() < batch_size {
            if cursor == order.len() {
                // A new pass over the file, in a new order.
                order.shuffle(&mut rng);
                cursor = 0;
            }
            batch.push(&pairs[order[cursor]]);
            cursor += 1;
        }
        let x = inputs(&tokenizer, &batch, t.hard_negatives, &prompts, &dev)?;
        let logits = model.logits(&x.ids, &x.types, &x.mask, Mode::Train(&dropout))?;
        let relevance = model.relevance(&logits)?;
        let padded = Tensor::cat(&[&relevance, &Tensor::zeros(1, DType::F32, &dev)?], 0)?;
        let grid = padded
            .index_select(&x.cells, 0)?
            .reshape((batch.len(), 1 + t.hard_negatives))?;
        let (l, accuracy) = loss(&grid, &x.present, config.cross_encoder.loss)?;
        let value = l.to_scalar::<f32>()?;
        let grads = l.backward()?;
        let norm = optimizer.grad_norm(&grads)?;
        if !norm.is_finite() || !value.is_finite() {
            bail!("the loss ({value}) or its gradient norm ({norm}) is not finite at step {step}; stopping before the update");
        }
        let lr = learning_rate(step, t.lr, t.warmup_steps, t.steps);
        let clip = (t.clip_norm > 0.0).then_some(t.clip_norm);
        optimizer.step(&grads, lr, clip_scale(norm, clip))?;
        let entry = StepLog {
            step,
            loss: value,
            accuracy,
            lr,
            grad_norm: norm,
            embedding_norm: 0.0,
            embedding_std: 0.0,
            queue_fill: 0.0,
            tokens: x.tokens,
            seconds: started.elapsed().as_secs_f64(),
            refresh_seconds: None,
        };
        log.write(&entry)?;
        progress.step(&entry);
        last = Some(entry);
        if step == t.steps || (t.checkpoint_every > 0 && step % t.checkpoint_every == 0) {
            checkpoint = run_dir.checkpoint(step);
            let state = serde_json::json!({
                "kind": "cross-encoder", "step": step, "config": toml::to_string(config)?,
            });
            write_folder(
                &checkpoint,
                &varmap,
                &bert,
                output,
                &tokenizer,
                max_len,
                Some(state),
            )?;
            progress.checkpoint(&checkpoint);
            let mut all = run_dir.list()?;
            while all.len() > t.keep_checkpoints.max(1) {
                let _ = std::fs::remove_dir_all(all.remove(0));
            }
        }
    }
    let _ = super::metrics::plot(&run_dir.metrics(0), &run_dir.curves());
    Ok(CrossReport {
        last,
        checkpoint,
        run: run_dir.root().to_path_buf(),
        pairs: pairs.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listwise_loss_is_the_positive_s_cross_entropy_over_real_cells() {
        let s = Tensor::new(&[[2f32, 1.0, 0.5], [0.0, 3.0, 9.0]], &Device::Cpu).unwrap();
        let present = Tensor::new(&[[1f32, 1.0, 1.0], [1.0, 1.0, 0.0]], &Device::Cpu).unwrap();
        let (l, acc) = loss(&s, &present, CrossLoss::Listwise).unwrap();
        let ce = |row: &[f32]| {
            let z: f32 = row.iter().map(|x| x.exp()).sum();
            -(row[0].exp() / z).ln()
        };
        let want = (ce(&[2.0, 1.0, 0.5]) + ce(&[0.0, 3.0])) / 2.0;
        assert!((l.to_scalar::<f32>().unwrap() - want).abs() < 1e-5);
        // Row 1's missing cell (9.0) does not count: its best is cell 1.
        assert_eq!(acc, 0.5);
    }

    #[test]
    fn bce_labels_the_positive_one_and_each_negative_zero() {
        let s = Tensor::new(&[[2f32, -1.0], [0.5, 3.0]], &Device::Cpu).unwrap();
        let present = Tensor::new(&[[1f32, 1.0], [1.0, 0.0]], &Device::Cpu).unwrap();
        let (l, _) = loss(&s, &present, CrossLoss::Bce).unwrap();
        let sp = |x: f32| (1.0 + x.exp()).ln();
        let want = (sp(-2.0) + sp(-1.0) + sp(-0.5)) / 3.0;
        assert!((l.to_scalar::<f32>().unwrap() - want).abs() < 1e-5);
    }
}
