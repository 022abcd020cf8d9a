//! `pretext encode`: a corpus (any reader) embedded with a model folder,
//! written as ids and vectors: `OUT.safetensors` (tensor `embeddings`,
//! `(documents, dim)` f32), `OUT.ids.txt` (one id per line, in the same
//! order) and, on request, `OUT.npy` for numpy users. What a user does
//! after adapting a model.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Tensor;
use pretext_tasks::corpus::Corpus;
use pretext_tasks::pipeline::{for_each_batch, ReadOptions};

use crate::eval::embed_texts;
use crate::model::pretrained::Pretrained;
use crate::tokenize::Side;

/// What was written.
#[derive(Debug)]
pub struct Encoded {
    /// Documents embedded.
    pub documents: usize,
    /// Vector width.
    pub dim: usize,
    /// The files written.
    pub files: Vec<PathBuf>,
}

/// The paths `OUT.safetensors`, `OUT.ids.txt`, `OUT.npy` for `out` (with
/// or without the `.safetensors` extension).
pub fn outputs(out: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let stem = match out.extension() {
        Some(e) if e == "safetensors" => out.with_extension(""),
        _ => out.to_path_buf(),
    };
    let with = |ext: &str| PathBuf::from(format!("{}.{ext}", stem.display()));
    (with("safetensors"), with("ids.txt"), with("npy"))
}

/// Embeds every document of `corpus` (title and text, as BEIR encodes
/// them) in batches of `batch`, reading the corpus one chunk at a time;
/// `progress` hears the documents done.
pub fn encode(
    model: &Pretrained,
    corpus: &Corpus,
    read: ReadOptions,
    batch: usize,
    out: &Path,
    npy: bool,
    progress: &mut dyn FnMut(usize),
) -> Result<Encoded> {
    let mut ids = Vec::new();
    let mut chunks = Vec::new();
    let mut failed = None;
    for_each_batch(
        corpus,
        read,
        |d| {
            let text = match &d.title {
                Some(t) => format!("{t} {}", d.text),
                None => d.text.to_string(),
            };
            (d.id.to_string(), text)
        },
        |docs, _| {
            if failed.is_some() || docs.is_empty() {
                return Ok(());
            }
            let texts: Vec<&str> = docs.iter().map(|(_, t)| t.as_str()).collect();
            match embed_texts(model, &texts, Side::Document, batch, &mut |_| {}) {
                Ok(e) => chunks.push(e),
                Err(e) => failed = Some(e),
            }
            ids.extend(docs.into_iter().map(|(id, _)| id));
            progress(ids.len());
            Ok(())
        },
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    let all = Tensor::cat(&chunks, 0)?.to_device(&candle_core::Device::Cpu)?;
    let (rows, dim) = all.dims2()?;
    let (st, id_file, npy_file) = outputs(out);
    let mut files = vec![st.clone(), id_file.clone()];
    crate::atomic::write_with(&st, |tmp| {
        candle_core::safetensors::save(
            &[("embeddings".to_string(), all.clone())]
                .into_iter()
                .collect(),
            tmp,
        )?;
        Ok(())
    })?;
    let mut list = String::new();
    for id in &ids {
        list.push_str(id);
        list.push('\n');
    }
    crate::atomic::write(&id_file, list)?;
    if npy {
        let values = all.flatten_all()?.to_vec1::<f32>()?;
        crate::atomic::write(&npy_file, npy_bytes(&values, rows, dim))?;
        files.push(npy_file);
    }
    Ok(Encoded {
        documents: rows,
        dim,
        files,
    })
}

/// A `(rows, dim)` little-endian f32 matrix in NumPy's `.npy` format,
/// version 1.0 (magic, header length, a Python dict literal padded so the
/// data starts at a multiple of 64 bytes).
pub fn npy_bytes(values: &[f32], rows: usize, dim: usize) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + values.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.write_all(&v.to_le_bytes()).expect("writing to a Vec");
    }
    out
}

/// Reads the embedding and the ids back (for tests and tools).
pub fn read_back(out: &Path) -> Result<(Vec<String>, Tensor)> {
    let (st, ids, _) = outputs(out);
    let t = candle_core::safetensors::load(&st, &candle_core::Device::Cpu)
        .with_context(|| format!("reading {}", st.display()))?;
    let e = t
        .get("embeddings")
        .cloned()
        .with_context(|| format!("{}: no `embeddings` tensor", st.display()))?;
    let ids = std::fs::read_to_string(&ids)
        .with_context(|| format!("reading {}", ids.display()))?
        .lines()
        .map(str::to_string)
        .collect();
    Ok((ids, e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn npy_header_is_aligned_and_describes_the_matrix() {
        let b = super::npy_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3);
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(
            header.contains("'shape': (2, 3)") && header.ends_with('\n'),
            "{header}"
        );
        assert_eq!(b.len(), 10 + hlen + 24);
        assert_eq!(&b[10 + hlen..10 + hlen + 4], &1.0f32.to_le_bytes());
    }
}
