//! From a checked configuration to a ready [`Trainer`]: the device, the
//! run folder, the tokenizer, the model and its initial weights, the key
//! encoder, the optimizer and the queue, and the state of a resumed run.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use pretext_tasks::negatives::{CorpusTexts, PairNegatives, Source};
use pretext_tasks::pipeline::{ready_task, ReadOptions};
use pretext_tasks::tasks::PretextTask;

use super::dev::{dev_set, HeldOut};
use super::evaluate::Evaluator;
use crate::eval::beir::Beir;

use super::data::{Grouping, PairSource};
use super::run_dir::{RunDir, Start};
use super::{checkpoint, Trainer};
use crate::config::{Config, EmbeddingInit, Memory, TrainMode};
use crate::dist::{ProcessGroup, Single};
use crate::model::{
    lsa, weights, word_weights, BertConfig, DualEncoder, Head, Pooling, LOG_WEIGHTS,
};
use crate::momentum::KeyEncoder;
use crate::optim::{AdamW, AdamWConfig};
use crate::queue::KeyQueue;
use crate::tokenize::{first_texts, train_on_corpus, PairTokenizer, TextTokenizer};

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

impl Trainer {
    /// Sets up tokenizer, model, optimizer and queue in the run folder, as
    /// `start` allows (a fresh run is refused where checkpoints are).
    pub fn new(config: Config, start: Start) -> Result<Trainer> {
        Trainer::with_group(config, start, Box::new(Single))
    }

    /// [`Trainer::new`] as one rank of `group`: `train.batch_size` is this
    /// rank's share of a global batch of `world_size` times as many pairs,
    /// and every rank sees every other rank's embeddings as negatives.
    pub fn with_group(
        config: Config,
        start: Start,
        group: Box<dyn ProcessGroup>,
    ) -> Result<Trainer> {
        // `"init"` lengths become the init's numbers before the run folder
        // saves the configuration: an export or a resume reads them there.
        let mut config = config;
        config
            .model
            .resolve_init_lengths()
            .map_err(anyhow::Error::msg)?;
        let world = group.world_size();
        config
            .negatives
            .raters_need_mine("training")
            .map_err(anyhow::Error::msg)?;
        // LTRe's negatives are its ranking of the index: no queue.
        let ltre = config.train.mode == TrainMode::Ltre;
        if ltre && world > 1 {
            bail!("train.mode = \"ltre\" runs on one device: its index and ranking are not shared across ranks");
        }
        let memory = match ltre {
            true => Memory::None,
            false => config.train.memory,
        };
        if memory != Memory::None
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
        let run_dir = RunDir::new(&config.train.out);
        // Other ranks follow rank 0's folder; only it decides and writes.
        let resume_from = if group.rank() == 0 {
            run_dir.prepare(start, &config)?
        } else {
            match start {
                Start::Resume | Start::ResumeIfAny => run_dir.latest()?,
                _ => None,
            }
        };
        let m = &config.model;
        let tokenizer = load_or_train_tokenizer(&config, &run_dir.tokenizer())?;
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
        crate::atomic::write(
            &run_dir.model_config(),
            serde_json::to_string_pretty(&bert.to_hf_json())?,
        )?;
        if !run_dir.tokenizer().exists() {
            tokenizer.save(&run_dir.tokenizer())?;
        }
        let (query_len, doc_len) = m.lengths().map_err(anyhow::Error::msg)?;
        let sides = PairTokenizer::new(&tokenizer, query_len, doc_len, m.prompts())?;
        let head = Head {
            pooling: m.pooling,
            projection: (m.projection > 0).then_some(m.projection),
            normalize: m.normalize,
        };
        let freeze = config.train.freeze;
        if freeze.layers > bert.num_hidden_layers {
            bail!(
                "train.freeze.layers = {} is more than the model's {} layers",
                freeze.layers,
                bert.num_hidden_layers
            );
        }
        let varmap = VarMap::new();
        let mut model = DualEncoder::new(
            &bert,
            head,
            m.shared_towers,
            VarBuilder::from_varmap(&varmap, DType::F32, &device),
        )?;
        model.freeze(freeze);
        weights::seeded_init(&varmap, config.seed)?;
        if !m.positions {
            weights::zero_positions(&varmap)?;
        }
        if let Some(dir) = &m.init {
            let p = dir.join("model.safetensors");
            weights::load_hf(&varmap, &p, "")?;
            if !m.shared_towers {
                weights::load_hf(&varmap, &p, "doc.")?;
            }
        }
        // The start from corpus statistics is made on a resumed run too,
        // though its checkpoint overwrites it: the teacher of
        // self-distillation is copied from it below.
        let mut sample = CorpusSample::new(&config);
        if m.embeddings == EmbeddingInit::Lsa {
            let lsa = lsa_vectors(&mut sample, &tokenizer, &bert, config.seed)?;
            set_in_each_tower(&varmap, WORD_EMBEDDINGS, |t| with_lsa_rows(t, &lsa))?;
        }
        if m.pooling == Pooling::Weighted {
            let w = starting_token_weights(&config, &mut sample, &tokenizer, bert.vocab_size)?;
            let log = Tensor::from_vec(w, bert.vocab_size, &device)?.log()?;
            set_in_each_tower(&varmap, LOG_WEIGHTS, |_| Ok(log.clone()))?;
        }
        let key = match memory {
            Memory::Moco => Some(KeyEncoder::new(
                &varmap,
                &bert,
                head,
                m.shared_towers,
                &device,
            )?),
            _ => None,
        };
        // The teacher of self-distillation (and the initial model's half of
        // a hybrid teacher): the query tower as it starts
        // (copied before a resumed run restores its trained weights).
        let teacher = (config.train.distill.weight > 0.0 || config.train.teacher.blend_init > 0.0)
            .then(|| KeyEncoder::new(&varmap, &bert, head, true, &device))
            .transpose()?;
        // Frozen variables are not the optimizer's: they keep their bits.
        let trained: Vec<_> = sorted_vars(&varmap)
            .into_iter()
            .filter(|(name, _)| !freeze.covers(name.strip_prefix("doc.").unwrap_or(name)))
            .filter(|(name, _)| m.positions || !weights::is_position_table(name))
            // LTRe's document tower is its index's encoder: it stays the init's.
            .filter(|(name, _)| !(ltre && name.starts_with("doc.")))
            .collect();
        let optimizer = AdamW::new(
            trained,
            AdamWConfig {
                weight_decay: config.train.weight_decay,
                ..AdamWConfig::default()
            },
        )?;
        let dim = head.projection.unwrap_or(bert.hidden_size);
        let queue = match memory {
            Memory::None => None,
            _ => Some(KeyQueue::new(config.train.queue_size, dim, &device)?),
        };
        let mut trainer = Trainer {
            config,
            run_dir,
            device,
            tokenizer: sides,
            bert,
            varmap,
            model,
            key,
            teacher,
            optimizer,
            queue,
            step: 0,
            ance: None,
            resumed_ance: None,
            ltre: None,
            group,
        };
        if let Some(dir) = resume_from {
            trainer.restore(&dir)?;
        }
        Ok(trainer)
    }

