//! The `[model]` and `[train]` sections of a run's configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::{Freeze, Pooling, Similarity};
use crate::objective::Loss;

/// What is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Query and document towers, each text embedded alone (retrieval).
    #[default]
    DualEncoder,
    /// One BERT reading query and passage together, scoring the pair
    /// (reranking; `[cross_encoder]`).
    CrossEncoder,
}

/// How a cross-encoder learns from a query's positive and negatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrossLoss {
    /// Softmax cross-entropy over `[positive, negatives]` (the positive is
    /// the class), as RocketQA and Tevatron's rerankers train.
    #[default]
    Listwise,
    /// Binary cross-entropy of each pair alone: the positive labelled 1,
    /// each negative 0 (sentence-transformers' CrossEncoder default).
    Bce,
}

/// The `[cross_encoder]` section (with `model.kind = "cross-encoder"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrossEncoderSection {
    /// `listwise` or `bce`.
    pub loss: CrossLoss,
    /// Classifier outputs of a new head: 1 (a relevance logit) or 2
    /// (not relevant / relevant). A cross-encoder init keeps its own.
    pub labels: usize,
}

impl Default for CrossEncoderSection {
    fn default() -> Self {
        CrossEncoderSection {
            loss: CrossLoss::Listwise,
            labels: 1,
        }
    }
}

/// The `[model]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// `dual-encoder` (default) or `cross-encoder`.
    pub kind: ModelKind,
    /// Size preset for a model trained from scratch: tiny, mini, small, base.
    pub preset: String,
    /// A Hugging Face model folder (`config.json`, `model.safetensors`,
    /// `tokenizer.json`) to start from instead of random weights.
    pub init: Option<PathBuf>,
    /// A `tokenizer.json`; default: the init folder's, else one trained on
    /// the corpus (saved in the run directory).
    pub tokenizer: Option<PathBuf>,
    /// Vocabulary size of a tokenizer trained on the corpus.
    pub vocab_size: usize,
    /// Longest input in tokens (longer texts are cut).
    pub max_len: usize,
    /// `mean` or `cls`.
    pub pooling: Pooling,
    /// Width of a projection head on top of pooling (0: none).
    pub projection: usize,
    /// L2-normalise embeddings.
    pub normalize: bool,
    /// `dot` or `cosine`.
    pub similarity: Similarity,
    /// One tower for queries and documents (true) or two.
    pub shared_towers: bool,
    /// Dropout override for both dropout rates of the preset or init model.
    pub dropout: Option<f64>,
    /// Text before every query (E5: `"query: "`), exported as the
    /// sentence-transformers prompt `query`.
    pub query_prefix: String,
    /// Text before every document (E5: `"passage: "`), exported as the
    /// prompt `document`.
    pub doc_prefix: String,
    /// Longest query in tokens (default: `max_len`), or `"init"`.
    pub query_max_len: Option<MaxLen>,
    /// Longest document in tokens (default: `max_len`), or `"init"`: the
    /// `--init` model's own length, so a frozen document tower reads
    /// documents as an index built with the init does.
    pub doc_max_len: Option<MaxLen>,
    /// Learned position embeddings (default). `false`, for a model trained
    /// from scratch: the position table stays zero and out of the
    /// optimizer, so the encoder reads a bag of words in context, blind to
    /// order. Retrieval needs little order, and such a model trained on
    /// short texts reads a whole document up to the table's size (512)
    /// just as well, where learned positions beyond the trained length
    /// stay random; the export says so (`max_seq_length` = the table's).
    pub positions: bool,
    /// How the word embeddings of a model trained from scratch start:
    /// `random` (BERT's N(0, 0.02)) or `lsa` (the training corpus's LSA
    /// token vectors, see [`crate::model::lsa`]).
    pub embeddings: EmbeddingInit,
}

/// How the word embeddings of a model trained from scratch start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingInit {
    /// BERT's N(0, 0.02).
    #[default]
    Random,
    /// A truncated SVD of the training corpus's tf-idf matrix: tokens that
    /// occur in the same documents start close together.
    Lsa,
}

