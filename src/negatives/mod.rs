//! Negatives that need a model: exact dense search over cached corpus
//! embeddings, rescoring by a second encoder, and the `pretext mine` job
//! (BM25, dense, random or gold candidates through the shared rules of
//! `pretext_tasks::negatives`).

pub mod ann;
pub mod cache;
pub mod dense;
pub mod label;
pub mod mine;

pub use ann::AnnIndex;
pub use cache::EmbeddingCache;
pub use dense::{top_k, Blocks, Embeddings};
