//! Token embeddings started from latent semantic analysis of the training
//! corpus (LSA; Deerwester et al., 1990): a truncated SVD of the corpus's
//! tf-idf matrix (documents × vocabulary) gives each token a vector in
//! which tokens that occur in the same documents point the same way.
//!
//! A model trained from scratch (`model.embeddings = "lsa"`) starts its
//! word embeddings there instead of from noise. A short run on a small
//! corpus cannot learn from a few hundred steps of pairs what the corpus's
//! co-occurrence statistics already say about every token; with these
//! vectors the untrained model is a weighted bag of LSA vectors (a classic
//! retriever), and training refines it instead of building it.
//!
//! The SVD is randomized (Halko, Martinsson and Tropp, 2011): a Gaussian
//! sketch of the matrix's range, sharpened by power iterations, then the
//! exact SVD of the small projected matrix. It costs a few sparse products
//! with a `(vocabulary × (dim + 10))` block, seconds on 20,000 documents.

use anyhow::{bail, Result};
use nalgebra::{DMatrix, SymmetricEigen};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use tokenizers::Tokenizer;

use super::word_weights::for_each_token_count;

/// Documents whose tokens make the matrix (the corpus's first ones): an
/// 8,192-token vocabulary's co-occurrences are well sampled by then, and
/// the matrix stays a few tens of MB on a corpus of any size.
pub const LSA_DOCS: usize = 20_000;

/// Extra sketch columns beyond the rank asked for (Halko et al.'s `p`).
const OVERSAMPLE: usize = 10;

/// Power iterations of the sketch: a tf-idf matrix's singular values
/// decay slowly, and each iteration sharpens the leading ones.
const POWER_ITERATIONS: usize = 3;

/// One LSA vector per vocabulary entry.
#[derive(Debug, Clone)]
pub struct TokenVectors {
    /// Width of each vector.
    pub dim: usize,
    /// `vocab × dim`, row-major: row `t` is token `t`'s vector, scaled so
    /// that the rows of seen tokens have a mean squared entry of 1 (what a
    /// layer norm's output has; a training step then moves them by a small
    /// fraction, as it does the rest of the model).
    pub vectors: Vec<f32>,
    /// Whether token `t` occurs in the documents (an unseen token's row is
    /// zero: the caller keeps its random start).
    pub seen: Vec<bool>,
}

/// LSA vectors of width `dim` for each of `vocab` token ids over `texts`
/// (tokenized whole, with the special tokens, as the idf of weighted
/// pooling is). A corpus of fewer than `dim` documents gives vectors of its
/// rank, zero beyond it. `seed` draws the sketch.
pub fn token_vectors<T: AsRef<str>>(
    tokenizer: &Tokenizer,
    texts: &[T],
    vocab: usize,
    dim: usize,
    seed: u64,
) -> Result<TokenVectors> {
    let a = tfidf(tokenizer, texts, vocab)?;
    if a.rows() == 0 {
        bail!("no documents to compute LSA token vectors from");
    }
    let at = a.transpose();
    let rank = dim.min(a.rows()).min(vocab);
    let width = (rank + OVERSAMPLE).min(a.rows()).min(vocab);
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
    let sketch = Dense {
        rows: vocab,
        cols: width,
        data: (0..vocab * width)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect(),
    };
    // The range of A, sharpened: Y = (A Aᵀ)^q A Ω, re-orthonormalised at
    // every step so the leading directions do not swamp the others.
    let mut y = a.mul(&sketch);
    for _ in 0..POWER_ITERATIONS {
        let z = orthonormal(&at.mul(&orthonormal(&y)));
        y = a.mul(&z);
    }
    let q = orthonormal(&y);
    // Bᵀ = Aᵀ Q, and BᵀU = V Σ for the eigenvectors U of B Bᵀ: the token
    // vectors, scaled by their singular values, with no division.
    let bt = at.mul(&q).to_matrix();
    let gram = bt.tr_mul(&bt);
    let eigen = SymmetricEigen::new(gram);
    let mut order: Vec<usize> = (0..width).collect();
    order.sort_by(|&i, &j| eigen.eigenvalues[j].total_cmp(&eigen.eigenvalues[i]));
    let top = DMatrix::from_fn(width, rank, |r, c| eigen.eigenvectors[(r, order[c])]);
    let v = bt * top;
    // A token the documents lack has an empty row in Aᵀ, so a zero row in
    // V Σ: the sum of squares is over the seen rows alone.
    let seen: Vec<bool> = at.starts.windows(2).map(|w| w[1] > w[0]).collect();
    let entries = seen.iter().filter(|&&s| s).count() * dim;
    let sum: f64 = v.iter().map(|x| x * x).sum();
    let scale = match sum > 0.0 {
        true => (entries as f64 / sum).sqrt(),
        false => 0.0,
    };
    let mut vectors = vec![0f32; vocab * dim];
    for t in 0..vocab {
        for c in 0..rank {
            vectors[t * dim + c] = (v[(t, c)] * scale) as f32;
        }
    }
    Ok(TokenVectors { dim, vectors, seen })
}

