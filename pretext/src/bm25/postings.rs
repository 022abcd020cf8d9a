//! Postings compressed in blocks of 128, as Lucene stores them: each term's
//! document numbers are delta-coded and bit-packed 128 at a time (the
//! `bitpacking` crate's SIMD `BitPacker4x`, tantivy's codec), its term
//! frequencies (minus one) packed beside them, and the last, shorter block
//! of a term written as variable-length integers (most terms of a large
//! corpus occur a handful of times; a padded block would cost them more
//! than the flat 32-bit arrays this replaced).
//!
//! Each block keeps its last document, so a search can skip to a document
//! without decoding what lies before it, and each term its largest *impact*
//! (the query-independent part of a posting's score), so a search can
//! bound the term's contribution without touching its postings (see
//! `search`).

use bitpacking::{BitPacker, BitPacker4x};
use rayon::prelude::*;

use crate::corpus::FileBytes;

/// Postings per packed block.
pub(crate) const BLOCK: usize = BitPacker4x::BLOCK_LEN;

/// Where the compressed bytes live: built in memory, or inside the mapped
/// index file (never copied).
enum Payload {
    Owned(Vec<u8>),
    Mapped {
        file: FileBytes,
        range: std::ops::Range<usize>,
    },
}

impl std::ops::Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Payload::Owned(v) => v,
            Payload::Mapped { file, range } => &file[range.clone()],
        }
    }
}

/// Every term's postings, in blocks.
pub(crate) struct Postings {
    /// Per term, its first block; one more entry closing the last term.
    term_blocks: Vec<u64>,
    /// Per term, how many documents hold it.
    df: Vec<u32>,
    /// Per block, its last (largest) document number.
    last: Vec<u32>,
    /// Per block, where its bytes start in the payload; one more entry
    /// closing the last block.
    start: Vec<u64>,
    /// Per block, the bit widths of its document deltas and of its term
    /// frequencies (unused by a varint tail block).
    bits: Vec<[u8; 2]>,
    /// Per term, its largest impact, set by [`Postings::check_and_bound`].
    max: Vec<f32>,
    payload: Payload,
}

/// One decoded block: document numbers and term frequencies.
pub(crate) struct Decoded {
    pub docs: [u32; BLOCK],
    pub tfs: [u32; BLOCK],
    pub len: usize,
}

impl Default for Decoded {
    fn default() -> Self {
        Decoded {
            docs: [0; BLOCK],
            tfs: [0; BLOCK],
            len: 0,
        }
    }
}

impl Decoded {
    /// The postings of the block, as (document, term frequency) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.docs[..self.len]
            .iter()
            .copied()
            .zip(self.tfs[..self.len].iter().copied())
    }
}

/// The parts a saved index stores, in its order.
pub(crate) struct Parts<'a> {
    pub term_blocks: &'a [u64],
    pub df: &'a [u32],
    pub last: &'a [u32],
    pub start: &'a [u64],
    pub bits: &'a [[u8; 2]],
    pub payload: &'a [u8],
}

