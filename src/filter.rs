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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    let embed = |texts: &[String], side: Side| -> Result<candle_core::Tensor> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let e = embed_texts(model, &refs, side, batch, &mut |_| {})?;
        Ok(match model.similarity {
            Similarity::Cosine => l2_normalize(&e)?,
            Similarity::Dot => e,
        })
    };
    let q = embed(&queries, Side::Query)?;
    let pool = Embeddings::from_tensor(&embed(&positives, Side::Document)?)?;
    let ranked = top_k(&q, &pool, k, Blocks::default(), &model.device)?;
    let mut kept = 0;
    for (i, (line, hits)) in lines.iter().zip(&ranked).enumerate() {
        if hits.iter().any(|c| c.item as usize == i) {
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
