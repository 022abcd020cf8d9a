//! `pretext train`: a dual encoder trained on a pair stream with InfoNCE or
//! triplet loss, in-batch negatives and a MoCo queue (or memory bank), AdamW
//! with warm-up and linear decay, atomic resumable checkpoints.
//!
//! One idea a module:
//! - [`setup`]: from a checked configuration to a ready [`Trainer`]
//!   (device, tokenizer, model, optimizer, queue, resume);
//! - [`step`]: one optimisation step (forward, loss, backward, update);
//! - [`run`]: the loop (data stream, dense refreshes, logging, checkpoints);
//! - [`run_dir`]: the run folder's layout and who may write into it;
//! - [`checkpoint`]: what a checkpoint holds and how it is read back;
//! - [`data`]: the producer thread that tokenizes batches;
//! - [`ance`]: dense hard negatives refreshed during training;
//! - [`evaluate`]: the `[eval]` set scored during training, the best checkpoint.
//!
//! MoCo's key encoder lives in [`crate::momentum`], beside the queue.

pub mod ance;
pub mod checkpoint;
pub mod cluster;
pub mod compose;
pub mod cross;
pub mod data;
pub mod dev;
pub mod evaluate;
pub mod grad_cache;
pub mod ltre;
mod metrics;
pub mod run;
pub mod run_dir;
pub mod setup;
pub mod step;

use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_nn::VarMap;

use crate::config::Config;
use crate::dist::ProcessGroup;
use crate::model::{BertConfig, DualEncoder};
use crate::momentum::KeyEncoder;
use crate::optim::AdamW;
use crate::queue::KeyQueue;
use crate::tokenize::PairTokenizer;
pub use metrics::StepLog;
pub use run::last_logged_step;
pub use run_dir::{RunDir, Start};
pub use setup::{device, load_or_train_tokenizer};

/// Everything a run trains and keeps.
pub struct Trainer {
    config: Config,
    run_dir: RunDir,
    device: Device,
    tokenizer: PairTokenizer,
    bert: BertConfig,
    varmap: VarMap,
    model: DualEncoder,
    key: Option<KeyEncoder>,
    /// A frozen copy of the model as it started (`train.distill`).
    teacher: Option<KeyEncoder>,
    optimizer: AdamW,
    queue: Option<KeyQueue>,
    step: usize,
    /// Dense hard negatives refreshed during the run (source `dense`).
    ance: Option<ance::Ance>,
    /// The dense index a resumed run restores (the one the unbroken run
    /// had at this step), until [`run::Trainer::run`] sets up `ance`.
    resumed_ance: Option<(candle_core::Tensor, usize)>,
    /// LTRe's frozen index (`train.mode = "ltre"`), built when the run
    /// starts.
    ltre: Option<ltre::LtreIndex>,
    /// The ranks training together (one: [`crate::dist::Single`]).
    group: Box<dyn ProcessGroup>,
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
    /// The best evaluation, when the run had an `[eval]` set.
    pub best: Option<evaluate::Best>,
    /// What the consistency filter kept and dropped (`train.filter`).
    pub filtered: Option<crate::filter::Filtered>,
}

impl Trainer {
    /// Steps completed.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The model's BERT configuration.
    pub fn bert_config(&self) -> &BertConfig {
        &self.bert
    }
}