impl Postings {
    /// Compresses postings laid out term by term (`offsets[t]..offsets[t +
    /// 1]` of `docs` and `tfs`, documents ascending within a term), terms
    /// in parallel.
    pub fn compress(offsets: &[u64], docs: &[u32], tfs: &[u32]) -> Postings {
        struct Piece {
            df: Vec<u32>,
            blocks: Vec<u64>,
            last: Vec<u32>,
            sizes: Vec<u64>,
            bits: Vec<[u8; 2]>,
            bytes: Vec<u8>,
        }
        let n_terms = offsets.len().saturating_sub(1);
        let size = (n_terms / (rayon::current_num_threads() * 8)).clamp(256, 65_536);
        let terms: Vec<usize> = (0..n_terms).collect();
        let pieces: Vec<Piece> = terms
            .par_chunks(size)
            .map(|chunk| {
                let packer = BitPacker4x::new();
                let mut p = Piece {
                    df: Vec::with_capacity(chunk.len()),
                    blocks: Vec::with_capacity(chunk.len()),
                    last: Vec::new(),
                    sizes: Vec::new(),
                    bits: Vec::new(),
                    bytes: Vec::new(),
                };
                let mut buf = [0u8; 4 * BLOCK * 2];
                let mut tf1 = [0u32; BLOCK];
                for &t in chunk {
                    let (lo, hi) = (offsets[t] as usize, offsets[t + 1] as usize);
                    p.df.push((hi - lo) as u32);
                    let mut blocks = 0u64;
                    let mut initial = None;
                    for (d, f) in docs[lo..hi].chunks(BLOCK).zip(tfs[lo..hi].chunks(BLOCK)) {
                        let before = p.bytes.len();
                        if d.len() == BLOCK {
                            for (o, &x) in tf1.iter_mut().zip(f) {
                                *o = x - 1;
                            }
                            let db = packer.num_bits_strictly_sorted(initial, d);
                            let tb = packer.num_bits(&tf1);
                            let n = packer.compress_strictly_sorted(initial, d, &mut buf, db);
                            p.bytes.extend_from_slice(&buf[..n]);
                            let n = packer.compress(&tf1, &mut buf, tb);
                            p.bytes.extend_from_slice(&buf[..n]);
                            p.bits.push([db, tb]);
                        } else {
                            let mut prev = initial;
                            for (&doc, &tf) in d.iter().zip(f) {
                                put_varint(&mut p.bytes, prev.map_or(doc, |q| doc - q - 1));
                                put_varint(&mut p.bytes, tf - 1);
                                prev = Some(doc);
                            }
                            p.bits.push([0, 0]);
                        }
                        let last = *d.last().expect("chunks are never empty");
                        p.last.push(last);
                        p.sizes.push((p.bytes.len() - before) as u64);
                        initial = Some(last);
                        blocks += 1;
                    }
                    p.blocks.push(blocks);
                }
                p
            })
            .collect();
        let mut out = Postings {
            term_blocks: vec![0],
            df: Vec::with_capacity(n_terms),
            last: Vec::new(),
            start: vec![0],
            bits: Vec::new(),
            max: Vec::new(),
            payload: Payload::Owned(Vec::new()),
        };
        let mut bytes = Vec::with_capacity(pieces.iter().map(|p| p.bytes.len()).sum());
        for p in pieces {
            for b in p.blocks {
                let at = *out.term_blocks.last().expect("starts with 0");
                out.term_blocks.push(at + b);
            }
            for s in p.sizes {
                let at = *out.start.last().expect("starts with 0");
                out.start.push(at + s);
            }
            out.df.extend(p.df);
            out.last.extend(p.last);
            out.bits.extend(p.bits);
            bytes.extend(p.bytes);
        }
        out.payload = Payload::Owned(bytes);
        out
    }

    /// Postings read back from a saved index whose payload is
    /// `range` of `file`; [`Postings::check_and_bound`] must run before
    /// any search.
    pub fn from_parts(parts: Parts<'_>, file: FileBytes, range: std::ops::Range<usize>) -> Self {
        Postings {
            term_blocks: parts.term_blocks.to_vec(),
            df: parts.df.to_vec(),
            last: parts.last.to_vec(),
            start: parts.start.to_vec(),
            bits: parts.bits.to_vec(),
            max: Vec::new(),
            payload: Payload::Mapped { file, range },
        }
    }