/// A side's longest text: a number of tokens, or `"init"`, the `--init`
/// model's own `max_seq_length` (its `sentence_bert_config.json`; without
/// one, its position table). `"init"` is read from the init folder when
/// training starts ([`ModelSection::resolve_init_lengths`]) and the run
/// saves the number, so an export or a resume needs no init folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxLen {
    /// This many tokens, `[CLS]` and `[SEP]` included.
    Tokens(usize),
    /// The init model's own length.
    Init,
}

impl Serialize for MaxLen {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MaxLen::Tokens(n) => s.serialize_u64(*n as u64),
            MaxLen::Init => s.serialize_str("init"),
        }
    }
}

impl<'de> Deserialize<'de> for MaxLen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MaxLen, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = MaxLen;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of tokens or \"init\" (the --init model's own length)")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<MaxLen, E> {
                usize::try_from(n)
                    .map(MaxLen::Tokens)
                    .map_err(|_| E::custom(format!("{n} tokens is too many")))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<MaxLen, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(format!("{n}: a length cannot be negative")))
                    .and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MaxLen, E> {
                match v {
                    "init" => Ok(MaxLen::Init),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl ModelSection {
    /// The prompts of the two sides.
    pub fn prompts(&self) -> crate::tokenize::Prompts {
        crate::tokenize::Prompts {
            query: self.query_prefix.clone(),
            document: self.doc_prefix.clone(),
        }
    }

    /// Longest query and document, in tokens. An `"init"` length left
    /// unresolved is an error: it is a number once training has started.
    pub fn lengths(&self) -> Result<(usize, usize), String> {
        let side = |field: &str, len: Option<MaxLen>| {
            match len {
            None => Ok(self.max_len),
            Some(MaxLen::Tokens(n)) => Ok(n),
            Some(MaxLen::Init) => Err(format!(
                "model.{field} = \"init\" is read from the --init model when training starts; this configuration was never trained (set a number of tokens)"
            )),
        }
        };
        Ok((
            side("query_max_len", self.query_max_len)?,
            side("doc_max_len", self.doc_max_len)?,
        ))
    }

    /// Replaces each `"init"` length by the `--init` model's own (see
    /// [`MaxLen`]), at most its position table.
    pub fn resolve_init_lengths(&mut self) -> Result<(), String> {
        let wants = [self.query_max_len, self.doc_max_len].contains(&Some(MaxLen::Init));
        if !wants {
            return Ok(());
        }
        let Some(dir) = &self.init else {
            return Err("model.query_max_len / doc_max_len = \"init\" reads the --init model's own length, and there is no --init model (set a number of tokens)".into());
        };
        let len = init_max_seq_length(dir)?;
        for side in [&mut self.query_max_len, &mut self.doc_max_len] {
            if *side == Some(MaxLen::Init) {
                *side = Some(MaxLen::Tokens(len));
            }
        }
        Ok(())
    }
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            kind: ModelKind::DualEncoder,
            preset: "mini".into(),
            init: None,
            tokenizer: None,
            vocab_size: 8192,
            max_len: 128,
            pooling: Pooling::Mean,
            projection: 0,
            normalize: false,
            similarity: Similarity::Dot,
            shared_towers: true,
            dropout: None,
            query_prefix: String::new(),
            doc_prefix: String::new(),
            query_max_len: None,
            doc_max_len: None,
            positions: true,
            embeddings: EmbeddingInit::Random,
        }
    }
}

/// Where keys beyond the batch come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Memory {
    /// In-batch negatives only.
    None,
    /// MoCo: a momentum copy of the document tower encodes keys, queued.
    #[default]
    Moco,
    /// Memory bank (Wu et al., 2018): the trained tower's own keys, queued.
    MemoryBank,
}

