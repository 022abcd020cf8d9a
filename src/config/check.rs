//! The whole configuration checked in one pass, before any work starts.
//!
//! Each section's own rules (ranges serde cannot express) and the rules
//! that span sections (a loss that cannot use the memory it is given, a
//! refresh encoder that does not exist) are collected together, so a user
//! sees every offending field at once, each with what would work, instead
//! of a crash at step 1 or a setting silently ignored.

use std::path::Path;

use pretext_tasks::negatives::{RefreshEncoder, Source};
use pretext_tasks::tasks::TaskSpec;

use super::{Config, EmbeddingInit, GroupBy, Memory, ModelKind, ScoreLoss, TrainMode};
use crate::model::BertConfig;
use crate::objective::Loss;

/// Worker threads above this are refused: rayon starts every one of them
/// up front, and a typo such as `--threads 100000` would hang the machine.
pub const MAX_THREADS: usize = 1024;

/// Every problem of `config`, one message each, naming its field(s).
pub fn problems(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |r: Result<(), String>| {
        if let Err(e) = r {
            out.push(e);
        }
    };
    push(config.task.validate());
    push(config.augment.validate());
    let no_queue =
        config.model.kind == ModelKind::CrossEncoder || config.train.mode == TrainMode::Ltre;
    push(match no_queue {
        // A cross-encoder and LTRe have no queue: its settings are not
        // theirs to check.
        true => super::TrainSection {
            memory: Memory::None,
            ..config.train.clone()
        }
        .validate(),
        false => config.train.validate(),
    });
    push(config.negatives.validate());
    push(config.eval.validate());
    push(threads(config.threads));
    push(loss(config));
    push(model(config));
    push(refresh(config));
    push(teacher(config));
    push(filter(config));
    push(cross_encoder(config));
    push(ltre(config));
    push(grad_cache(config));
    if config.batch.one_per_document && config.train.pairs.is_some() {
        push(Err("batch.one_per_document keeps one pair per source document of the pretext task's stream; a pair file (train.pairs) names no documents: use batch.no_duplicates".into()));
    }
    push(group_by(config));
    if config.eval.held_out > 0.0 && config.train.pairs.is_some() {
        push(Err("eval.held_out holds corpus documents out of a pretext task's stream; with train.pairs (a pair file) give eval.data instead".into()));
    }
    out
}

/// Batches grouped by file or cluster group a pretext task's documents;
/// clusters come from the init model.
fn group_by(config: &Config) -> Result<(), String> {
    let b = &config.batch;
    match b.group_by {
        None if b.clusters > 0 => Err(format!(
            "batch.clusters = {} sets the clusters of batch.group_by = \"cluster\", which is not set",
            b.clusters
        )),
        Some(g) if config.train.pairs.is_some() => Err(format!(
            "batch.group_by = \"{}\" groups the documents of a pretext task's stream; a pair file (train.pairs) names no documents",
            if g == GroupBy::File { "file" } else { "cluster" }
        )),
        Some(GroupBy::Cluster) if config.model.init.is_none() => Err("batch.group_by = \"cluster\" clusters the init model's embeddings of the corpus: set model.init (a model folder), or group by \"file\"".into()),
        Some(GroupBy::File) if b.clusters > 0 => Err("batch.clusters is for batch.group_by = \"cluster\", not \"file\"".into()),
        _ => Ok(()),
    }
}

