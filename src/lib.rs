//! # pretext
//!
//! Self-supervised pretraining of dense text retrievers. The data half
//! (corpus readers, pretext tasks, pair formats) lives in the
//! [`pretext_tasks`] crate; this crate adds the configuration shared by the
//! subcommands of the `pretext` binary.

pub mod alloc;
pub mod atomic;
pub mod bench;
pub mod config;
pub mod dist;
pub mod encode;
pub mod eval;
pub mod export;
pub mod filter;
pub mod memory;
pub mod model;
pub mod momentum;
pub mod negatives;
pub mod objective;
pub mod optim;
pub mod plot;
pub mod queue;
pub mod tokenize;
pub mod train;

pub use pretext_tasks;

/// The default task of a name, as an error naming the choices otherwise.
pub fn tasks_by_name(name: &str) -> anyhow::Result<pretext_tasks::tasks::TaskSpec> {
    pretext_tasks::tasks::TaskSpec::by_name(name).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown task `{name}`; expected one of {}",
            pretext_tasks::tasks::TaskSpec::NAMES.join(", ")
        )
    })
}