/// The tf-idf matrix (documents × `vocab`): sublinear term frequency
/// (`1 + ln count`) times the smoothed idf (`ln((1 + N) / (1 + df)) + 1`),
/// each row of unit length (scikit-learn's `TfidfVectorizer(sublinear_tf =
/// True)`).
fn tfidf<T: AsRef<str>>(tokenizer: &Tokenizer, texts: &[T], vocab: usize) -> Result<Csr> {
    let mut m = Csr {
        cols: vocab,
        starts: vec![0],
        ids: Vec::new(),
        values: Vec::new(),
    };
    for_each_token_count(tokenizer, texts, |counts| {
        for &(id, n) in counts.iter().filter(|(id, _)| (*id as usize) < vocab) {
            m.ids.push(id);
            m.values.push(1.0 + (n as f64).ln());
        }
        m.starts.push(m.ids.len());
    })?;
    let mut df = vec![0usize; vocab];
    for &id in &m.ids {
        df[id as usize] += 1;
    }
    let docs = m.rows() as f64;
    let idf: Vec<f64> = df
        .iter()
        .map(|&d| ((1.0 + docs) / (1.0 + d as f64)).ln() + 1.0)
        .collect();
    for r in 0..m.rows() {
        let span = m.starts[r]..m.starts[r + 1];
        for k in span.clone() {
            m.values[k] *= idf[m.ids[k] as usize];
        }
        let norm = m.values[span.clone()]
            .iter()
            .map(|v| v * v)
            .sum::<f64>()
            .sqrt();
        if norm > 0.0 {
            m.values[span].iter_mut().for_each(|v| *v /= norm);
        }
    }
    Ok(m)
}

/// A sparse matrix by rows: row `r`'s entries are `ids[starts[r]..starts[r
/// + 1]]` (column numbers, ascending) and the same span of `values`.
struct Csr {
    cols: usize,
    starts: Vec<usize>,
    ids: Vec<u32>,
    values: Vec<f64>,
}

impl Csr {
    fn rows(&self) -> usize {
        self.starts.len() - 1
    }

    /// The same matrix by columns (a counting sort of the entries).
    fn transpose(&self) -> Csr {
        let mut starts = vec![0usize; self.cols + 1];
        for &c in &self.ids {
            starts[c as usize + 1] += 1;
        }
        for c in 0..self.cols {
            starts[c + 1] += starts[c];
        }
        let mut next = starts.clone();
        let mut ids = vec![0u32; self.ids.len()];
        let mut values = vec![0f64; self.ids.len()];
        for r in 0..self.rows() {
            for k in self.starts[r]..self.starts[r + 1] {
                let c = self.ids[k] as usize;
                ids[next[c]] = r as u32;
                values[next[c]] = self.values[k];
                next[c] += 1;
            }
        }
        Csr {
            cols: self.rows(),
            starts,
            ids,
            values,
        }
    }

    /// `self × x`, rows in parallel.
    fn mul(&self, x: &Dense) -> Dense {
        assert_eq!(self.cols, x.rows, "sparse product shapes");
        let mut data = vec![0f64; self.rows() * x.cols];
        data.par_chunks_mut(x.cols)
            .enumerate()
            .for_each(|(r, out)| {
                for k in self.starts[r]..self.starts[r + 1] {
                    let (c, v) = (self.ids[k] as usize, self.values[k]);
                    let row = &x.data[c * x.cols..(c + 1) * x.cols];
                    out.iter_mut().zip(row).for_each(|(o, &xv)| *o += v * xv);
                }
            });
        Dense {
            rows: self.rows(),
            cols: x.cols,
            data,
        }
    }
}