/// The `[batch]` section: which pairs may share a batch (each is every
/// other's negative). See `train::compose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSection {
    /// No two pairs of a batch share a query text or a positive text.
    pub no_duplicates: bool,
    /// At most one pair per source document in a batch (the pretext task's
    /// pairs; a pair file names no documents).
    pub one_per_document: bool,
    /// Every batch from one group of documents: `file` (one source file)
    /// or `cluster` (one k-means cluster of the init model's document
    /// embeddings: in-batch negatives on the same topic, harder for free).
    pub group_by: Option<GroupBy>,
    /// `group_by = "cluster"`: clusters (0: one per batch's worth of
    /// documents, `documents / batch_size`, at least 1).
    pub clusters: usize,
}

/// What the documents of one batch share (`batch.group_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// Their source file.
    File,
    /// Their k-means cluster of the init model's embeddings.
    Cluster,
}

/// The `[train]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Run directory: checkpoints, metrics, curves, tokenizer.
    pub out: PathBuf,
    /// `cpu`, `cuda`, `cuda:N` or `metal`.
    pub device: String,
    /// Optimizer steps.
    pub steps: usize,
    /// Pairs per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0: no clipping).
    pub clip_norm: f64,
    /// The loss (`type = "infonce"` or `"triplet"`).
    pub loss: Loss,
    /// `none`, `moco` or `memory-bank`.
    pub memory: Memory,
    /// Keys kept in the queue (Contriever: 131072); a multiple of batch_size.
    pub queue_size: usize,
    /// Momentum of the key encoder (Contriever: 0.9995).
    pub momentum: f64,
    /// Hard negatives per query taken from the pairs (0: none).
    pub hard_negatives: usize,
    /// Pairs held for shuffling.
    pub shuffle_buffer: usize,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: usize,
    /// Checkpoints kept.
    pub keep_checkpoints: usize,
    /// A pair dataset to train on instead of the pretext task.
    pub pairs: Option<PathBuf>,
    /// Parts of the model kept as they are (`{ embeddings = true, layers =
    /// N }`): no update, and no backward pass below the frozen part.
    pub freeze: Freeze,
    /// Self-distillation against the frozen initial model.
    pub distill: Distill,
    /// Distillation from a teacher's scores carried in the pair file.
    pub teacher: TeacherScores,
    /// Consistency filtering of the stream's pairs (E5).
    pub filter: ConsistencyFilter,
    /// `contrastive` (the loss against sampled negatives) or `ltre`.
    pub mode: TrainMode,
    /// LTRe's settings (`train.mode = "ltre"`).
    pub ltre: Ltre,
    /// GradCache (Gao et al., 2021): encode the batch this many rows at a
    /// time, first without a graph to compute the loss and the gradient of
    /// every embedding over the whole batch, then again chunk by chunk with
    /// its graph to backpropagate that gradient. Memory holds one chunk's
    /// activations, not the batch's; the step computes the same loss and
    /// gradients (0: off, the whole batch at once).
    pub grad_cache: usize,
}

/// What a step learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrainMode {
    /// `train.loss` against in-batch, hard, mined and queued negatives.
    #[default]
    Contrastive,
    /// LTRe (Zhan et al., 2020), learning to retrieve without negative
    /// sampling: the corpus is encoded once by the initial document tower
    /// and frozen, each step ranks the whole index for every query, and the
    /// query tower learns from that ranking.
    Ltre,
}

/// `train.ltre`: how deep each query's ranking is read and how its pairs
/// are weighted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ltre {
    /// Retrieved documents per query the loss ranks the relevant one above.
    pub top_n: usize,
    /// Pair weights: `delta-mrr` (LambdaRank's) or `none`.
    pub weighting: LtreWeighting,
    /// Scores are divided by this before the pairwise loss (cosine scores
    /// live in [-1, 1], too flat for a logistic loss).
    pub temperature: f64,
    /// A fusion teacher over each query's candidates (off by default).
    pub teacher: LtreTeacher,
}

