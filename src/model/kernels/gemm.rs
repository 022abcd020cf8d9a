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

/// Checks that `lhs · rhs` is defined and that both views lie inside their
/// buffers.
fn check(lhs: &Mat, rhs: &Mat) -> Result<()> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if rhs.rows != k {
        candle_core::bail!("matmul: ({m}×{k}) · ({}×{n})", rhs.rows);
    }
    let inside = |v: &Mat| {
        v.rows == 0 || v.cols == 0 || last_index(v.rows, v.cols, v.rs, v.cs) < v.data.len()
    };
    if !inside(lhs) || !inside(rhs) {
        candle_core::bail!("matmul: a view runs past its buffer");
    }
    Ok(())
}

/// The one call into `gemm`: `dst = (accumulate ? dst : 0) + scale · lhs · rhs`.
///
/// # Safety
/// `check(lhs, rhs)` passed, and `dst` is valid for writes (and, when
/// `accumulate`, reads) at every `i·dst_rs + j·dst_cs` for `i < m`, `j < n`,
/// and aliases neither input.
unsafe fn run(
    dst: *mut f32,
    (dst_rs, dst_cs): (usize, usize),
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
    scale: f32,
    threads: Threads,
) {
    let parallelism = match threads {
        Threads::One => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(rayon::current_num_threads()),
    };
    // SAFETY: the caller's contract, above.
    unsafe {
        gemm::gemm(
            lhs.rows,
            rhs.cols,
            lhs.cols,
            dst,
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
        )
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
    check(&lhs, &rhs)?;
    let (m, n) = (lhs.rows, rhs.cols);
    if m == 0 || n == 0 {
        return Ok(());
    }
    if last_index(m, n, dst_rs, dst_cs) >= dst.len() {
        candle_core::bail!("matmul: the destination runs past its buffer");
    }
    // SAFETY: inputs checked; every destination index was checked to lie
    // inside `dst`, which is borrowed mutably and so aliases neither input.
    unsafe {
        run(
            dst.as_mut_ptr(),
            (dst_rs, dst_cs),
            lhs,
            rhs,
            accumulate,
            scale,
            threads,
        )
    };
    Ok(())
}

/// A new row-major `(m × n)` matrix `lhs · rhs`, written straight into
/// fresh memory: zero-filling a buffer the product then overwrites was a
/// few percent of encoding time.
pub(super) fn matmul_new(lhs: Mat, rhs: Mat, threads: Threads) -> Result<Vec<f32>> {
    check(&lhs, &rhs)?;
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if k == 0 || m == 0 || n == 0 {
        // The kernel would write nothing: the product is zeros.
        return Ok(vec![0f32; m * n]);
    }
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    // SAFETY: inputs checked; `out` has capacity for the m·n elements at
    // `i·n + j`; with `accumulate = false` the kernel never reads the
    // destination and writes every element of it (m, n, k > 0), so all m·n
    // are initialised before `set_len`.
    unsafe {
        run(out.as_mut_ptr(), (n, 1), lhs, rhs, false, 1.0, threads);
        out.set_len(m * n);
    }
    Ok(out)
}
