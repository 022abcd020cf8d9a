//! `pretext train`: a dual encoder trained on a pair stream with InfoNCE or
//! triplet loss, in-batch negatives and a MoCo queue (or memory bank), AdamW
//! with warm-up and linear decay, atomic resumable checkpoints.

pub mod ance;
pub mod checkpoint;
pub mod config;
pub mod data;
mod metrics;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use pretext_tasks::negatives::{CorpusTexts, MiningStats, PairNegatives, RefreshEncoder, Source};
use pretext_tasks::pipeline::{doc_freq, for_each_batch, ReadOptions};
use std::sync::Arc;

use crate::config::Config;
use crate::dist::{gather_with_grad, ProcessGroup, Single};
use crate::model::{weights, BertConfig, DropoutRng, DualEncoder, Head, Mode, Tower};
use crate::objective::StepEmbeddings;
use crate::optim::{clip_scale, learning_rate, AdamW, AdamWConfig};
use crate::queue::KeyQueue;
use crate::tokenize::{train_wordpiece, TextTokenizer, TokenBatch};
use config::Memory;
use data::{Batch, BatchStream, PairSource, StreamConfig};
pub use metrics::StepLog;

/// Parses `cpu`, `cuda`, `cuda:N` or `metal`.
pub fn device(name: &str) -> Result<Device> {
    let dev = match name {
        "cpu" => Device::Cpu,
        "metal" => Device::new_metal(0).context("metal device (build with --features metal)")?,
        "cuda" => Device::new_cuda(0).context("cuda device (build with --features cuda)")?,
        s => match s.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => Device::new_cuda(n).context("cuda device (build with --features cuda)")?,
            None => bail!("unknown device `{s}`: expected cpu, cuda, cuda:N or metal"),
        },
    };
    Ok(dev)
}

/// Tensors of a token batch on the device: ids and mask, `(rows, seq)`.
fn to_device(b: &TokenBatch, dev: &Device) -> Result<(Tensor, Tensor)> {
    Ok((
        Tensor::from_slice(&b.ids, (b.rows, b.seq), dev)?,
        Tensor::from_slice(&b.mask, (b.rows, b.seq), dev)?,
    ))
}