impl Default for Ltre {
    fn default() -> Self {
        Ltre {
            top_n: 100,
            weighting: LtreWeighting::DeltaMrr,
            temperature: 0.05,
            teacher: LtreTeacher::default(),
        }
    }
}

/// `train.ltre.teacher`: the loss gains `weight · KL(teacher ‖ model)`
/// over each query's candidates (its source document and the top n the
/// model retrieves), the teacher's logits being
/// `lexical · z(BM25) + init · z(initial model)`, each standardised over
/// the candidates. A fusion of lexical and dense scores ranks real
/// questions better than either alone (docs/adapt.md), and LTRe's hard label
/// says only which document a pseudo-query came from, not how the rest
/// should rank; the teacher says that. The documents stay frozen, so the
/// query tower learns to ask for what BM25 sees (rare terms, exact names)
/// without moving the index (SPAR's lexical teacher Λ, Chen et al., 2021,
/// distilled into the query side).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LtreTeacher {
    /// Weight of the KL term (0: off, LTRe's pairwise loss alone).
    pub weight: f64,
    /// Weight of BM25's standardised scores (Anserini's k1 0.9, b 0.4,
    /// Lucene's analyzer, the corpus's statistics) in the teacher's logits.
    pub lexical: f64,
    /// Weight of the initial model's standardised scores (its document
    /// tower, which LTRe keeps as the init, encodes the queries too).
    pub init: f64,
    /// Temperature of the teacher's softmax over standardised logits.
    pub temperature: f64,
    /// Drop LTRe's pairs whose retrieved document the teacher ranks at or
    /// above the relevant one: near-duplicates and other relevant
    /// documents are not pushed down (false negatives, as RocketQA
    /// denoises them).
    pub filter: bool,
    /// Whether the KL term's distributions include the relevant document
    /// (the pseudo-query's own). Without it (`false`) the term spans the
    /// retrieved documents only: a pseudo-query cut from its document is
    /// matched verbatim, so the teacher puts nearly all its mass there and
    /// says little about the rest, while LTRe's pairwise loss already
    /// places the relevant one. What the fusion knows and the model does
    /// not is how the *other* documents rank (docs/adapt.md).
    pub relevant: bool,
}

impl LtreTeacher {
    /// Whether the teacher scores anything (a KL term or the filter).
    pub fn active(&self) -> bool {
        self.weight > 0.0 || self.filter
    }

    /// Whether BM25 over the index must be built (the lexical half).
    pub fn needs_lexical(&self) -> bool {
        self.active() && self.lexical > 0.0
    }

    /// Whether the initial model must encode the queries (the dense half).
    pub fn needs_init(&self) -> bool {
        self.active() && self.init > 0.0
    }
}

impl Default for LtreTeacher {
    fn default() -> Self {
        LtreTeacher {
            weight: 0.0,
            lexical: 1.0,
            init: 1.0,
            temperature: 1.0,
            filter: false,
            relevant: true,
        }
    }
}

/// How LTRe weights each (relevant, retrieved) pair of its loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LtreWeighting {
    /// `|1/r⁺ − 1/r⁻|`: what swapping the two would change in reciprocal
    /// rank, so mistakes at the top weigh most (LambdaRank).
    #[default]
    DeltaMrr,
    /// Every retrieved document above the relevant one counts the same.
    None,
}

/// `train.filter`: pairs are judged `pool` at a time, and a pair is kept
/// only if the judging model ranks its positive within the top `top_k` of
/// the pool's positives for its query (E5's consistency filter, on the
/// stream, as `pretext pairs --filter consistency` does on a file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsistencyFilter {
    /// Rank a positive must reach to be kept (0: no filter).
    pub top_k: usize,
    /// Pairs judged together: the pool of candidate positives.
    pub pool: usize,
    /// The judging model folder; default: `model.init`.
    pub model: Option<PathBuf>,
}

impl Default for ConsistencyFilter {
    fn default() -> Self {
        ConsistencyFilter {
            top_k: 0,
            pool: 1024,
            model: None,
        }
    }
}