    /// Restores every part of a checkpoint; a part the run needs and the
    /// checkpoint lacks is an error naming the folder and the file.
    fn restore(&mut self, dir: &Path) -> Result<()> {
        let (state, t) = checkpoint::load(dir)?;
        let file = |name: &str| dir.join(format!("{name}.safetensors"));
        let lacks = |name: &str, what: &str| {
            anyhow!(
                "checkpoint {} is incomplete: {} is missing ({what}); it cannot be resumed",
                dir.display(),
                file(name).display()
            )
        };
        set_vars(&self.varmap, &t.model, &self.device, &file("model"))?;
        if let Some(k) = &self.key {
            if t.key.is_empty() {
                return Err(lacks("key", "the MoCo key encoder"));
            }
            set_vars(&k.varmap, &t.key, &self.device, &file("key"))?;
        }
        if t.optimizer.is_empty() {
            return Err(lacks("optimizer", "AdamW's moments"));
        }
        self.optimizer
            .restore(&t.optimizer, state.step)
            .with_context(|| format!("restoring {}", file("optimizer").display()))?;
        if let Some(q) = &mut self.queue {
            match t.queue.get("keys") {
                Some(keys) => q.restore(keys, state.queue_next, state.queue_filled)?,
                None if state.queue_filled > 0 => {
                    return Err(lacks("queue", "the queued keys"));
                }
                None => {}
            }
        }
        if self.config.negatives.source == Source::Dense {
            if let (Some(at), Some(index)) = (state.ance_refreshed_at, t.ance.get("index")) {
                self.resumed_ance = Some((index.clone(), at));
            }
        }
        self.step = state.step;
        Ok(())
    }

    /// Writes a checkpoint of the current state.
    pub(super) fn save(&self) -> Result<std::path::PathBuf> {
        let (state, tensors) = self.snapshot()?;
        checkpoint::save(
            &self.run_dir,
            &state,
            &tensors,
            self.config.train.keep_checkpoints,
        )
    }

    /// Writes the current state as the run's best checkpoint (`best/`).
    pub(super) fn save_best(&self) -> Result<()> {
        let (state, tensors) = self.snapshot()?;
        checkpoint::write(&self.run_dir.best(), &state, &tensors)
    }

