//! # pretext-tasks
//!
//! The data half of pretext, with no ML dependency: memory-mapped corpus
//! readers, segmentation, the pretext tasks of the dense-retrieval literature
//! (Contriever's crops, ORQA's inverse cloze, Spider's recurring spans, CPT's
//! neighbours, AugTriever's pseudo-queries), augmentations, and the pair
//! dataset formats of sentence-transformers, FlagEmbedding and Tevatron.

#![warn(missing_docs)]

pub mod augment;
pub mod bm25;
pub mod corpus;
pub mod error;
pub mod formats;
pub mod idf;
pub mod negatives;
pub mod pipeline;
pub mod segment;
pub mod shard;
pub mod stopwords;
mod swar;
pub mod tasks;

pub use error::{Error, Result};
