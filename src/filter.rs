//! Consistency filtering of pseudo-pairs (E5, Wang et al., 2022): a pair
//! is kept only if a given model ranks its positive within the top `k` of
//! the pool of positives for its query. Pairs a model finds inconsistent
//! are mostly noise (a title that does not describe its passage, a crop
//! about something else).
//!
//! The pool is the positives of the pair file itself (every pair's positive
//! is a candidate for every query), so the filter works on any task's
//! pairs, whose positives are passages cut from documents rather than the
//! documents themselves.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use pretext_tasks::formats::parse_pair_line;

use crate::eval::embed_texts;
use crate::model::pretrained::Pretrained;
use crate::model::{l2_normalize, Similarity};
use crate::negatives::{top_k, Blocks, Embeddings};
use crate::tokenize::Side;

/// What the filter kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Filtered {
    /// Pairs kept.
    pub kept: usize,
    /// Pairs dropped (positive outside the top k).
    pub dropped: usize,
}

/// Copies the lines of the pair file `input` whose positive `model` ranks
/// within the top `k` for its query to `out`, unchanged (any of the three
/// formats; `meta` kept). Lines with several positives are judged by their
/// first.
pub fn consistency(
    input: &Path,
    model: &Pretrained,
    k: usize,
    batch: usize,
    out: &mut dyn Write,
) -> Result<Filtered> {
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut queries = Vec::with_capacity(lines.len());
    let mut positives = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let pair = parse_pair_line(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", input.display(), i + 1))?
            .into_iter()
            .next()
            .with_context(|| format!("{}:{}: no pair", input.display(), i + 1))?;
        queries.push(pair.query);
        positives.push(pair.positive);
    }
    if lines.is_empty() {
        return Ok(Filtered {
            kept: 0,
            dropped: 0,
        });
    }
    let q: Vec<&str> = queries.iter().map(String::as_str).collect();
    let p: Vec<&str> = positives.iter().map(String::as_str).collect();
    let keep = consistent(model, &q, &p, k, batch)?;
    let mut kept = 0;
    for (line, keep) in lines.iter().zip(keep) {
        if keep {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
            kept += 1;
        }
    }
    Ok(Filtered {
        kept,
        dropped: lines.len() - kept,
    })
}

/// For each pair `i` of `queries[i]`/`positives[i]`: whether `model` ranks
/// positive `i` within the top `k` of all `positives` for query `i` (by
/// the model's similarity). The judgement of `pretext pairs --filter
/// consistency` and of `train.filter`.
pub fn consistent(
    model: &Pretrained,
    queries: &[&str],
    positives: &[&str],
    k: usize,
    batch: usize,
) -> Result<Vec<bool>> {
    if queries.is_empty() {
        return Ok(Vec::new());
    }
    let embed = |texts: &[&str], side: Side| -> Result<candle_core::Tensor> {
        let e = embed_texts(model, texts, side, batch, &mut |_| {})?;
        Ok(match model.similarity {
            Similarity::Cosine => l2_normalize(&e)?,
            Similarity::Dot => e,
        })
    };
    let q = embed(queries, Side::Query)?;
    let pool = Embeddings::from_tensor(&embed(positives, Side::Document)?)?;
    let ranked = top_k(&q, &pool, k, Blocks::default(), &model.device)?;
    Ok(ranked
        .iter()
        .enumerate()
        .map(|(i, hits)| hits.iter().any(|c| c.item as usize == i))
        .collect())
}