    /// The current state as a checkpoint's contents.
    fn snapshot(&self) -> Result<(checkpoint::State, checkpoint::Tensors)> {
        let (keys, next, filled) = match &self.queue {
            Some(q) => {
                let (k, n, f) = q.state();
                (Some(k.clone()), n, f)
            }
            None => (None, 0, 0),
        };
        let index = self.ance.as_ref().and_then(|a| a.index_tensor());
        let state = checkpoint::State {
            step: self.step,
            queue_next: next,
            queue_filled: filled,
            config: toml::to_string(&self.config)?,
            files: Vec::new(),
            ance_refreshed_at: index.as_ref().map(|(_, at)| *at),
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
            ance: index
                .map(|(t, _)| [("index".to_string(), t)].into_iter().collect())
                .unwrap_or_default(),
        };
        Ok((state, tensors))
    }
}

/// The task readied once for the corpus (document frequencies counted
/// here for every user of it: the pair stream and the negatives' sampler).
fn ready(config: &Config) -> Result<pretext_tasks::tasks::TaskSpec> {
    let c = &config.corpus;
    let corpus = c.open()?;
    Ok(ready_task(&config.task, &corpus, c.skip_bad)?)
}

/// The pair source the config asks for.
pub(super) fn pair_source(config: &Config, groups: Grouping) -> Result<PairSource> {
    if let Some(p) = &config.train.pairs {
        return PairSource::file(p, config.corpus.skip_bad);
    }
    let c = &config.corpus;
    Ok(PairSource::Task {
        corpus: c.open()?,
        task: ready(config)?,
        augment: pretext_tasks::pipeline::ready_augment(&config.augment, &c.open()?, c.skip_bad)?,
        read: c.read_options(),
        held_out: HeldOut::new(config.seed, config.eval.held_out),
        groups,
    })
}

/// The dev set of `[eval]`: its BEIR folder, or the pretext pairs of the
/// held-out documents (`eval.held_out`), or none.
pub(super) fn eval_data(config: &Config) -> Result<Option<Beir>> {
    if let Some(beir) = Evaluator::load_data(&config.eval)? {
        return Ok(Some(beir));
    }
    let Some(held) = HeldOut::new(config.seed, config.eval.held_out) else {
        return Ok(None);
    };
    let c = &config.corpus;
    let read = ReadOptions {
        skip_bad: c.skip_bad,
        ..ReadOptions::default()
    };
    let beir = dev_set(&c.open()?, read, &ready(config)?, held)?;
    if beir.is_none() {
        eprintln!(
            "warning: eval.held_out = {}: the held-out documents gave no {} pairs; no evaluation during training",
            config.eval.held_out,
            config.task.name()
        );
    }
    Ok(beir)
}

/// The producer's negative sampler and the corpus texts of a run.
pub(super) type RunNegatives = (Option<Arc<PairNegatives>>, Option<Arc<CorpusTexts>>);

/// The producer's negative sampler (random, gold, BM25) and the corpus
/// texts dense negatives are drawn from, as `[negatives]` asks.
pub(super) fn negatives_for(config: &Config) -> Result<RunNegatives> {
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
    let task = match config.train.pairs {
        None => Some(ready(config)?),
        Some(_) => None,
    };
    let n = PairNegatives::new(neg.clone(), texts.clone(), task, config.seed)?;
    Ok((Some(Arc::new(n)), Some(texts)))
}

/// Variables by name, sorted (the same order in every process).
pub(super) fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
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

/// Sets variables from named tensors read from `file`; every variable must
/// be present.
fn set_vars(
    varmap: &VarMap,
    tensors: &HashMap<String, Tensor>,
    dev: &Device,
    file: &Path,
) -> Result<()> {
    let data = varmap.data().lock().expect("varmap");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let t = tensors
            .get(name)
            .ok_or_else(|| anyhow!("{} lacks the variable `{name}`", file.display()))?;
        data[name]
            .set(&t.to_device(dev)?)
            .with_context(|| format!("{}: variable `{name}`", file.display()))?;
    }
    Ok(())
}

/// The corpus's first documents, read once for the starts made from its
/// statistics (LSA vectors, idf weights), and only if one asks.
struct CorpusSample<'c> {
    config: &'c Config,
    texts: Option<Vec<String>>,
}

impl<'c> CorpusSample<'c> {
    /// The most any start asks for.
    const DOCS: usize = if word_weights::IDF_DOCS > lsa::LSA_DOCS {
        word_weights::IDF_DOCS
    } else {
        lsa::LSA_DOCS
    };

