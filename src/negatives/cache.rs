//! Corpus embeddings cached on disk, keyed by the model and the corpus, so
//! a second mining run (or a rescoring pass) maps the vectors back instead
//! of encoding again.
//!
//! A cache file is `PRTXEMB1`, rows and dim as little-endian `u32`, then the
//! vectors as little-endian `f32`, written to a temporary name and renamed.
//! Its name is a BLAKE3 hash of the model folder's weights, config and
//! tokenizer, the input length and every text (length-prefixed), so any
//! change to either side misses the cache instead of returning stale vectors.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use memmap2::Mmap;

use super::dense::Embeddings;

const MAGIC: &[u8; 8] = b"PRTXEMB1";
const HEADER: usize = 16;

/// A folder of cached embeddings.
#[derive(Debug, Clone)]
pub struct EmbeddingCache {
    dir: PathBuf,
}

impl EmbeddingCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> EmbeddingCache {
        EmbeddingCache { dir: dir.into() }
    }

    /// The key of `texts` encoded by the model in `model_dir` at `max_len`.
    pub fn key(
        model_dir: &Path,
        max_len: Option<usize>,
        int8: bool,
        texts: &[String],
    ) -> Result<String> {
        let mut h = blake3::Hasher::new();
        // A folder with separate towers embeds documents with `doc/`: its
        // weights are part of what the embeddings depend on.
        let doc = model_dir.join("doc/model.safetensors");
        let files = ["model.safetensors", "config.json", "tokenizer.json"]
            .map(|n| model_dir.join(n))
            .into_iter()
            .chain(doc.exists().then_some(doc));
        for p in files {
            let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
        h.update(&(max_len.unwrap_or(0) as u64).to_le_bytes());
        if int8 {
            // Only then, so the keys of f32 embeddings stay what they were.
            h.update(b"int8");
        }
        h.update(&(texts.len() as u64).to_le_bytes());
        for t in texts {
            h.update(&(t.len() as u64).to_le_bytes());
            h.update(t.as_bytes());
        }
        Ok(h.finalize().to_hex()[..32].to_string())
    }

    /// A file of the cache folder (the HNSW graph beside its embeddings).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.emb"))
    }

    /// The cached embeddings of `key`, memory-mapped, if present.
    pub fn load(&self, key: &str) -> Result<Option<Embeddings>> {
        let p = self.path(key);
        if !p.exists() {
            return Ok(None);
        }
        let f = std::fs::File::open(&p).with_context(|| format!("opening {}", p.display()))?;
        // SAFETY: cache files are written once (temp + rename) and never
        // modified in place; a concurrent writer replaces, not rewrites, them.
        let map = unsafe { Mmap::map(&f) }.with_context(|| format!("mapping {}", p.display()))?;
        if map.len() < HEADER || &map[..8] != MAGIC {
            bail!("{}: not a pretext embedding cache file", p.display());
        }
        let rows = u32::from_le_bytes(map[8..12].try_into().expect("4 bytes")) as usize;
        let dim = u32::from_le_bytes(map[12..16].try_into().expect("4 bytes")) as usize;
        Embeddings::mapped(map, HEADER, rows, dim)
            .with_context(|| format!("{}: truncated cache file", p.display()))
            .map(Some)
    }

    /// Stores `emb` under `key` (temporary file, then rename) and maps it back.
    pub fn store(&self, key: &str, emb: &Embeddings) -> Result<Embeddings> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let p = self.path(key);
        let tmp = p.with_extension("emb.tmp");
        {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?,
            );
            f.write_all(MAGIC)?;
            f.write_all(&(emb.rows() as u32).to_le_bytes())?;
            f.write_all(&(emb.dim() as u32).to_le_bytes())?;
            for x in emb.as_slice() {
                f.write_all(&x.to_le_bytes())?;
            }
            f.into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()
                .with_context(|| format!("writing {}", tmp.display()))?;
        }
        std::fs::rename(&tmp, &p).with_context(|| format!("renaming to {}", p.display()))?;
        Ok(self.load(key)?.expect("just written"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_maps_back_and_rejects_a_truncated_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EmbeddingCache::new(dir.path().join("c"));
        assert!(cache.load("k").unwrap().is_none());
        let e = Embeddings::new(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, 2).unwrap();
        let back = cache.store("k", &e).unwrap();
        assert_eq!((back.rows(), back.dim()), (3, 2));
        assert_eq!(back.row(2), &[5.0, 6.0]);
        let p = dir.path().join("c/k.emb");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        let err = format!("{:#}", cache.load("k").err().unwrap());
        assert!(err.contains("k.emb") && err.contains("truncated"), "{err}");
    }

    #[test]
    fn the_key_changes_with_the_texts_and_the_model() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["model.safetensors", "config.json", "tokenizer.json"] {
            std::fs::write(dir.path().join(f), f).unwrap();
        }
        let texts = vec!["a".to_string(), "b".to_string()];
        let k1 = EmbeddingCache::key(dir.path(), None, false, &texts).unwrap();
        assert_eq!(
            k1,
            EmbeddingCache::key(dir.path(), None, false, &texts).unwrap()
        );
        let other = vec!["ab".to_string(), String::new()];
        assert_ne!(
            k1,
            EmbeddingCache::key(dir.path(), None, false, &other).unwrap()
        );
        assert_ne!(
            k1,
            EmbeddingCache::key(dir.path(), Some(64), false, &texts).unwrap()
        );
        assert_ne!(
            k1,
            EmbeddingCache::key(dir.path(), None, true, &texts).unwrap()
        );
        std::fs::write(dir.path().join("model.safetensors"), "changed").unwrap();
        assert_ne!(
            k1,
            EmbeddingCache::key(dir.path(), None, false, &texts).unwrap()
        );
    }
}
