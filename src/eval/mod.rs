//! `pretext eval`: a model (or BM25, later) on a BEIR-format data set, by
//! exact search, reported with trec_eval's metrics.

pub mod beir;
pub mod metrics;
pub mod rerank;

use anyhow::Result;
use candle_core::Tensor;

use crate::model::pretrained::Pretrained;
use crate::negatives::{top_k, AnnIndex, Blocks, Embeddings};
use crate::tokenize::Side;
use beir::Item;
use metrics::Run;
use pretext_tasks::negatives::AnnConfig;

/// Embeds items in batches of `batch` (sorted by length so each batch pads
/// to similar lengths), returning `(n, dim)` in the input order, on the
/// model's device. `progress` is told how many texts are done.
pub fn embed_all(
    model: &Pretrained,
    items: &[Item],
    side: Side,
    batch: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Tensor> {
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    embed_texts(model, &texts, side, batch, progress)
}

/// [`embed_all`] on plain texts, `side`'s prompt prepended.
pub fn embed_texts(
    model: &Pretrained,
    texts: &[&str],
    side: Side,
    batch: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Tensor> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
    let mut chunks = Vec::new();
    let mut done = 0;
    for ids in order.chunks(batch.max(1)) {
        let chunk: Vec<&str> = ids.iter().map(|&i| texts[i]).collect();
        // Detached: with trainable weights the graph of every chunk would
        // otherwise stay alive until the end (an ANCE refresh runs out of memory).
        chunks.push(model.embed_side(&chunk, side)?.detach());
        done += ids.len();
        progress(done);
    }
    if chunks.is_empty() {
        anyhow::bail!("nothing to embed");
    }
    let sorted = Tensor::cat(&chunks, 0)?;
    // Back to input order: position of each input in the sorted list.
    let mut inverse = vec![0u32; texts.len()];
    for (pos, &i) in order.iter().enumerate() {
        inverse[i] = pos as u32;
    }
    let index = Tensor::from_vec(inverse, texts.len(), sorted.device())?;
    Ok(sorted.index_select(&index, 0)?)
}

/// Top-`k` search by dot product (the search mining and the ANCE refresh
/// use): exact ([`crate::negatives::top_k`], queries in blocks of
/// `block`), or through an HNSW graph built over `docs` when `ann` is
/// given ([`crate::negatives::AnnIndex`]). A hit whose id equals its
/// query's id is skipped (BEIR's convention for corpora that contain their
/// queries).
pub fn search(
    queries: &Tensor,
    q_items: &[Item],
    docs: &Tensor,
    d_items: &[Item],
    k: usize,
    block: usize,
    ann: Option<&AnnConfig>,
) -> Result<Run> {
    let index = Embeddings::from_tensor(docs)?;
    // Enough extra hits to fill `k` after dropping each query's own id.
    let mut per_id: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for d in d_items {
        *per_id.entry(d.id.as_str()).or_default() += 1;
    }
    let extra = q_items
        .iter()
        .map(|q| per_id.get(q.id.as_str()).copied().unwrap_or(0))
        .max()
        .unwrap_or(0);
    let blocks = Blocks {
        queries: block.max(1),
        ..Blocks::default()
    };
    let ranked = match ann {
        None => top_k(queries, &index, k + extra, blocks, queries.device())?,
        Some(config) => AnnIndex::build(&index, config, &mut |_| {})?.top_k(
            queries,
            &index,
            k + extra,
            config,
        )?,
    };
    let mut run = Run::new();
    for (q, hits) in q_items.iter().zip(ranked) {
        let kept = hits
            .into_iter()
            .map(|c| (&d_items[c.item as usize].id, c.score))
            .filter(|(id, _)| **id != q.id)
            .take(k)
            .map(|(id, score)| (id.clone(), score))
            .collect();
        run.insert(q.id.clone(), kept);
    }
    Ok(run)
}