    /// What [`Postings::from_parts`] takes back.
    pub fn parts(&self) -> Parts<'_> {
        Parts {
            term_blocks: &self.term_blocks,
            df: &self.df,
            last: &self.last,
            start: &self.start,
            bits: &self.bits,
            payload: &self.payload,
        }
    }

    /// How many terms there are.
    pub fn terms(&self) -> usize {
        self.df.len()
    }

    /// The size of the compressed postings, in bytes.
    pub fn payload_bytes(&self) -> usize {
        self.payload.len()
    }

    /// Documents holding term `t`.
    pub fn df(&self, t: usize) -> usize {
        self.df[t] as usize
    }

    /// The blocks of term `t`.
    pub fn blocks(&self, t: usize) -> std::ops::Range<usize> {
        self.term_blocks[t] as usize..self.term_blocks[t + 1] as usize
    }

    /// The largest impact of term `t`.
    pub fn term_max(&self, t: usize) -> f32 {
        self.max[t]
    }

    /// Decodes block `b` of term `t` into `out`. The structure was checked
    /// when the postings were built or loaded, so this cannot fail.
    #[inline]
    pub fn decode(&self, t: usize, b: usize, out: &mut Decoded) {
        let ok = self.try_decode(t, b, out);
        debug_assert!(ok, "postings checked at load");
    }

    /// Decodes block `b` of term `t`, or returns false when its bytes do not
    /// hold what the block's metadata says (a broken file).
    fn try_decode(&self, t: usize, b: usize, out: &mut Decoded) -> bool {
        let blocks = self.blocks(t);
        let initial = (b > blocks.start).then(|| self.last[b - 1]);
        let bytes = &self.payload[self.start[b] as usize..self.start[b + 1] as usize];
        let before = (b - blocks.start) * BLOCK;
        let len = (self.df[t] as usize).saturating_sub(before).min(BLOCK);
        out.len = len;
        let [db, tb] = self.bits[b];
        if len == BLOCK {
            let packer = BitPacker4x::new();
            let (dn, tn) = (16 * db as usize, 16 * tb as usize);
            if bytes.len() != dn + tn {
                return false;
            }
            packer.decompress_strictly_sorted(initial, &bytes[..dn], &mut out.docs, db);
            packer.decompress(&bytes[dn..], &mut out.tfs, tb);
            for tf in &mut out.tfs {
                *tf = tf.wrapping_add(1);
            }
            true
        } else {
            let mut at = 0;
            let mut prev = initial;
            for i in 0..len {
                let (Some(delta), Some(tf)) =
                    (get_varint(bytes, &mut at), get_varint(bytes, &mut at))
                else {
                    return false;
                };
                let doc = match prev {
                    None => Some(delta),
                    Some(p) => p.checked_add(delta).and_then(|d| d.checked_add(1)),
                };
                let (Some(doc), Some(tf)) = (doc, tf.checked_add(1)) else {
                    return false;
                };
                out.docs[i] = doc;
                out.tfs[i] = tf;
                prev = Some(doc);
            }
            at == bytes.len()
        }
    }

    /// Checks that the postings hold together (every size consistent, every
    /// block decodable, documents strictly ascending within a term and below
    /// `n_docs`, every block ending at its recorded last document, term
    /// frequencies at least one), then records each term's largest
    /// `impact(tf, doc)`. A broken structure is described, never a panic.
    pub fn check_and_bound(
        &mut self,
        n_docs: usize,
        impact: impl Fn(u32, u32) -> f32 + Sync,
    ) -> Result<(), String> {
        let (n_terms, n_blocks) = (self.df.len(), self.last.len());
        if self.term_blocks.len() != n_terms + 1
            || self.start.len() != n_blocks + 1
            || self.bits.len() != n_blocks
        {
            return Err("inconsistent postings sizes".into());
        }
        if self.term_blocks.first() != Some(&0)
            || self.term_blocks.windows(2).any(|w| w[1] < w[0])
            || self.term_blocks.last().copied() != Some(n_blocks as u64)
        {
            return Err("term blocks out of order or out of range".into());
        }
        if self.start.first() != Some(&0)
            || self.start.windows(2).any(|w| w[1] < w[0])
            || self.start.last().copied() != Some(self.payload.len() as u64)
        {
            return Err("postings offsets out of order or out of range".into());
        }
        if self.bits.iter().any(|&[d, t]| d > 32 || t > 32) {
            return Err("a block's bit width is over 32".into());
        }
        for t in 0..n_terms {
            let df = self.df[t] as usize;
            if df == 0 || self.blocks(t).len() != df.div_ceil(BLOCK) {
                return Err(format!(
                    "term {t}: {df} postings in {} blocks",
                    self.blocks(t).len()
                ));
            }
        }
        if let Some(d) = self.last.iter().find(|&&d| d as usize >= n_docs) {
            return Err(format!("a posting names document {d} of {n_docs}"));
        }
        let this = &*self;
        let max: Vec<f32> = (0..n_terms)
            .into_par_iter()
            .with_min_len(1024)
            .map(|t| {
                let mut out = Decoded::default();
                let mut prev: Option<u32> = None;
                let mut m = 0f32;
                for b in this.blocks(t) {
                    if !this.try_decode(t, b, &mut out) {
                        return Err(format!("term {t}: block {b} does not decode"));
                    }
                    let (docs, tfs) = (&out.docs[..out.len], &out.tfs[..out.len]);
                    let ordered = prev.is_none_or(|p| docs[0] > p)
                        && docs.windows(2).all(|w| w[0] < w[1])
                        && docs[docs.len() - 1] == this.last[b];
                    if !ordered || tfs.contains(&0) {
                        return Err(format!(
                            "term {t}: block {b} holds documents out of order or off its last one"
                        ));
                    }
                    prev = Some(this.last[b]);
                    // A plain comparison, not `f32::max` (whose NaN rule
                    // made this loop most of an index's load time).
                    for (&doc, &tf) in docs.iter().zip(tfs) {
                        let x = impact(tf, doc);
                        m = if x > m { x } else { m };
                    }
                }
                Ok(m)
            })
            .collect::<Result<_, String>>()?;
        self.max = max;
        Ok(())
    }
}

fn put_varint(out: &mut Vec<u8>, mut x: u32) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u32> {
    let mut x = 0u32;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        x |= u32::from(b & 0x7f).checked_shl(shift)?;
        if b < 0x80 {
            return (shift < 28 || b < 0x10).then_some(x);
        }
    }
    None
}

/// Walks one term's postings forward to given documents, decoding only the
/// blocks it lands in.
pub(crate) struct Cursor<'p> {
    postings: &'p Postings,
    term: usize,
    block: usize,
    end: usize,
    decoded: usize,
    pos: usize,
    out: Decoded,
}

