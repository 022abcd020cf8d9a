//! Lines held until they are written: their own bytes, and long runs
//! borrowed already escaped from [`super::KnownTexts`].
//!
//! Why: a `spar` line carries its query's top-k corpus passages, so the
//! shipped corpus's 5.6 MiB become 278 MiB of lines. Copying each escaped
//! passage into its document's buffer, holding the buffers until the batch
//! is written in order, then copying them again into the writer was a
//! seventh of the task's time. Borrowed, a passage goes from the index to
//! the writer in one vectored write (the output file's `writev`), and a
//! batch held in memory weighs its own bytes only.

use std::io::{self, IoSlice, Write};

/// Borrowed runs shorter than this are copied: a run costs a slice in the
/// vectored write, more than copying a few hundred bytes.
const BORROW_MIN: usize = 256;

/// Slices a vectored write is handed at most (Linux's `IOV_MAX` is 1,024).
const MAX_SLICES: usize = 1024;

/// Lines being made: owned bytes, with borrowed runs between them.
#[derive(Debug, Default, Clone)]
pub struct Lines<'k> {
    own: Vec<u8>,
    /// Each borrowed run and the length of `own` when it was pushed: it
    /// comes after `own[..at]` and before the rest.
    borrowed: Vec<(usize, &'k [u8])>,
}

impl<'k> Lines<'k> {
    /// Empty lines with room for `bytes` of their own.
    pub fn with_capacity(bytes: usize) -> Lines<'k> {
        Lines {
            own: Vec::with_capacity(bytes),
            borrowed: Vec::new(),
        }
    }

    /// The owned bytes, to append to.
    pub(super) fn own(&mut self) -> &mut Vec<u8> {
        &mut self.own
    }

    /// Appends `run`, borrowed when it is long enough to be worth it.
    pub(super) fn push_borrowed(&mut self, run: &'k [u8]) {
        if run.len() < BORROW_MIN {
            self.own.extend_from_slice(run);
        } else {
            self.borrowed.push((self.own.len(), run));
        }
    }

    /// The bytes in order, as runs (none empty).
    pub fn runs(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let at = self.borrowed.iter().map(|&(at, _)| at);
        let starts = std::iter::once(0).chain(at.clone());
        let ends = at.chain(std::iter::once(self.own.len()));
        let own = starts.zip(ends).map(|(a, b)| &self.own[a..b]);
        let borrowed = (self.borrowed.iter().map(|&(_, run)| Some(run))).chain([None]);
        own.zip(borrowed)
            .flat_map(|(own, run)| std::iter::once(own).chain(run))
            .filter(|r| !r.is_empty())
    }

    /// Bytes in all.
    pub fn len(&self) -> usize {
        self.own.len() + self.borrowed.iter().map(|(_, r)| r.len()).sum::<usize>()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, copied into one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.runs().for_each(|r| out.extend_from_slice(r));
        out
    }

    /// Empties the lines, keeping the owned buffer's room.
    pub fn clear(&mut self) {
        self.own.clear();
        self.borrowed.clear();
    }
}

/// Writes `runs` to `out` in order with vectored writes, up to
/// [`MAX_SLICES`] at a time, until every byte is taken.
pub fn write_runs<'r>(
    out: &mut dyn Write,
    runs: impl IntoIterator<Item = &'r [u8]>,
) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'r>> = Vec::with_capacity(MAX_SLICES);
    for run in runs {
        slices.push(IoSlice::new(run));
        if slices.len() == MAX_SLICES {
            write_all_vectored(out, &mut slices)?;
            slices.clear();
        }
    }
    write_all_vectored(out, &mut slices)
}

/// `Write::write_all_vectored`, not yet stable: writes again from where
/// the writer stopped until all is taken.
fn write_all_vectored(out: &mut dyn Write, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match out.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `most` bytes a call, and only from its
    /// first slices, as pipes and sockets may.
    struct Trickle {
        got: Vec<u8>,
        most: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(3) {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let mut taken = 0;
            for b in bufs {
                let n = b.len().min(self.most - taken);
                self.got.extend_from_slice(&b[..n]);
                taken += n;
                if taken == self.most {
                    break;
                }
            }
            Ok(taken)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn runs_keep_their_order_and_short_ones_are_copied() {
        let long = vec![b'x'; BORROW_MIN];
        let short = b"short";
        let mut lines = Lines::default();
        lines.own().extend_from_slice(b"{\"a\":\"");
        lines.push_borrowed(&long);
        lines.push_borrowed(short);
        lines.own().extend_from_slice(b"\"}");
        lines.push_borrowed(&long);
        let mut expected = b"{\"a\":\"".to_vec();
        expected.extend_from_slice(&long);
        expected.extend_from_slice(b"short\"}");
        expected.extend_from_slice(&long);
        assert_eq!(lines.to_vec(), expected);
        assert_eq!(lines.len(), expected.len());
        // The short run was copied into the owned bytes, the long ones not.
        assert_eq!(lines.borrowed.len(), 2);
        assert_eq!(lines.runs().count(), 4);
        lines.clear();
        assert!(lines.is_empty() && lines.runs().next().is_none());
    }

    #[test]
    fn partial_and_interrupted_writes_lose_nothing() {
        let texts: Vec<Vec<u8>> = (0..3000)
            .map(|i| format!("{i:>width$}", width = 1 + i % 700).into_bytes())
            .collect();
        let expected: Vec<u8> = texts.concat();
        for most in [1, 7, 300, 1 << 20] {
            let mut out = Trickle {
                got: Vec::new(),
                most,
                calls: 0,
            };
            write_runs(&mut out, texts.iter().map(|t| t.as_slice())).unwrap();
            assert_eq!(out.got, expected, "at most {most} bytes a write");
        }
        let mut full: &mut [u8] = &mut [0u8; 10];
        let err = write_runs(&mut full, [&b"more than ten bytes"[..]]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
    }
}