/// Seeds of step `step`: dropout draws from a generator that depends on the
/// run seed and the step only, so a resumed run repeats the same masks.
fn step_seed(seed: u64, step: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// A momentum copy of the document tower (MoCo's key encoder).
struct KeyEncoder {
    tower: Tower,
    varmap: VarMap,
    /// (key variable, source variable) pairs, for the momentum update.
    links: Vec<(Var, Var)>,
}

impl KeyEncoder {
    fn new(
        model_vars: &VarMap,
        bert: &BertConfig,
        head: Head,
        shared: bool,
        dev: &Device,
    ) -> Result<KeyEncoder> {
        let varmap = VarMap::new();
        let tower = Tower::new(
            bert,
            head,
            VarBuilder::from_varmap(&varmap, DType::F32, dev),
        )?;
        let src = model_vars.data().lock().expect("varmap");
        let mut links = Vec::new();
        let keys = varmap.data().lock().expect("varmap");
        let mut names: Vec<&String> = keys.keys().collect();
        names.sort();
        for name in names {
            let source = if shared {
                name.clone()
            } else {
                format!("doc.{name}")
            };
            let s = src
                .get(&source)
                .ok_or_else(|| anyhow!("key encoder: no variable `{source}`"))?;
            let k = &keys[name];
            k.set(s.as_tensor())?;
            links.push((k.clone(), s.clone()));
        }
        drop(keys);
        Ok(KeyEncoder {
            tower,
            varmap,
            links,
        })
    }

    /// `k = m·k + (1 − m)·q`, before the keys are encoded (MoCo).
    fn update(&self, m: f64) -> Result<()> {
        for (k, q) in &self.links {
            k.set(&((k.as_tensor() * m)? + (q.as_tensor() * (1.0 - m))?)?)?;
        }
        Ok(())
    }
}

/// Everything a run trains and keeps.
pub struct Trainer {
    config: Config,
    device: Device,
    tokenizer: TextTokenizer,
    bert: BertConfig,
    varmap: VarMap,
    model: DualEncoder,
    key: Option<KeyEncoder>,
    optimizer: AdamW,
    queue: Option<KeyQueue>,
    step: usize,
    /// Dense hard negatives refreshed during the run (source `dense`).
    ance: Option<ance::Ance>,
    /// The ranks training together (one: [`Single`]).
    group: Box<dyn ProcessGroup>,
}

/// What the forward and backward pass of a step computed.
struct Forward {
    loss: f32,
    accuracy: f32,
    grads: candle_core::backprop::GradStore,
    queries: Tensor,
    /// Keys of the whole (global) batch, for the queue.
    keys: Tensor,
}

/// Reports progress after each step.
pub trait TrainProgress {
    /// A step finished.
    fn step(&mut self, log: &StepLog);
    /// A checkpoint was written.
    fn checkpoint(&mut self, _path: &Path) {}
}

impl<F: FnMut(&StepLog)> TrainProgress for F {
    fn step(&mut self, log: &StepLog) {
        self(log)
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct TrainReport {
    /// The last step's log.
    pub last: Option<StepLog>,
    /// The final checkpoint.
    pub checkpoint: PathBuf,
    /// The run directory.
    pub run: PathBuf,
}

impl Trainer {
    /// Sets up tokenizer, model, optimizer and queue; resumes from the run's
    /// latest checkpoint when `resume` is set and there is one.
    pub fn new(config: Config, resume: bool) -> Result<Trainer> {
        Trainer::with_group(config, resume, Box::new(Single))
    }

    /// [`Trainer::new`] as one rank of `group`: `train.batch_size` is this
    /// rank's share of a global batch of `world_size` times as many pairs,
    /// and every rank sees every other rank's embeddings as negatives.
    pub fn with_group(
        config: Config,
        resume: bool,
        group: Box<dyn ProcessGroup>,
    ) -> Result<Trainer> {
        let world = group.world_size();
        if config.train.memory != Memory::None
            && !config
                .train
                .queue_size
                .is_multiple_of(config.train.batch_size * world)
        {
            bail!(
                "train.queue_size = {} must be a multiple of the global batch ({} x {world} ranks)",
                config.train.queue_size,
                config.train.batch_size
            );
        }
        let device = device(&config.train.device)?;
        let run = config.train.out.clone();
        std::fs::create_dir_all(&run)
            .with_context(|| format!("creating run directory {}", run.display()))?;
        let m = &config.model;
        let tokenizer = load_or_train_tokenizer(&config, &run)?;
        let mut bert = match &m.init {
            Some(dir) => {
                let p = dir.join("config.json");
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?;
                serde_json::from_str::<BertConfig>(&text)
                    .with_context(|| format!("parsing {}", p.display()))?
            }
            None => BertConfig::preset(&m.preset, tokenizer.vocab_size()).ok_or_else(|| {
                anyhow!(
                    "unknown model preset `{}`; expected one of {}",
                    m.preset,
                    BertConfig::PRESETS.join(", ")
                )
            })?,
        };
        if let Some(p) = m.dropout {
            bert.hidden_dropout_prob = p;
            bert.attention_probs_dropout_prob = p;
        }
        bert.validate().map_err(|e| anyhow!("model config: {e}"))?;
        if tokenizer.vocab_size() > bert.vocab_size {
            bail!(
                "the tokenizer has {} tokens, the model only {}",
                tokenizer.vocab_size(),
                bert.vocab_size
            );
        }
        // The run directory holds what export needs besides the weights.
        std::fs::write(
            run.join("config.json"),
            serde_json::to_string_pretty(&bert.to_hf_json())?,
        )?;
        if !run.join("tokenizer.json").exists() {
            tokenizer.save(&run.join("tokenizer.json"))?;
        }
        let head = Head {
            pooling: m.pooling,
            projection: (m.projection > 0).then_some(m.projection),
            normalize: m.normalize,
        };
        let varmap = VarMap::new();
        let model = DualEncoder::new(
            &bert,
            head,
            m.shared_towers,
            VarBuilder::from_varmap(&varmap, DType::F32, &device),
        )?;
        weights::seeded_init(&varmap, config.seed)?;
        if let Some(dir) = &m.init {
            let p = dir.join("model.safetensors");
            weights::load_hf(&varmap, &p, "")?;
            if !m.shared_towers {
                weights::load_hf(&varmap, &p, "doc.")?;
            }
        }
        let key = match config.train.memory {
            Memory::Moco => Some(KeyEncoder::new(
                &varmap,
                &bert,
                head,
                m.shared_towers,
                &device,
            )?),
            _ => None,
        };
        let optimizer = AdamW::new(
            sorted_vars(&varmap),
            AdamWConfig {
                weight_decay: config.train.weight_decay,
                ..AdamWConfig::default()
            },
        )?;
        let dim = head.projection.unwrap_or(bert.hidden_size);
        let queue = match config.train.memory {
            Memory::None => None,
            _ => Some(KeyQueue::new(config.train.queue_size, dim, &device)?),
        };
        let mut trainer = Trainer {
            config,
            device,
            tokenizer,
            bert,
            varmap,
            model,
            key,
            optimizer,
            queue,
            step: 0,
            ance: None,
            group,
        };
        if resume {
            if let Some(dir) = checkpoint::latest(&run)? {
                trainer.restore(&dir)?;
            }
        }
        Ok(trainer)
    }

    /// Steps completed.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The model's BERT configuration.
    pub fn bert_config(&self) -> &BertConfig {
        &self.bert
    }

    fn restore(&mut self, dir: &Path) -> Result<()> {
        let (state, t) = checkpoint::load(dir)?;
        set_vars(&self.varmap, &t.model, &self.device)
            .with_context(|| format!("restoring {}", dir.display()))?;
        if let Some(k) = &self.key {
            set_vars(&k.varmap, &t.key, &self.device)?;
        }
        self.optimizer.restore(&t.optimizer, state.step)?;
        if let (Some(q), Some(keys)) = (&mut self.queue, t.queue.get("keys")) {
            q.restore(keys, state.queue_next, state.queue_filled)?;
        }
        self.step = state.step;
        Ok(())
    }

    fn save(&self) -> Result<PathBuf> {
        let (keys, next, filled) = match &self.queue {
            Some(q) => {
                let (k, n, f) = q.state();
                (Some(k.clone()), n, f)
            }
            None => (None, 0, 0),
        };
        let state = checkpoint::State {
            step: self.step,
            queue_next: next,
            queue_filled: filled,
            config: toml::to_string(&self.config).unwrap_or_default(),
        };
        let tensors = checkpoint::Tensors {
            model: weights::all_tensors(&self.varmap),
            key: self
                .key
                .as_ref()
                .map(|k| weights::tensors_with_prefix(&k.varmap, ""))
                .unwrap_or_default(),
            optimizer: self.optimizer.state(),
            queue: keys
                .map(|k| [("keys".to_string(), k)].into_iter().collect())
                .unwrap_or_default(),
        };
        checkpoint::save(
            &self.config.train.out,
            &state,
            &tensors,
            self.config.train.keep_checkpoints,
        )
    }

    /// The loss of a batch and the gradients of every variable, summed
    /// over the ranks of the group (what the optimizer would apply), without
    /// stepping. For tests and tools that check gradients.
    pub fn gradients(&mut self, batch: &Batch) -> Result<(f32, Vec<(String, Tensor)>)> {
        let f = self.forward_backward(batch)?;
        let vars = sorted_vars(&self.varmap);
        Ok((
            f.loss,
            vars.into_iter()
                .filter_map(|(n, v)| f.grads.get(v.as_tensor()).map(|g| (n, g.clone())))
                .collect(),
        ))
    }

    /// Encodes the batch, computes the loss of the global batch and its
    /// gradients (all-reduced across ranks).
    fn forward_backward(&mut self, batch: &Batch) -> Result<Forward> {
        let t = &self.config.train;
        let group = &*self.group;
        let world = group.world_size();
        // Ranks see different data; their dropout masks differ too.
        let seed = self.config.seed ^ (group.rank() as u64).wrapping_mul(0xA24B_AED4_963E_E407);
        let dropout = DropoutRng::new(step_seed(seed, self.step));
        let mode = Mode::Train(&dropout);
        let (q_ids, q_mask) = to_device(&batch.queries, &self.device)?;
        let (p_ids, p_mask) = to_device(&batch.positives, &self.device)?;
        let queries = self.model.query().encode(&q_ids, &q_mask, mode)?;
        let key_tower = match &self.key {
            Some(k) => {
                k.update(t.momentum)?;
                Some(&k.tower)
            }
            None => None,
        };
        // Keys from the momentum encoder carry no gradient; otherwise the
        // document tower is trained through them.
        let encode_doc = |ids: &Tensor, mask: &Tensor| -> Result<Tensor> {
            Ok(match key_tower {
                Some(k) => k.encode(ids, mask, Mode::Eval)?.detach(),
                None => self.model.doc().encode(ids, mask, mode)?,
            })
        };
        let positives = encode_doc(&p_ids, &p_mask)?;
        let rows = batch.queries.rows;
        let encode_hard = |tb: &TokenBatch, present: &[u32]| -> Result<(Tensor, Tensor)> {
            let (ids, mask) = to_device(tb, &self.device)?;
            let n = tb.rows / rows;
            let h = encode_doc(&ids, &mask)?;
            let dim = h.dim(1)?;
            let h = h.reshape((rows, n, dim))?;
            let present = Tensor::from_slice(present, (rows, n), &self.device)?;
            Ok((h, present))
        };
        let mut hard = match &batch.hard {
            Some((tb, present)) => Some(encode_hard(tb, present)?),
            None => None,
        };
        if let Some(a) = &mut self.ance {
            let neg = &self.config.negatives;
            let found = a.negatives(
                neg,
                &queries,
                &positives,
                &batch.positive_texts,
                &batch.sources,
                self.config.model.similarity,
                self.config.seed,
                self.step,
            )?;
            let (texts, present) = slots(&found, neg.count);
            let tb = self.tokenizer.encode(&texts)?;
            let dense = encode_hard(&tb, &present)?;
            hard = Some(match hard {
                Some((h, m)) => (
                    Tensor::cat(&[&h, &dense.0], 1)?,
                    Tensor::cat(&[&m, &dense.1], 1)?,
                ),
                None => dense,
            });
        }
        // Cross-device negatives: the whole batch, this rank's share live.
        let queries_all = gather_with_grad(group, &queries)?;
        let positives_all = gather_with_grad(group, &positives)?;
        let hard = match hard {
            Some((h, m)) if world > 1 => Some((
                gather_with_grad(group, &h)?,
                group.all_gather(&m.to_dtype(DType::F32)?)?,
            )),
            h => h,
        };
        let queue_keys = self.queue.as_ref().map(|q| q.keys()).transpose()?;
        let out = t.loss.compute(
            &StepEmbeddings {
                queries: &queries_all,
                positives: &positives_all,
                hard: hard.as_ref().map(|(h, m)| (h, m)),
                queue: queue_keys.as_ref(),
            },
            self.config.model.similarity,
        )?;
        let loss = out.loss.to_scalar::<f32>()?;
        if !loss.is_finite() {
            let last = checkpoint::latest(&t.out)?;
            bail!(
                "the loss is {loss} at step {}; stopping. Last good checkpoint: {}",
                self.step + 1,
                last.map_or("none".into(), |p| p.display().to_string())
            );
        }
        let mut grads = out.loss.backward()?;
        if world > 1 {
            // Every rank reduces the same variables in the same (sorted) order.
            for (_, v) in sorted_vars(&self.varmap) {
                if let Some(g) = grads.remove(v.as_tensor()) {
                    grads.insert(v.as_tensor(), group.all_reduce_sum(&g)?);
                }
            }
        }
        Ok(Forward {
            loss,
            accuracy: out.accuracy,
            grads,
            queries,
            keys: positives_all.detach(),
        })
    }

    /// One optimisation step on a batch.
    fn train_step(&mut self, batch: &Batch, refresh_seconds: Option<f64>) -> Result<StepLog> {
        let started = Instant::now();
        let f = self.forward_backward(batch)?;
        let t = &self.config.train;
        let norm = self.optimizer.grad_norm(&f.grads)?;
        let lr = learning_rate(self.step + 1, t.lr, t.warmup_steps, t.steps);
        let clip = (t.clip_norm > 0.0).then_some(t.clip_norm);
        self.optimizer.step(&f.grads, lr, clip_scale(norm, clip))?;
        if let Some(q) = &mut self.queue {
            q.enqueue(&f.keys)?;
        }
        self.step += 1;
        let (q_norm, q_std) = metrics::norm_and_std(&f.queries)?;
        Ok(StepLog {
            step: self.step,
            loss: f.loss,
            accuracy: f.accuracy,
            lr,
            grad_norm: norm,
            embedding_norm: q_norm,
            embedding_std: q_std,
            queue_fill: self.queue.as_ref().map_or(0.0, |q| q.fill_ratio()),
            tokens: batch.queries.tokens() + batch.positives.tokens(),
            seconds: started.elapsed().as_secs_f64(),
            refresh_seconds,
        })
    }

    /// Writes the current (e.g. untrained) state as a checkpoint, for
    /// evaluating the initialisation.
    pub fn save_initial(&mut self) -> Result<TrainReport> {
        let checkpoint = self.save()?;
        Ok(TrainReport {
            last: None,
            checkpoint,
            run: self.config.train.out.clone(),
        })
    }

    /// Trains until `train.steps`, checkpointing on the way and at the end.
    pub fn run(&mut self, progress: &mut dyn TrainProgress) -> Result<TrainReport> {
        let t = self.config.train.clone();
        let run = t.out.clone();
        let source = pair_source(&self.config)?;
        let neg = &self.config.negatives;
        let mined = match neg.source {
            Source::None | Source::Dense => 0,
            _ => neg.count,
        };
        // Every rank makes the global batch and keeps its share, so N ranks
        // of batch B see exactly the pairs one process of batch N·B sees.
        let (rank, world) = (self.group.rank(), self.group.world_size());
        let lead = rank == 0;
        let stream_config = StreamConfig {
            seed: self.config.seed,
            batch_size: t.batch_size * world,
            shuffle_buffer: t.shuffle_buffer,
            hard_negatives: t.hard_negatives + mined,
            own_negatives: t.hard_negatives,
            skip_batches: self.step,
            rank,
            world,
        };
        let (pair_negatives, corpus_texts) = negatives_for(&self.config)?;
        if neg.source == Source::Dense {
            let texts = corpus_texts.context("dense negatives need the corpus")?;
            self.ance = Some(ance::Ance::new(texts));
        }
        let producer_stats = Arc::new(std::sync::Mutex::new(MiningStats::default()));
        let mut stream = BatchStream::start(
            source,
            self.tokenizer.clone(),
            stream_config,
            pair_negatives.map(|n| (n, producer_stats.clone())),
        )?;
        // Rank 0 writes metrics and checkpoints for the group.
        let metrics_path = if lead {
            run.join("metrics.jsonl")
        } else {
            run.join(format!("metrics.rank{rank}.jsonl"))
        };
        let mut log = metrics::MetricsFile::open(&metrics_path, self.step)?;
        let abort_after = std::env::var("PRETEXT_ABORT_AFTER_STEP")
            .ok()
            .and_then(|s| s.parse::<usize>().ok());
        let mut last = None;
        let mut checkpoint_path = checkpoint::latest(&run)?;
        while self.step < t.steps {
            let batch = stream.next_batch()?;
            let refresh = self.refresh_if_due()?;
            let entry = self.train_step(&batch, refresh)?;
            log.write(&entry)?;
            progress.step(&entry);
            last = Some(entry);
            if lead
                && t.checkpoint_every > 0
                && self.step.is_multiple_of(t.checkpoint_every)
                && self.step < t.steps
            {
                let p = self.save()?;
                progress.checkpoint(&p);
                checkpoint_path = Some(p);
            }
            if abort_after == Some(self.step) {
                // Test hook: die like a killed process, with no cleanup.
                std::process::abort();
            }
        }
        drop(stream);
        let final_ckpt = match checkpoint_path.filter(|p| p == &checkpoint::dir(&run, self.step)) {
            Some(p) => p,
            None if lead => self.save()?,
            None => checkpoint::dir(&run, self.step),
        };
        progress.checkpoint(&final_ckpt);
        if lead && self.config.negatives.source != Source::None {
            // What mining saw: the producer's draws (random, gold, BM25;
            // batches generated ahead of the last step included) or the
            // dense refreshes'.
            let mut stats = std::mem::take(&mut *producer_stats.lock().expect("mining stats"));
            if let Some(a) = &self.ance {
                stats.merge(a.stats.clone());
            }
            std::fs::write(
                run.join("negatives.json"),
                serde_json::to_string_pretty(&stats.to_json())? + "\n",
            )?;
        }
        metrics::plot(&run.join("metrics.jsonl"), &run.join("curves.svg"))?;
        Ok(TrainReport {
            last,
            checkpoint: final_ckpt,
            run,
        })
    }
}

impl Trainer {
    /// Re-encodes the corpus for dense negatives when a refresh is due.
    fn refresh_if_due(&mut self) -> Result<Option<f64>> {
        let every = self.config.negatives.refresh_every;
        let Some(a) = &mut self.ance else {
            return Ok(None);
        };
        if !a.due(self.step, every) {
            return Ok(None);
        }
        let tower = match (&self.key, self.config.negatives.refresh_encoder) {
            (Some(k), RefreshEncoder::Momentum) => &k.tower,
            _ => self.model.doc(),
        };
        let secs = a.refresh(
            tower,
            &self.tokenizer,
            &self.device,
            self.config.model.similarity,
            (self.config.train.batch_size * 2).max(16),
            self.step,
        )?;
        Ok(Some(secs))
    }
}

/// Negatives per query as `rows × n` texts (empty where missing) and the
/// 0/1 mask of which exist.
fn slots(found: &[Vec<String>], n: usize) -> (Vec<&str>, Vec<u32>) {
    let mut texts = Vec::with_capacity(found.len() * n);
    let mut present = Vec::with_capacity(found.len() * n);
    for f in found {
        for i in 0..n {
            let t = f.get(i);
            texts.push(t.map_or("", String::as_str));
            present.push(t.is_some() as u32);
        }
    }
    (texts, present)
}

/// The producer's negative sampler and the corpus texts of a run.
type RunNegatives = (Option<Arc<PairNegatives>>, Option<Arc<CorpusTexts>>);

/// The producer's negative sampler (random, gold, BM25) and the corpus
/// texts dense negatives are drawn from, as `[negatives]` asks.
fn negatives_for(config: &Config) -> Result<RunNegatives> {
    let neg = &config.negatives;
    if neg.source == Source::None {
        return Ok((None, None));
    }
    let c = &config.corpus;
    let corpus = c.open()?;
    let read = ReadOptions {
        skip_bad: c.skip_bad,
        ..ReadOptions::default()
    };
    let texts = Arc::new(CorpusTexts::load(&corpus, read)?);
    if neg.source == Source::Dense {
        return Ok((None, Some(texts)));
    }
    let task = config.train.pairs.is_none().then(|| {
        let mut task = config.task.clone();
        if task.needs_doc_freq() {
            if let Ok(df) = doc_freq(&corpus, c.skip_bad) {
                task.set_doc_freq(Arc::new(df));
            }
        }
        task
    });
    let n = PairNegatives::new(neg.clone(), texts.clone(), task, config.seed)?;
    Ok((Some(Arc::new(n)), Some(texts)))
}

/// The last step a run logged in its `metrics.jsonl`, if any.
pub fn last_logged_step(run: &Path) -> Option<StepLog> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).ok()?;
    serde_json::from_str(text.lines().last()?).ok()
}

/// Variables by name, sorted (the same order in every process).
fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let mut v: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .expect("varmap")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Sets variables from named tensors; every variable must be present.
fn set_vars(
    varmap: &VarMap,
    tensors: &std::collections::HashMap<String, Tensor>,
    dev: &Device,
) -> Result<()> {
    let data = varmap.data().lock().expect("varmap");
    for (name, var) in data.iter() {
        let t = tensors
            .get(name)
            .ok_or_else(|| anyhow!("checkpoint lacks `{name}`"))?;
        var.set(&t.to_device(dev)?)?;
    }
    Ok(())
}

/// The pair source the config asks for.
fn pair_source(config: &Config) -> Result<PairSource> {
    if let Some(p) = &config.train.pairs {
        return PairSource::file(p, config.corpus.skip_bad);
    }
    let c = &config.corpus;
    let corpus = c.open()?;
    Ok(PairSource::Task {
        corpus,
        task: config.task.clone(),
        augment: config.augment.clone(),
        read: c.read_options(),
    })
}

/// Documents used to train a tokenizer from scratch (the first ones).
const TOKENIZER_DOCS: usize = 50_000;

/// The configured tokenizer, the init model's, the run's own, or a new one
/// trained on the corpus and saved in the run directory.
pub(crate) fn load_or_train_tokenizer(config: &Config, run: &Path) -> Result<TextTokenizer> {
    let m = &config.model;
    let max_len = m.max_len;
    if let Some(p) = &m.tokenizer {
        return TextTokenizer::from_file(p, max_len);
    }
    if let Some(dir) = &m.init {
        return TextTokenizer::from_file(&dir.join("tokenizer.json"), max_len);
    }
    let own = run.join("tokenizer.json");
    if own.exists() {
        return TextTokenizer::from_file(&own, max_len);
    }
    let c = &config.corpus;
    let corpus = c.open()?;
    let mut texts = Vec::new();
    let opts = ReadOptions {
        skip_bad: c.skip_bad,
        ..ReadOptions::default()
    };
    let _ = for_each_batch(
        &corpus,
        opts,
        |d| d.text.to_string(),
        |batch, _| {
            texts.extend(batch);
            if texts.len() >= TOKENIZER_DOCS {
                return Err(pretext_tasks::Error::Config("enough documents".into()));
            }
            Ok(())
        },
    );
    if texts.is_empty() {
        bail!(
            "no documents to train a tokenizer on in {}",
            c.path.display()
        );
    }
    let tok = TextTokenizer::new(train_wordpiece(texts.iter(), m.vocab_size)?, max_len)?;
    tok.save(&own)?;
    Ok(tok)
}