    fn new(config: &'c Config) -> Self {
        CorpusSample {
            config,
            texts: None,
        }
    }

    /// The first `n` documents (fewer in a smaller corpus).
    fn first(&mut self, n: usize) -> Result<&[String]> {
        let texts = match &mut self.texts {
            Some(texts) => texts,
            empty => {
                let c = &self.config.corpus;
                let read = ReadOptions {
                    skip_bad: c.skip_bad,
                    ..ReadOptions::default()
                };
                let texts = first_texts(&c.open()?, read, Some(Self::DOCS)).with_context(|| {
                    format!("reading the first documents of {}", c.path.display())
                })?;
                empty.insert(texts)
            }
        };
        Ok(&texts[..n.min(texts.len())])
    }
}

/// Sets the variable `name` of each tower (`name` and `doc.name`) to
/// `value` of its current value.
fn set_in_each_tower(
    varmap: &VarMap,
    name: &str,
    value: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<()> {
    let data = varmap.data().lock().expect("varmap");
    for (full, var) in data.iter() {
        if full.strip_prefix("doc.").unwrap_or(full) == name {
            var.set(&value(var.as_tensor())?)?;
        }
    }
    Ok(())
}

/// `Pooling::Weighted`'s starting weights: the init folder's own
/// (`WordWeights`, as `pretext export` writes them) when it has them, else
/// the idf of each token over the corpus's first documents.
fn starting_token_weights(
    config: &Config,
    sample: &mut CorpusSample,
    tokenizer: &TextTokenizer,
    vocab: usize,
) -> Result<Vec<f32>> {
    if let Some(dir) = &config.model.init {
        if let Some(mut w) = word_weights::find(dir)? {
            w.resize(vocab, 1.0);
            return Ok(w);
        }
    }
    let texts = sample.first(word_weights::IDF_DOCS)?;
    word_weights::idf(tokenizer.inner(), texts, vocab).context("counting token idf")
}

/// A tower's word embedding table.
const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";

/// `model.embeddings = "lsa"`: the LSA token vectors of the corpus's first
/// documents, as wide as the model.
fn lsa_vectors(
    sample: &mut CorpusSample,
    tokenizer: &TextTokenizer,
    bert: &BertConfig,
    seed: u64,
) -> Result<lsa::TokenVectors> {
    let texts = sample.first(lsa::LSA_DOCS)?;
    lsa::token_vectors(
        tokenizer.inner(),
        texts,
        bert.vocab_size,
        bert.hidden_size,
        seed,
    )
    .context("LSA token vectors")
}

/// `table` (`vocab × dim`) with the rows of the tokens LSA saw replaced by
/// their vectors; the others keep their random start.
fn with_lsa_rows(table: &Tensor, lsa: &lsa::TokenVectors) -> Result<Tensor> {
    let mut rows = table.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    for (t, row) in rows.iter_mut().enumerate() {
        if lsa.seen.get(t).copied().unwrap_or(false) {
            row.copy_from_slice(&lsa.vectors[t * lsa.dim..(t + 1) * lsa.dim]);
        }
    }
    Ok(Tensor::new(rows, table.device())?)
}

/// Documents used to train a tokenizer from scratch (the first ones).
const TOKENIZER_DOCS: usize = 50_000;

/// The configured tokenizer, the init model's, the one at `own` (a run's
/// own, reused when it resumes), or a new one trained on the corpus and
/// saved at `own`.
pub fn load_or_train_tokenizer(config: &Config, own: &Path) -> Result<TextTokenizer> {
    let m = &config.model;
    let max_len = m.max_len;
    // An init model's own tokenizer wins: its embedding rows are indexed
    // by that vocabulary, and another one would run without an error but
    // feed the model the wrong tokens.
    if let Some(dir) = &m.init {
        if let Some(p) = &m.tokenizer {
            eprintln!(
                "note: model.tokenizer = {} is ignored: the init model {} brings its own tokenizer",
                p.display(),
                dir.display()
            );
        }
        return TextTokenizer::from_file(&dir.join("tokenizer.json"), max_len);
    }
    if let Some(p) = &m.tokenizer {
        return TextTokenizer::from_file(p, max_len);
    }
    if own.exists() {
        return TextTokenizer::from_file(own, max_len);
    }
    let c = &config.corpus;
    let read = ReadOptions {
        skip_bad: c.skip_bad,
        ..ReadOptions::default()
    };
    let (tok, _) = train_on_corpus(
        &c.open()?,
        read,
        m.vocab_size,
        Some(TOKENIZER_DOCS),
        max_len,
    )
    .with_context(|| format!("training a tokenizer on {}", c.path.display()))?;
    tok.save(own)?;
    Ok(tok)
}