/// How the model learns from teacher scores in the pair file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreLoss {
    /// MarginMSE (Hofstätter et al., 2020): the squared error between the
    /// model's and the teacher's margins `s(q, p) − s(q, n_i)`.
    #[default]
    MarginMse,
    /// Listwise KL between the teacher's and the model's softmax over the
    /// positive and the negatives.
    Kl,
}

/// `train.teacher`: the loss gains `weight · L(model scores, teacher
/// scores)` over each pair's positive and its own hard negatives, the
/// teacher scores read from the pair file (`scores`, `pos_scores` /
/// `neg_scores`, Tevatron passage `score`; `mine --teacher-scores bm25`
/// writes BM25's, SPAR's lexical teacher).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeacherScores {
    /// `margin-mse` or `kl`.
    pub loss: ScoreLoss,
    /// Weight of the term (0: off).
    pub weight: f64,
    /// Temperature of the teacher's softmax (`kl`; BM25 scores are in the
    /// tens, so a temperature near their spread).
    pub temperature: f64,
    /// A hybrid teacher (`kl` only; 0: off): the teacher's logits become
    /// `z(file scores) + blend_init · z(initial model's scores)`, each
    /// standardised over the query's candidates. Lexical and dense scores
    /// fused this way rank better than either alone, and the model learns
    /// that fusion rather than to forget what it knew for BM25's ranking.
    pub blend_init: f64,
    /// Whether the pairs' own negatives are also negatives of the
    /// contrastive loss (default). `false` leaves them to the teacher
    /// alone, as GPL does: candidates mined from a retriever's top ranks
    /// are often relevant, and only the teacher's scores say how much;
    /// the contrastive loss then keeps its in-batch (and queue) negatives.
    pub contrast: bool,
}

impl Default for TeacherScores {
    fn default() -> Self {
        TeacherScores {
            loss: ScoreLoss::MarginMse,
            weight: 0.0,
            temperature: 1.0,
            blend_init: 0.0,
            contrast: true,
        }
    }
}

/// `train.distill`: the loss gains `weight · KL(init ‖ model)` over each
/// query's in-batch scores, the teacher being a frozen copy of the model as
/// it started (the init model, when adapting one).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Distill {
    /// Weight of the distillation term (0: off).
    pub weight: f64,
    /// Temperature of both score distributions.
    pub temperature: f64,
}

impl Default for Distill {
    fn default() -> Self {
        Distill {
            weight: 0.0,
            temperature: 0.05,
        }
    }
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            out: PathBuf::from("runs/run"),
            device: "cpu".into(),
            steps: 1000,
            batch_size: 32,
            lr: 1e-4,
            warmup_steps: 100,
            weight_decay: 0.01,
            clip_norm: 1.0,
            loss: Loss::default(),
            memory: Memory::Moco,
            queue_size: 131072,
            momentum: 0.9995,
            hard_negatives: 0,
            shuffle_buffer: 8192,
            checkpoint_every: 500,
            keep_checkpoints: 2,
            pairs: None,
            freeze: Freeze::default(),
            distill: Distill::default(),
            teacher: TeacherScores::default(),
            filter: ConsistencyFilter::default(),
            mode: TrainMode::default(),
            ltre: Ltre::default(),
            grad_cache: 0,
        }
    }
}

impl TrainSection {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.batch_size < 2 {
            return Err("train.batch_size must be at least 2".into());
        }
        if self.memory != Memory::None
            && (self.queue_size == 0 || !self.queue_size.is_multiple_of(self.batch_size))
        {
            return Err(format!(
                "train.queue_size = {} must be a positive multiple of train.batch_size = {}",
                self.queue_size, self.batch_size
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!(
                "train.momentum = {} is not in [0, 1)",
                self.momentum
            ));
        }
        if self.steps == 0 {
            return Err("train.steps must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!(
                "train.lr = {} must be a finite number > 0",
                self.lr
            ));
        }
        if !(self.teacher.temperature.is_finite() && self.teacher.temperature > 0.0) {
            return Err(format!(
                "train.teacher.temperature = {} must be a finite number > 0",
                self.teacher.temperature
            ));
        }
        if !(self.distill.temperature.is_finite() && self.distill.temperature > 0.0) {
            return Err(format!(
                "train.distill.temperature = {} must be a finite number > 0",
                self.distill.temperature
            ));
        }
        for (name, v) in [
            ("weight_decay", self.weight_decay),
            ("clip_norm", self.clip_norm),
            ("distill.weight", self.distill.weight),
            ("teacher.weight", self.teacher.weight),
            ("teacher.blend_init", self.teacher.blend_init),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("train.{name} = {v} must be a finite number >= 0"));
            }
        }
        Ok(())
    }
}