/// LTRe trains the query tower against a frozen index of the initial
/// document tower's embeddings, with the whole ranking as its negatives:
/// what needs another tower, a queue or sampled negatives is refused.
fn ltre(config: &Config) -> Result<(), String> {
    let (m, t) = (&config.model, &config.train);
    if t.mode != TrainMode::Ltre {
        // Settings a run would not read are refused, not ignored.
        if t.ltre != Default::default() {
            return Err("train.ltre is set but train.mode is not \"ltre\": its settings would be ignored (remove train.ltre, or set train.mode = \"ltre\")".into());
        }
        return Ok(());
    }
    if m.kind != ModelKind::DualEncoder {
        return Err(
            "train.mode = \"ltre\" trains a dual encoder's query tower; a cross-encoder has none"
                .into(),
        );
    }
    if m.init.is_none() {
        return Err("train.mode = \"ltre\" retrieves from a pretrained document encoder's index: set model.init (a model folder)".into());
    }
    if m.shared_towers {
        return Err("train.mode = \"ltre\" keeps the document tower as the init's, frozen, and trains the query tower: set model.shared_towers = false".into());
    }
    if t.ltre.top_n == 0 {
        return Err("train.ltre.top_n = 0: LTRe ranks the relevant document above the top n retrieved; n must be at least 1".into());
    }
    if !(t.ltre.temperature > 0.0 && t.ltre.temperature.is_finite()) {
        return Err(format!(
            "train.ltre.temperature = {} must be a positive number",
            t.ltre.temperature
        ));
    }
    let teacher = t.ltre.teacher;
    let finite = |x: f64| x.is_finite() && x >= 0.0;
    if !(finite(teacher.weight) && finite(teacher.lexical) && finite(teacher.init)) {
        return Err(format!(
            "train.ltre.teacher: weight ({}), lexical ({}) and init ({}) must be finite numbers >= 0",
            teacher.weight, teacher.lexical, teacher.init
        ));
    }
    if !(teacher.temperature > 0.0 && teacher.temperature.is_finite()) {
        return Err(format!(
            "train.ltre.teacher.temperature = {} must be a positive number",
            teacher.temperature
        ));
    }
    if teacher.active() && teacher.lexical + teacher.init == 0.0 {
        return Err("train.ltre.teacher (weight > 0 or filter) with lexical = 0 and init = 0: the teacher would score every candidate the same; give lexical or init a weight".into());
    }
    let unused = [
        (
            "[negatives] source (LTRe's negatives are its own ranking of the corpus)",
            config.negatives.source != Source::None,
        ),
        ("train.hard_negatives", t.hard_negatives > 0),
        ("train.teacher", t.teacher.weight > 0.0),
        ("train.distill", t.distill.weight > 0.0),
        (
            "train.pairs (LTRe needs each query's source document)",
            t.pairs.is_some(),
        ),
    ];
    let set: Vec<&str> = unused.iter().filter(|u| u.1).map(|u| u.0).collect();
    match set.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "train.mode = \"ltre\" does not use {}: remove it",
            set.join(", ")
        )),
    }
}

/// GradCache re-encodes the dual encoder's trained towers chunk by chunk;
/// the modes that have no such encodings are refused.
fn grad_cache(config: &Config) -> Result<(), String> {
    if config.train.grad_cache == 0 {
        return Ok(());
    }
    if config.model.kind == ModelKind::CrossEncoder {
        return Err("train.grad_cache chunks a dual encoder's embeddings; a cross-encoder scores pairs jointly: remove train.grad_cache".into());
    }
    if config.train.mode == TrainMode::Ltre {
        return Err("train.grad_cache is for train.mode = \"contrastive\"; LTRe encodes only the queries against a frozen index (its memory is one query batch): remove train.grad_cache".into());
    }
    Ok(())
}

/// A cross-encoder trains on a pair file's positives and negatives, and
/// none of the dual encoder's machinery applies to it: asking for a piece
/// of it is an error, not a setting silently ignored.
fn cross_encoder(config: &Config) -> Result<(), String> {
    let (m, t) = (&config.model, &config.train);
    if m.kind != ModelKind::CrossEncoder {
        return Ok(());
    }
    if !(1..=2).contains(&config.cross_encoder.labels) {
        return Err(format!(
            "cross_encoder.labels = {}: a cross-encoder has one relevance logit (1) or two labels (2)",
            config.cross_encoder.labels
        ));
    }
    if t.pairs.is_none() {
        return Err("model.kind = \"cross-encoder\" trains on a pair file with negatives: set train.pairs (from `pretext mine` or `pretext label`)".into());
    }
    if t.hard_negatives == 0 {
        return Err("model.kind = \"cross-encoder\" learns to rank the positive above the pair's negatives: set train.hard_negatives >= 1".into());
    }
    let unused = [
        (
            "[negatives] source (mine the pair file first)",
            config.negatives.source != Source::None,
        ),
        ("train.teacher", t.teacher.weight > 0.0),
        ("train.distill", t.distill.weight > 0.0),
        ("train.filter", t.filter.top_k > 0),
        (
            "[eval] (score it with `pretext eval --rerank`)",
            config.eval.data.is_some() || config.eval.held_out > 0.0,
        ),
        ("model.projection", m.projection > 0),
        ("model.normalize", m.normalize),
        ("model.shared_towers = false", !m.shared_towers),
        (
            "model.query_max_len / doc_max_len (a pair is cut as a whole at model.max_len)",
            m.query_max_len.is_some() || m.doc_max_len.is_some(),
        ),
        ("model.positions = false", !m.positions),
    ];
    let set: Vec<&str> = unused.iter().filter(|u| u.1).map(|u| u.0).collect();
    if !set.is_empty() {
        return Err(format!(
            "model.kind = \"cross-encoder\" does not use: {}",
            set.join(", ")
        ));
    }
    Ok(())
}

