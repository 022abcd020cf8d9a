//! `pretext eval`: a model (or BM25, later) on a BEIR-format data set, by
//! exact search, reported with trec_eval's metrics.

pub mod beir;
pub mod metrics;

use anyhow::Result;
use candle_core::{Device, Tensor};

use crate::model::pretrained::Pretrained;
use beir::Item;
use metrics::Run;

/// Embeds items in batches of `batch` (sorted by length so each batch pads
/// to similar lengths), returning `(n, dim)` in the input order, on the
/// model's device. `progress` is told how many texts are done.
pub fn embed_all(
    model: &Pretrained,
    items: &[Item],
    batch: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Tensor> {
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    embed_texts(model, &texts, batch, progress)
}

/// [`embed_all`] on plain texts.
pub fn embed_texts(
    model: &Pretrained,
    texts: &[&str],
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
        chunks.push(model.embed(&chunk)?.detach());
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

/// Exact top-`k` search by dot product, queries in blocks so memory is
/// `block × documents` scores. A hit whose id equals its query's id is
/// skipped (BEIR's convention for corpora that contain their queries).
pub fn search(
    queries: &Tensor,
    q_items: &[Item],
    docs: &Tensor,
    d_items: &[Item],
    k: usize,
    block: usize,
) -> Result<Run> {
    let mut run = Run::new();
    let n_docs = d_items.len();
    let docs_t = docs.t()?.contiguous()?;
    for start in (0..q_items.len()).step_by(block.max(1)) {
        let len = block.min(q_items.len() - start);
        let scores = queries
            .narrow(0, start, len)?
            .matmul(&docs_t)?
            .to_device(&Device::Cpu)?
            .to_vec2::<f32>()?;
        for (row, q) in scores.into_iter().zip(&q_items[start..start + len]) {
            let mut idx: Vec<usize> = (0..n_docs).filter(|&j| d_items[j].id != q.id).collect();
            let take = (k).min(idx.len());
            if take < idx.len() {
                idx.select_nth_unstable_by(take, |&a, &b| row[b].total_cmp(&row[a]));
                idx.truncate(take);
            }
            run.insert(
                q.id.clone(),
                idx.into_iter()
                    .map(|j| (d_items[j].id.clone(), row[j]))
                    .collect(),
            );
        }
    }
    Ok(run)
}