/// An init folder's own input length: `max_seq_length` of its
/// `sentence_bert_config.json` (what sentence-transformers, and an index
/// built with the model, cut at), else its position table; at most the
/// table either way.
pub fn init_max_seq_length(dir: &std::path::Path) -> Result<usize, String> {
    let read = |name: &str| -> Result<Option<serde_json::Value>, String> {
        let p = dir.join(name);
        if !p.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p)
            .map_err(|e| format!("model.init: cannot read {}: {e}", p.display()))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("model.init: {} is not JSON: {e}", p.display()))
    };
    let positions = read("config.json")?
        .and_then(|c| c["max_position_embeddings"].as_u64())
        .ok_or_else(|| {
            format!(
                "model.init: {} has no max_position_embeddings",
                dir.join("config.json").display()
            )
        })?;
    let own = read("sentence_bert_config.json")?.and_then(|c| c["max_seq_length"].as_u64());
    Ok(own.unwrap_or(positions).min(positions) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<ModelSection, String> {
        toml::from_str(&format!("doc_max_len = {value}")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_length_is_a_number_or_init() {
        assert_eq!(parse("200").unwrap().doc_max_len, Some(MaxLen::Tokens(200)));
        assert_eq!(parse("\"init\"").unwrap().doc_max_len, Some(MaxLen::Init));
        let err = parse("\"long\"").unwrap_err();
        assert!(err.contains("a number of tokens or \"init\""), "{err}");
        assert!(parse("-3").unwrap_err().contains("cannot be negative"));
        // Saved as it was written: a resolved run saves the number.
        let m = parse("\"init\"").unwrap();
        assert!(toml::to_string(&m)
            .unwrap()
            .contains("doc_max_len = \"init\""));
        let err = m.lengths().unwrap_err();
        assert!(err.contains("never trained"), "{err}");
    }

    #[test]
    fn init_lengths_come_from_the_init_folder() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("config.json"), r#"{"max_position_embeddings": 512}"#).unwrap();
        let mut m = ModelSection {
            init: Some(d.to_path_buf()),
            max_len: 64,
            doc_max_len: Some(MaxLen::Init),
            ..Default::default()
        };
        let resolved = |m: &ModelSection| {
            let mut m = m.clone();
            m.resolve_init_lengths().map(|()| m.lengths().unwrap())
        };
        // No sentence-transformers config: the position table.
        assert_eq!(resolved(&m), Ok((64, 512)));
        // Its max_seq_length, at most the table.
        let sbert = d.join("sentence_bert_config.json");
        std::fs::write(&sbert, r#"{"max_seq_length": 256}"#).unwrap();
        assert_eq!(resolved(&m), Ok((64, 256)));
        m.query_max_len = Some(MaxLen::Init);
        assert_eq!(resolved(&m), Ok((256, 256)));
        std::fs::write(&sbert, r#"{"max_seq_length": 4096}"#).unwrap();
        assert_eq!(resolved(&m), Ok((512, 512)));
        // A number stays; without an init, "init" is refused.
        m.query_max_len = Some(MaxLen::Tokens(20));
        assert_eq!(resolved(&m), Ok((20, 512)));
        m.init = None;
        assert!(resolved(&m).unwrap_err().contains("no --init model"));
    }
}