/// `train.filter` needs a judge and a pool larger than its rank.
fn filter(config: &Config) -> Result<(), String> {
    let f = &config.train.filter;
    if f.top_k == 0 {
        return Ok(());
    }
    if f.model.is_none() && config.model.init.is_none() {
        return Err("train.filter judges pairs with a model: set train.filter.model = \"DIR\" or model.init (--init)".into());
    }
    if f.pool <= f.top_k {
        return Err(format!(
            "train.filter.pool = {} must be larger than train.filter.top_k = {} (every pair would be kept)",
            f.pool, f.top_k
        ));
    }
    Ok(())
}

/// `train.teacher` needs pairs that carry teacher scores for the positive
/// and `train.hard_negatives` negatives: a pair file (`train.pairs`) or the
/// `spar` task, which scores BM25's top-k.
fn teacher(config: &Config) -> Result<(), String> {
    let t = &config.train;
    if t.teacher.weight <= 0.0 {
        return Ok(());
    }
    let spar = match &config.task {
        TaskSpec::Spar(s) => Some(s.top_k),
        _ => None,
    };
    if t.pairs.is_none() && spar.is_none() {
        return Err("train.teacher learns from teacher scores of the pairs' positives and negatives: it needs train.pairs (a pair file with scores) or task.type = \"spar\" (BM25's)".into());
    }
    if t.teacher.blend_init > 0.0 && t.teacher.loss != ScoreLoss::Kl {
        return Err("train.teacher.blend_init fuses standardised scores into the teacher's softmax: it needs train.teacher.loss = \"kl\"".into());
    }
    if t.hard_negatives == 0 {
        return Err("train.teacher compares the positive with the pairs' own negatives: set train.hard_negatives >= 1".into());
    }
    if !t.teacher.contrast {
        let others = match t.loss {
            Loss::Infonce { in_batch, .. } => {
                in_batch || t.memory != Memory::None || config.negatives.source != Source::None
            }
            _ => false,
        };
        if !others {
            return Err("train.teacher.contrast = false leaves the pairs' own negatives to the teacher: the contrastive loss then needs others (train.loss = infonce with in_batch = true, a queue, or mined negatives)".into());
        }
    }
    match spar {
        Some(k) if t.pairs.is_none() && t.hard_negatives > k - 1 => Err(format!(
            "train.hard_negatives = {} but task spar makes top_k - 1 = {} negatives per query: lower it or raise task.top_k",
            t.hard_negatives,
            k - 1
        )),
        _ => Ok(()),
    }
}

/// `threads` within [`MAX_THREADS`].
pub fn threads(n: usize) -> Result<(), String> {
    if n > MAX_THREADS {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        return Err(format!(
            "threads = {n} is above the cap of {MAX_THREADS} (this machine has {cores} cores; 0 uses one per core)"
        ));
    }
    Ok(())
}

