//! Random access to the term frequencies of a corpus's most common terms.
//!
//! A MaxScore search ends by adding its common terms' scores to the few
//! documents still able to reach the top k. Such a term's postings cover
//! much of the corpus, so finding a few hundred documents in them meant
//! decoding and stepping over thousands of postings: on `spar`, most of a
//! search. A row of one byte per document answers each document with one
//! load. Rows are kept for the terms in at least a sixteenth of the
//! documents, most common first, within a budget of half the postings'
//! own size (at least 1 MiB), and made on the first search that needs them.

use rustc_hash::FxHashMap;

use super::postings::{Decoded, Postings};

/// What a row stores for a frequency it cannot hold in a byte: the
/// frequency is then in [`DenseTerms::large`].
const SATURATED: u8 = u8::MAX;

/// Term frequencies by document, one row per common term.
pub(crate) struct DenseTerms {
    /// Each term with a row, by term number.
    rows: FxHashMap<u32, u32>,
    /// Documents in the corpus: the length of a row.
    docs: usize,
    /// The rows, one after the other; 0 where the document lacks the term.
    tfs: Vec<u8>,
    /// Frequencies of [`SATURATED`] or more, by row and document.
    large: FxHashMap<(u32, u32), u32>,
}

impl DenseTerms {
    /// Rows for the most common terms of `postings` over `docs` documents,
    /// within `budget` bytes.
    pub fn build(postings: &Postings, docs: usize, budget: usize) -> DenseTerms {
        let min_df = (docs / 16).max(1);
        let mut terms: Vec<usize> = (0..postings.terms())
            .filter(|&t| postings.df(t) >= min_df)
            .collect();
        terms.sort_by_key(|&t| (std::cmp::Reverse(postings.df(t)), t));
        terms.truncate(budget.checked_div(docs).unwrap_or(0));
        let mut tfs = vec![0u8; terms.len() * docs];
        let mut large = FxHashMap::default();
        let mut out = Decoded::default();
        for (row, &t) in terms.iter().enumerate() {
            let line = &mut tfs[row * docs..(row + 1) * docs];
            for b in postings.blocks(t) {
                postings.decode(t, b, &mut out);
                for (d, tf) in out.iter() {
                    line[d as usize] = match u8::try_from(tf) {
                        Ok(small) if small < SATURATED => small,
                        _ => {
                            large.insert((row as u32, d), tf);
                            SATURATED
                        }
                    };
                }
            }
        }
        DenseTerms {
            rows: (terms.iter().enumerate())
                .map(|(row, &t)| (t as u32, row as u32))
                .collect(),
            docs,
            tfs,
            large,
        }
    }

    /// The row of term `term`, if it has one.
    pub fn row(&self, term: usize) -> Option<Row<'_>> {
        let row = *self.rows.get(&u32::try_from(term).ok()?)?;
        let at = row as usize * self.docs;
        Some(Row {
            row,
            tfs: &self.tfs[at..at + self.docs],
            large: &self.large,
        })
    }

    /// How many terms have a row.
    #[cfg(test)]
    pub fn rows(&self) -> usize {
        self.rows.len()
    }
}

/// One term's frequencies by document.
pub(crate) struct Row<'a> {
    row: u32,
    tfs: &'a [u8],
    large: &'a FxHashMap<(u32, u32), u32>,
}

impl Row<'_> {
    /// The term's frequency in document `doc` (0 when it lacks it).
    #[inline(always)]
    pub fn tf(&self, doc: u32) -> u32 {
        match self.tfs[doc as usize] {
            SATURATED => self.large[&(self.row, doc)],
            tf => u32::from(tf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_give_every_frequency_and_keep_to_the_budget() {
        // Term 0 in every document (one with a frequency past a byte),
        // term 1 in half, term 2 in one: only 0 and 1 are common.
        let docs = 40u32;
        let mut terms: Vec<Vec<(u32, u32)>> = vec![Vec::new(); 3];
        for d in 0..docs {
            terms[0].push((d, if d == 7 { 1000 } else { 1 + d % 3 }));
            if d % 2 == 0 {
                terms[1].push((d, 255 + d));
            }
        }
        terms[2].push((5, 2));
        let mut offsets = vec![0u64];
        let (mut ds, mut fs) = (Vec::new(), Vec::new());
        for t in &terms {
            for &(d, f) in t {
                ds.push(d);
                fs.push(f);
            }
            offsets.push(ds.len() as u64);
        }
        let postings = Postings::compress(&offsets, &ds, &fs);
        let dense = DenseTerms::build(&postings, docs as usize, 1 << 20);
        assert_eq!(dense.rows(), 2);
        assert!(dense.row(2).is_none());
        for (t, list) in terms.iter().enumerate().take(2) {
            let row = dense.row(t).expect("a common term");
            for d in 0..docs {
                let want = list.iter().find(|p| p.0 == d).map_or(0, |p| p.1);
                assert_eq!(row.tf(d), want, "term {t} doc {d}");
            }
        }
        // A budget of one row keeps the most common term.
        let one = DenseTerms::build(&postings, docs as usize, docs as usize);
        assert_eq!(one.rows(), 1);
        assert!(one.row(0).is_some() && one.row(1).is_none());
    }
}