impl<'p> Cursor<'p> {
    pub fn new(postings: &'p Postings, term: usize) -> Cursor<'p> {
        let blocks = postings.blocks(term);
        Cursor {
            postings,
            term,
            block: blocks.start,
            end: blocks.end,
            decoded: usize::MAX,
            pos: 0,
            out: Decoded::default(),
        }
    }

    /// The term frequency of `doc` in this term, if it holds it. Calls must
    /// ask for ascending documents.
    #[inline]
    pub fn tf(&mut self, doc: u32) -> Option<u32> {
        let p = self.postings;
        while self.block < self.end && p.last[self.block] < doc {
            self.block += 1;
        }
        if self.block == self.end {
            return None;
        }
        if self.decoded != self.block {
            p.decode(self.term, self.block, &mut self.out);
            self.decoded = self.block;
            self.pos = 0;
        }
        let docs = &self.out.docs[..self.out.len];
        while self.pos < docs.len() && docs[self.pos] < doc {
            self.pos += 1;
        }
        (docs.get(self.pos) == Some(&doc)).then(|| self.out.tfs[self.pos])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(terms: &[Vec<(u32, u32)>]) -> (Vec<u64>, Vec<u32>, Vec<u32>) {
        let mut offsets = vec![0u64];
        let (mut docs, mut tfs) = (Vec::new(), Vec::new());
        for t in terms {
            for &(d, f) in t {
                docs.push(d);
                tfs.push(f);
            }
            offsets.push(docs.len() as u64);
        }
        (offsets, docs, tfs)
    }

    #[test]
    fn blocks_round_trip_and_cursors_find_documents() {
        // A term in two full blocks and a tail, one in a single tail, one
        // exactly one block long; large gaps and term frequencies.
        let big: Vec<(u32, u32)> = (0..300).map(|i| (i * 7 + 3, 1 + i % 5)).collect();
        let one = vec![(999_999, 70_000)];
        let full: Vec<(u32, u32)> = (0..128).map(|i| (i * 1000, 1)).collect();
        let terms = vec![big.clone(), one.clone(), full.clone()];
        let (offsets, docs, tfs) = layout(&terms);
        let mut p = Postings::compress(&offsets, &docs, &tfs);
        p.check_and_bound(1_000_000, |tf, _| tf as f32).unwrap();
        assert_eq!(p.df.len(), 3);
        for (t, want) in terms.iter().enumerate() {
            let mut got = Vec::new();
            let mut out = Decoded::default();
            for b in p.blocks(t) {
                p.decode(t, b, &mut out);
                got.extend(out.iter());
            }
            assert_eq!(&got, want, "term {t}");
            let m = want.iter().map(|&(_, f)| f).max().unwrap() as f32;
            assert_eq!(p.term_max(t), m);
        }
        assert_eq!(p.blocks(0).len(), 3);
        let mut c = Cursor::new(&p, 0);
        assert_eq!(c.tf(0), None);
        assert_eq!(c.tf(3), Some(1));
        assert_eq!(c.tf(4), None);
        assert_eq!(c.tf(7 * 201 + 3), Some(1 + 201 % 5));
        assert_eq!(c.tf(7 * 299 + 3), Some(1 + 299 % 5));
        assert_eq!(c.tf(7 * 299 + 4), None);
        let mut c = Cursor::new(&p, 1);
        assert_eq!(c.tf(999_999), Some(70_000));
    }

    #[test]
    fn broken_structures_are_described() {
        let terms = vec![(0..200).map(|i| (i * 2, 1)).collect::<Vec<_>>()];
        let (offsets, docs, tfs) = layout(&terms);
        let p = Postings::compress(&offsets, &docs, &tfs);
        let parts = p.parts();
        let mut bytes = parts.payload.to_vec();
        // Too few documents for the postings.
        let mut q = Postings::compress(&offsets, &docs, &tfs);
        assert!(q
            .check_and_bound(100, |_, _| 1.0)
            .unwrap_err()
            .contains("document"));
        // A tail whose varints run past its bytes.
        let tail = *parts.start.last().unwrap() as usize - 1;
        bytes[tail] |= 0x80;
        let mut q = Postings {
            payload: Payload::Owned(bytes),
            ..Postings::compress(&offsets, &docs, &tfs)
        };
        assert!(q.check_and_bound(1000, |_, _| 1.0).is_err());
    }

    #[test]
    fn varints_refuse_overlong_input() {
        let mut v = Vec::new();
        for x in [0, 1, 127, 128, 300, u32::MAX] {
            v.clear();
            put_varint(&mut v, x);
            let mut at = 0;
            assert_eq!(get_varint(&v, &mut at), Some(x));
            assert_eq!(at, v.len());
        }
        let mut at = 0;
        assert_eq!(get_varint(&[0xff, 0xff, 0xff, 0xff, 0x7f], &mut at), None);
        let mut at = 0;
        assert_eq!(get_varint(&[0x80], &mut at), None);
    }
}