/// A dense matrix, row-major (the sparse products' layout; nalgebra's is
/// column-major, converted at the two places it is used).
struct Dense {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Dense {
    fn to_matrix(&self) -> DMatrix<f64> {
        DMatrix::from_row_slice(self.rows, self.cols, &self.data)
    }
}

/// An orthonormal basis of `x`'s columns (the thin Q of its QR).
fn orthonormal(x: &Dense) -> Dense {
    let q = x.to_matrix().qr().q();
    Dense {
        rows: q.nrows(),
        cols: q.ncols(),
        // Column-major of the transpose is row-major of `q`.
        data: q.transpose().as_slice().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two topics that share no word, each word a whole token.
    const TEXTS: [&str; 8] = [
        "cat dog pet",
        "dog pet fur",
        "cat fur pet",
        "cat dog fur",
        "sql table index",
        "table index query",
        "sql query table",
        "sql index query",
    ];

    fn tokenizer() -> Tokenizer {
        let words = TEXTS.iter().chain(TEXTS.iter()).chain(TEXTS.iter());
        crate::tokenize::train_wordpiece(words, 64).unwrap()
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    }

    #[test]
    fn tokens_of_one_topic_point_together() {
        let tok = tokenizer();
        let vocab = tok.get_vocab_size(true);
        let lsa = token_vectors(&tok, &TEXTS, vocab, 2, 7).unwrap();
        let row = |w: &str| {
            let t = tok.token_to_id(w).unwrap() as usize;
            assert!(lsa.seen[t], "{w} is in the texts");
            &lsa.vectors[t * 2..t * 2 + 2]
        };
        // Rank 2 over two disjoint topics: one direction each.
        assert!(cosine(row("cat"), row("fur")) > 0.95);
        assert!(cosine(row("sql"), row("query")) > 0.95);
        assert!(cosine(row("cat"), row("sql")).abs() < 0.1);
        // Seen rows have a mean squared entry of 1; unseen rows are zero.
        let (sum, n) = (0..vocab)
            .filter(|&t| lsa.seen[t])
            .fold((0f32, 0), |(s, n), t| {
                let r = &lsa.vectors[t * 2..t * 2 + 2];
                (s + r.iter().map(|x| x * x).sum::<f32>(), n + 2)
            });
        assert!((sum / n as f32 - 1.0).abs() < 1e-4, "{}", sum / n as f32);
        let unseen = (0..vocab).find(|&t| !lsa.seen[t]).expect("an unused id");
        assert!(lsa.vectors[unseen * 2..unseen * 2 + 2]
            .iter()
            .all(|&x| x == 0.0));
    }

    /// The randomized SVD's leading singular values are the exact ones
    /// (nalgebra's full SVD of the same dense matrix).
    #[test]
    fn leading_singular_values_match_an_exact_svd() {
        let tok = tokenizer();
        let vocab = tok.get_vocab_size(true);
        let a = tfidf(&tok, &TEXTS, vocab).unwrap();
        let mut dense = DMatrix::<f64>::zeros(a.rows(), vocab);
        for r in 0..a.rows() {
            for k in a.starts[r]..a.starts[r + 1] {
                dense[(r, a.ids[k] as usize)] = a.values[k];
            }
        }
        let mut exact: Vec<f64> = dense
            .svd(false, false)
            .singular_values
            .iter()
            .copied()
            .collect();
        exact.sort_by(|x, y| y.total_cmp(x));
        let lsa = token_vectors(&tok, &TEXTS, vocab, 3, 1).unwrap();
        // Column norms of V Σ are the singular values, up to the common scale.
        let norms: Vec<f64> = (0..3)
            .map(|c| {
                (0..vocab)
                    .map(|t| (lsa.vectors[t * 3 + c] as f64).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        let scale = norms[0] / exact[0];
        for c in 0..3 {
            assert!(
                (norms[c] / scale - exact[c]).abs() < 1e-4 * exact[0],
                "{c}: {} against {}",
                norms[c] / scale,
                exact[c]
            );
        }
    }

    #[test]
    fn a_corpus_smaller_than_the_width_gives_its_rank() {
        let tok = tokenizer();
        let vocab = tok.get_vocab_size(true);
        let lsa = token_vectors(&tok, &TEXTS[..3], vocab, 16, 1).unwrap();
        // Three documents: three directions at most, zero beyond.
        assert!((0..vocab).all(|t| lsa.vectors[t * 16 + 3..(t + 1) * 16]
            .iter()
            .all(|&x| x == 0.0)));
        assert!(lsa.vectors.iter().any(|&x| x != 0.0));
        let none: [&str; 0] = [];
        assert!(token_vectors(&tok, &none, vocab, 16, 1).is_err());
    }
}
