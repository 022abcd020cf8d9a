//! A safe, checked front to the `gemm` crate (the matrix-product kernels
//! candle's CPU backend uses), for fused ops that need products with
//! strides candle's `matmul` would first copy into place, or that add into
//! an existing buffer.

use candle_core::Result;

/// A read-only strided matrix: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Mat<'a> {
        Mat {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose (a view, no copy).
    pub fn t(self) -> Mat<'a> {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// How many threads one product may use.
#[derive(Clone, Copy)]
pub(super) enum Threads {
    /// The calling thread only (the caller parallelises over products).
    One,
    /// Rayon's pool.
    All,
}

fn last_index(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs
    }
}

/// `dst = (accumulate ? dst : 0) + scale · lhs · rhs`, `dst` strided by
/// `(dst_rs, dst_cs)`. Shapes and bounds are checked; an inconsistent call
/// is an error, never an out-of-bounds access.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    dst: &mut [f32],
    dst_rs: usize,
    dst_cs: usize,
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
    scale: f32,
    threads: Threads,
) -> Result<()> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if rhs.rows != k {
        candle_core::bail!("matmul: ({m}×{k}) · ({}×{n})", rhs.rows);
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let fits = |len: usize, rows, cols, rs, cs| last_index(rows, cols, rs, cs) < len;
    if !fits(dst.len(), m, n, dst_rs, dst_cs)
        || (k > 0 && !fits(lhs.data.len(), m, k, lhs.rs, lhs.cs))
        || (k > 0 && !fits(rhs.data.len(), k, n, rhs.rs, rhs.cs))
    {
        candle_core::bail!("matmul: a view runs past its buffer");
    }
    let parallelism = match threads {
        Threads::One => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(rayon::current_num_threads()),
    };
    // SAFETY: every index the product touches, `(i·rs + j·cs)` for i, j
    // within the shapes, was checked above to lie inside its slice; `dst`
    // is borrowed mutably and cannot alias the shared `lhs`/`rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

/// A new row-major `(m × n)` matrix `lhs · rhs`, written straight into
/// fresh memory: zero-filling a buffer the product then overwrites was a
/// few percent of encoding time.
pub(super) fn matmul_new(lhs: Mat, rhs: Mat, threads: Threads) -> Result<Vec<f32>> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if k == 0 || m == 0 || n == 0 || rhs.rows != k {
        // Nothing for the kernel to write (or a shape error `matmul` names).
        let mut out = vec![0f32; m * n];
        matmul(&mut out, n, 1, lhs, rhs, false, 1.0, threads)?;
        return Ok(out);
    }
    let fits = |len: usize, rows, cols, rs, cs| last_index(rows, cols, rs, cs) < len;
    if !fits(lhs.data.len(), m, k, lhs.rs, lhs.cs) || !fits(rhs.data.len(), k, n, rhs.rs, rhs.cs) {
        candle_core::bail!("matmul: a view runs past its buffer");
    }
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    let parallelism = match threads {
        Threads::One => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(rayon::current_num_threads()),
    };
    // SAFETY: the inputs' indices were checked above; `out` has capacity
    // for the m·n elements written at `i·n + j`; with `read_dst = false` the
    // kernel never reads the destination and writes every one of its
    // elements (m, n, k > 0), so all m·n are initialised before `set_len`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
        out.set_len(m * n);
    }
    Ok(out)
}