/// The loss's own numbers, and what it can use of the negatives it is given.
fn loss(config: &Config) -> Result<(), String> {
    let t = &config.train;
    let hard = t.hard_negatives > 0 || config.negatives.source != Source::None;
    match t.loss {
        Loss::Infonce {
            temperature,
            symmetric,
            in_batch,
            ..
        } => {
            if !(temperature.is_finite() && temperature > 0.0) {
                return Err(format!(
                    "train.loss.temperature = {temperature} must be a finite number > 0 (Contriever: 0.05)"
                ));
            }
            if symmetric {
                let mut with = Vec::new();
                if !in_batch {
                    with.push("train.loss.in_batch = false");
                }
                if t.memory != Memory::None {
                    with.push("train.memory (a queue)");
                }
                if hard {
                    with.push("hard negatives (train.hard_negatives, [negatives])");
                }
                if !with.is_empty() {
                    return Err(format!(
                        "train.loss.symmetric = true scores each positive against the batch's queries only, so it cannot use {}; set symmetric = false, or train with in-batch negatives alone",
                        with.join(", ")
                    ));
                }
            }
            if !in_batch && t.memory == Memory::None && !hard {
                return Err(
                    "train.loss.in_batch = false leaves the loss no negatives: give hard negatives, a queue (train.memory), or in_batch = true".into(),
                );
            }
        }
        Loss::Triplet { margin, .. } => {
            if !(margin.is_finite() && margin >= 0.0) {
                return Err(format!(
                    "train.loss.margin = {margin} must be a finite number >= 0"
                ));
            }
            if t.memory != Memory::None {
                return Err(format!(
                    "train.loss.type = \"triplet\" compares each query with one negative and cannot use the queue of train.memory = \"{}\"; set train.memory = \"none\", or use type = \"infonce\"",
                    memory_name(t.memory)
                ));
            }
        }
    }
    Ok(())
}

fn memory_name(m: Memory) -> &'static str {
    match m {
        Memory::None => "none",
        Memory::Moco => "moco",
        Memory::MemoryBank => "memory-bank",
    }
}

/// Preset, dropout and `max_len` against the model's position table.
fn model(config: &Config) -> Result<(), String> {
    let m = &config.model;
    if let Some(p) = m.dropout {
        if !(0.0..1.0).contains(&p) {
            return Err(format!("model.dropout = {p} must be in [0, 1)"));
        }
    }
    if !m.positions && m.init.is_some() {
        return Err("model.positions = false trains a model without position embeddings from scratch; the --init model's own were learned with it and cannot be dropped (set model.positions = true, or start from configs/adapt.toml)".into());
    }
    if m.embeddings == EmbeddingInit::Lsa && m.init.is_some() {
        return Err("model.embeddings = \"lsa\" starts the word embeddings of a model trained from scratch; the --init model brings its own (drop one of the two)".into());
    }
    let positions = match &m.init {
        Some(dir) => init_positions(dir)?,
        None => match BertConfig::preset(&m.preset, 1) {
            Some(b) => b.max_position_embeddings,
            None => {
                return Err(format!(
                    "model.preset = \"{}\" is unknown; expected one of {}",
                    m.preset,
                    BertConfig::PRESETS.join(", ")
                ))
            }
        },
    };
    // `"init"` lengths as training will read them.
    let mut resolved = m.clone();
    resolved.resolve_init_lengths()?;
    let (query_len, doc_len) = resolved.lengths()?;
    for (field, len) in [
        ("max_len", Some(m.max_len)),
        ("query_max_len", resolved.query_max_len.map(|_| query_len)),
        ("doc_max_len", resolved.doc_max_len.map(|_| doc_len)),
    ] {
        if let Some(len) = len.filter(|&l| l < 2 || l > positions) {
            return Err(format!(
                "model.{field} = {len} must be in [2, {positions}] (the model's position table; [CLS] and [SEP] take two)"
            ));
        }
    }
    Ok(())
}

/// The position-table size of an init folder's `config.json`.
fn init_positions(dir: &Path) -> Result<usize, String> {
    let p = dir.join("config.json");
    let text = std::fs::read_to_string(&p)
        .map_err(|e| format!("model.init: cannot read {}: {e}", p.display()))?;
    let bert: BertConfig = serde_json::from_str(&text)
        .map_err(|e| format!("model.init: {} is not a BERT config: {e}", p.display()))?;
    Ok(bert.max_position_embeddings)
}

/// A momentum refresh needs a momentum encoder.
fn refresh(config: &Config) -> Result<(), String> {
    let n = &config.negatives;
    if n.source == Source::Dense
        && n.refresh_encoder == RefreshEncoder::Momentum
        && config.train.memory != Memory::Moco
    {
        return Err(format!(
            "negatives.refresh_encoder = \"momentum\" needs train.memory = \"moco\" (it is \"{}\"); use refresh_encoder = \"model\"",
            memory_name(config.train.memory)
        ));
    }
    Ok(())
}
