//! int8 dense layers for inference (`--int8`): each weight row quantised
//! once to 8 bits (symmetric, its own scale), each input row quantised the
//! same way at every call, and their products summed exactly in 32-bit
//! integers before one rescale back to f32.
//!
//! Why: dense layers are most of an encoder's time, and an 8-bit product
//! does four times the multiply-adds per instruction that an f32 one does
//! (AVX-512 VNNI's `vpdpbusd`: 64 per instruction against an FMA's 16).
//! The cost is a rounding of every weight and activation to 1/127 of its
//! row's largest magnitude; what that costs in retrieval quality is
//! measured (docs/performance.md), not assumed.
//!
//! The integer sums are exact on every path (AVX-512 VNNI, AVX2 and the
//! baseline loops), so all three give the same bits; the tests force each
//! one the CPU has and compare them.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, rows_per_task};

/// Output columns per packed panel: three 16-lane AVX-512 registers.
const NR: usize = 48;
/// Input rows per block of the product.
const MR: usize = 8;
/// Bytes of one packed panel per group of four inputs.
const GROUP: usize = NR * 4;

/// The instructions an int8 product runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 with VNNI (`vpdpbusd`).
    Vnni512,
    /// AVX2 (`vpmaddubsw` on sign-folded operands, which cannot saturate
    /// with both sides in −127..=127).
    Avx2,
    /// Plain loops, any CPU.
    Baseline,
}

impl Isa {
    /// The best this CPU has, within [`super::simd::level`] (so
    /// `PRETEXT_SIMD` forces these paths as it does the other kernels').
    pub fn detect() -> Isa {
        use super::simd::Level;
        let allowed = |isa: Isa| match isa {
            Isa::Vnni512 => super::simd::level() >= Level::Avx512,
            Isa::Avx2 => super::simd::level() >= Level::Avx2,
            Isa::Baseline => true,
        };
        [Isa::Vnni512, Isa::Avx2]
            .into_iter()
            .find(|&isa| allowed(isa) && isa.supported())
            .unwrap_or(Isa::Baseline)
    }

    /// Whether this CPU can run `self`.
    pub fn supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Vnni512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Vnni512 | Isa::Avx2 => false,
            Isa::Baseline => true,
        }
    }
}

/// What runs on each output after the rescale and bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Nothing.
    Identity,
    /// The exact (erf) GELU, as BERT's feed-forward block.
    Gelu,
}

/// A dense layer `y = x·Wᵀ + b` with `W` in int8, packed for the product.
#[derive(Debug)]
pub struct Int8Linear {
    /// Outputs (`W`'s rows).
    n: usize,
    /// Inputs (`W`'s columns).
    k: usize,
    /// `k` rounded up to a multiple of 4 (the products take four at a time).
    kp: usize,
    /// Panels of [`NR`] outputs: for each group of four inputs, each
    /// output's four weights side by side (zero past `n` and `k`).
    packed: Vec<i8>,
    /// Each output's scale (`max |w| / 127`), zero past `n`.
    scale: Vec<f32>,
    /// 128 × each output's sum of quantised weights: VNNI multiplies
    /// unsigned activations, stored as `q + 128`, so its sums carry this
    /// much extra.
    offset: Vec<i32>,
    /// The bias (zero where the layer has none), padded like `scale`.
    bias: Vec<f32>,
}

/// Rounds each value of `row` to `q = round(v / s)` in −127..=127 with
/// `s = max |v| / 127`, writing `q` to `out`; returns `s`, NaN when the row
/// holds a NaN or an infinity (so the product gives NaN, as f32's would).
fn quantize_row(row: &[f32], out: &mut [i8]) -> f32 {
    let (max, finite) = abs_max(row);
    if max == 0.0 || !finite {
        out.fill(0);
        return if finite { 0.0 } else { f32::NAN };
    }
    round_row(row, 127.0 / max, out);
    max / 127.0
}

simd_kernel! {
    /// The largest magnitude in `xs`, and whether every value is finite.
    fn abs_max(xs: &[f32]) -> (f32, bool) {
        // Sixteen lanes, so the loop vectorises; `v · 0` is NaN exactly
        // when `v` is not finite (max ignores NaN).
        let (mut m, mut z) = ([0f32; 16], [0f32; 16]);
        let chunks = xs.chunks_exact(16);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..16 {
                m[i] = m[i].max(c[i].abs());
                z[i] += c[i] * 0.0;
            }
        }
        for (i, &v) in rest.iter().enumerate() {
            m[i] = m[i].max(v.abs());
            z[i] += v * 0.0;
        }
        (m.iter().fold(0f32, |a, &b| a.max(b)), z.iter().all(|v| *v == 0.0))
    }
}

/// 1.5 · 2²³: added to a float of magnitude below 2²², it leaves the value
/// rounded to the nearest integer (ties to even, the FPU's mode) in the
/// low bits of the mantissa.
const ROUNDER: f32 = 12_582_912.0;

simd_kernel! {
    /// `out = round(row · inv)`, each `|row · inv| ≤ 127` (the caller's
    /// scale): the rounding by [`ROUNDER`], in integer lanes, because
    /// `round` then a saturating cast to `i8` vectorises poorly.
    fn round_row(row: &[f32], inv: f32, out: &mut [i8]) {
        for (q, &v) in out.iter_mut().zip(row) {
            *q = ((v * inv + ROUNDER).to_bits() as i32 - ROUNDER.to_bits() as i32) as i8;
        }
    }
}

simd_kernel! {
    /// `out = acc · sa · scale + bias`: a block's integer sums back to f32.
    fn dequantize(acc: &[i32], scale: &[f32], sa: f32, bias: &[f32], out: &mut [f32]) {
        for (((y, &a), &s), &b) in out.iter_mut().zip(acc).zip(scale).zip(bias) {
            *y = a as f32 * (sa * s) + b;
        }
    }
}

impl Int8Linear {
    /// Quantises `weight` (`(n, k)`, f32) and keeps `bias` (`(n,)`).
    pub fn new(weight: &Tensor, bias: Option<&Tensor>) -> Result<Int8Linear> {
        let (n, k) = weight.dims2()?;
        if n == 0 || k == 0 {
            candle_core::bail!("int8 linear: an empty weight ({n}×{k})");
        }
        let w: Vec<f32> = weight.flatten_all()?.to_vec1()?;
        let kp = k.div_ceil(4) * 4;
        let panels = n.div_ceil(NR);
        let mut packed = vec![0i8; panels * (kp / 4) * GROUP];
        let mut scale = vec![0f32; panels * NR];
        let mut offset = vec![0i32; panels * NR];
        let mut q = vec![0i8; k];
        for (col, row) in w.chunks_exact(k).enumerate() {
            scale[col] = quantize_row(row, &mut q);
            offset[col] = 128 * q.iter().map(|&v| v as i32).sum::<i32>();
            let (p, c) = (col / NR, col % NR);
            for (i, &v) in q.iter().enumerate() {
                packed[(p * (kp / 4) + i / 4) * GROUP + c * 4 + i % 4] = v;
            }
        }
        let mut bias = match bias {
            Some(b) => b.to_vec1::<f32>()?,
            None => vec![0f32; n],
        };
        if bias.len() != n {
            candle_core::bail!("int8 linear: a bias of another width than the weight's {n} rows");
        }
        bias.resize(panels * NR, 0.0);
        Ok(Int8Linear {
            n,
            k,
            kp,
            packed,
            scale,
            offset,
            bias,
        })
    }

    /// `act(x·Wᵀ + b)` for `x` of shape `(…, k)` on the CPU in f32.
    pub fn forward(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(&Op {
            layer: self,
            act,
            isa: Isa::detect(),
        })
    }

    /// The product on the rows of `x` (`rows × k`), with the given
    /// instructions (which the CPU must have).
    fn run(&self, x: &[f32], act: Activation, isa: Isa) -> Vec<f32> {
        assert!(isa.supported(), "int8 linear: {isa:?} is not available");
        let (n, k, kp) = (self.n, self.k, self.kp);
        let rows = x.len() / k;
        let per_task = rows_per_task(rows, n.max(k)).div_ceil(MR) * MR;
        let mut out = vec![0f32; rows * n];
        out.par_chunks_mut(per_task * n)
            .zip(x.par_chunks(per_task * k))
            .for_each(|(out, x)| {
                let rows = x.len() / k;
                let mut qa = vec![0i8; rows * kp];
                let scales: Vec<f32> = x
                    .chunks_exact(k)
                    .zip(qa.chunks_exact_mut(kp))
                    .map(|(row, q)| quantize_row(row, &mut q[..k]))
                    .collect();
                let panel_len = (kp / 4) * GROUP;
                for r0 in (0..rows).step_by(MR) {
                    let r = MR.min(rows - r0);
                    let a = &qa[r0 * kp..(r0 + r) * kp];
                    for (p, w) in self.packed.chunks_exact(panel_len).enumerate() {
                        let mut acc = [[0i32; NR]; MR];
                        let offset: &[i32; NR] = self.offset[p * NR..][..NR]
                            .try_into()
                            .expect("a panel's offsets");
                        block(isa, a, r, kp, w, offset, &mut acc);
                        let cols = NR.min(n - p * NR);
                        let (scale, bias) = (&self.scale[p * NR..], &self.bias[p * NR..]);
                        for (i, acc) in acc.iter().take(r).enumerate() {
                            let y = &mut out[(r0 + i) * n + p * NR..][..cols];
                            dequantize(&acc[..cols], scale, scales[r0 + i], bias, y);
                        }
                    }
                }
                if act == Activation::Gelu {
                    super::gelu::in_place(out);
                }
            });
        out
    }
}

/// `acc[i][c] = Σ_j a[i][j] · w[j][c]` over `rows` rows of `a` (each `kp`
/// quantised inputs) and one packed panel `w`, exactly.
fn block(
    isa: Isa,
    a: &[i8],
    rows: usize,
    kp: usize,
    w: &[i8],
    offset: &[i32; NR],
    acc: &mut [[i32; NR]; MR],
) {
    debug_assert!(a.len() >= rows * kp && w.len() >= kp / 4 * GROUP && rows <= MR);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `run` checked that the CPU has these instructions; the
        // slices hold what the kernel reads (asserted above, built so).
        Isa::Vnni512 => unsafe { x86::vnni(a, rows, kp, w, offset, acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::avx2(a, rows, kp, w, acc) },
        _ => baseline(a, rows, kp, w, acc),
    }
}

/// The reference: plain loops.
fn baseline(a: &[i8], rows: usize, kp: usize, w: &[i8], acc: &mut [[i32; NR]; MR]) {
    for (row, acc) in a.chunks_exact(kp).take(rows).zip(acc.iter_mut()) {
        for (g, wg) in w.chunks_exact(GROUP).take(kp / 4).enumerate() {
            let ag = &row[g * 4..g * 4 + 4];
            for (c, wc) in wg.chunks_exact(4).enumerate() {
                acc[c] += ag
                    .iter()
                    .zip(wc)
                    .map(|(&x, &y)| x as i32 * y as i32)
                    .sum::<i32>();
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{GROUP, MR, NR};

    /// Dispatches `rows` (≤ [`MR`]) to the kernel compiled for that count,
    /// so each keeps its accumulators in registers.
    macro_rules! by_rows {
        ($rows:expr, $kernel:ident, $($arg:expr),*) => {
            match $rows {
                1 => $kernel::<1>($($arg),*),
                2 => $kernel::<2>($($arg),*),
                3 => $kernel::<3>($($arg),*),
                4 => $kernel::<4>($($arg),*),
                5 => $kernel::<5>($($arg),*),
                6 => $kernel::<6>($($arg),*),
                7 => $kernel::<7>($($arg),*),
                _ => $kernel::<8>($($arg),*),
            }
        };
    }

    /// AVX-512 VNNI: 8 rows × 48 columns of accumulators (24 registers).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn vnni(
        a: &[i8],
        rows: usize,
        kp: usize,
        w: &[i8],
        offset: &[i32; NR],
        acc: &mut [[i32; NR]; MR],
    ) {
        by_rows!(rows, vnni_rows, a, kp, w, offset, acc)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn vnni_rows<const R: usize>(
        a: &[i8],
        kp: usize,
        w: &[i8],
        offset: &[i32; NR],
        acc: &mut [[i32; NR]; MR],
    ) {
        let mut c = [[_mm512_setzero_si512(); 3]; R];
        // `q ^ 0x80` is `q + 128` as an unsigned byte: vpdpbusd multiplies
        // unsigned by signed bytes.
        let flip = _mm512_set1_epi8(-128);
        let (ap, wp) = (a.as_ptr(), w.as_ptr());
        for g in 0..kp / 4 {
            // SAFETY: `w` holds `kp / 4` groups of GROUP bytes and `a`
            // holds `R` rows of `kp` bytes (the caller's contract).
            let (w0, w1, w2, inputs) = unsafe {
                let wg = wp.add(g * GROUP);
                let mut inputs = [0i32; R];
                for (r, v) in inputs.iter_mut().enumerate() {
                    *v = (ap.add(r * kp + g * 4) as *const i32).read_unaligned();
                }
                (
                    _mm512_loadu_si512(wg as *const _),
                    _mm512_loadu_si512(wg.add(64) as *const _),
                    _mm512_loadu_si512(wg.add(128) as *const _),
                    inputs,
                )
            };
            for (c, &v) in c.iter_mut().zip(&inputs) {
                let x = _mm512_xor_si512(_mm512_set1_epi32(v), flip);
                c[0] = _mm512_dpbusd_epi32(c[0], x, w0);
                c[1] = _mm512_dpbusd_epi32(c[1], x, w1);
                c[2] = _mm512_dpbusd_epi32(c[2], x, w2);
            }
        }
        for (c, out) in c.iter().zip(acc.iter_mut()) {
            for (j, &v) in c.iter().enumerate() {
                // SAFETY: `offset` and each row of `acc` hold NR = 48 values.
                unsafe {
                    let off = _mm512_loadu_si512(offset.as_ptr().add(16 * j) as *const _);
                    _mm512_storeu_si512(
                        out.as_mut_ptr().add(16 * j) as *mut _,
                        _mm512_sub_epi32(v, off),
                    );
                }
            }
        }
    }

    /// AVX2: the panel 16 columns at a time, with up to 4 rows × 16
    /// columns of accumulators (8 of the 16 registers).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2(
        a: &[i8],
        rows: usize,
        kp: usize,
        w: &[i8],
        acc: &mut [[i32; NR]; MR],
    ) {
        let mut r0 = 0;
        while r0 < rows {
            let r = 4.min(rows - r0);
            let (a, acc) = (&a[r0 * kp..], &mut acc[r0..]);
            match r {
                1 => avx2_rows::<1>(a, kp, w, acc),
                2 => avx2_rows::<2>(a, kp, w, acc),
                3 => avx2_rows::<3>(a, kp, w, acc),
                _ => avx2_rows::<4>(a, kp, w, acc),
            }
            r0 += r;
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn avx2_rows<const R: usize>(a: &[i8], kp: usize, w: &[i8], acc: &mut [[i32; NR]]) {
        let ones = _mm256_set1_epi16(1);
        let (ap, wp) = (a.as_ptr(), w.as_ptr());
        for s in 0..3 {
            let mut c = [[_mm256_setzero_si256(); 2]; R];
            for g in 0..kp / 4 {
                // SAFETY: as in `vnni_rows`; a sub-panel is 64 of a group's
                // GROUP bytes.
                let (w0, w1, inputs) = unsafe {
                    let wg = wp.add(g * GROUP + s * 64);
                    let mut inputs = [0i32; R];
                    for (r, v) in inputs.iter_mut().enumerate() {
                        *v = (ap.add(r * kp + g * 4) as *const i32).read_unaligned();
                    }
                    (
                        _mm256_loadu_si256(wg as *const __m256i),
                        _mm256_loadu_si256(wg.add(32) as *const __m256i),
                        inputs,
                    )
                };
                for (c, &v) in c.iter_mut().zip(&inputs) {
                    // a·w = |a| · (w with a's sign): unsigned by signed, as
                    // vpmaddubsw takes them; pairs of products stay within
                    // i16 (2 · 127 · 127 < 32768), then vpmaddwd sums pairs.
                    let x = _mm256_set1_epi32(v);
                    let ax = _mm256_abs_epi8(x);
                    let p0 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w0, x));
                    let p1 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w1, x));
                    c[0] = _mm256_add_epi32(c[0], _mm256_madd_epi16(p0, ones));
                    c[1] = _mm256_add_epi32(c[1], _mm256_madd_epi16(p1, ones));
                }
            }
            for (c, out) in c.iter().zip(acc.iter_mut()) {
                for (j, &v) in c.iter().enumerate() {
                    // SAFETY: each row of `acc` holds NR = 48 values and
                    // `s * 16 + j * 8 + 8 <= 48`.
                    unsafe {
                        _mm256_storeu_si256(out.as_mut_ptr().add(s * 16 + j * 8) as *mut __m256i, v)
                    };
                }
            }
        }
    }
}

/// The custom op: `layer` on the input rows.
struct Op<'a> {
    layer: &'a Int8Linear,
    act: Activation,
    isa: Isa,
}

impl CustomOp1 for Op<'_> {
    fn name(&self) -> &'static str {
        "int8-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, "int8 linear")?;
        let dims = layout.dims();
        if dims.last() != Some(&self.layer.k) {
            candle_core::bail!(
                "int8 linear: input {:?} for a layer of {} inputs",
                dims,
                self.layer.k
            );
        }
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("a last dimension") = self.layer.n;
        let out = self.layer.run(x, self.act, self.isa);
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{max_diff, randn};
    use super::*;

    /// Every path the CPU has gives the baseline loops' bits, on shapes
    /// with row, column and input tails (k not a multiple of 4, n not of
    /// 48, rows not of 8).
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        for &(rows, n, k) in &[
            (1, 1, 1),
            (13, 50, 7),
            (37, 96, 384),
            (9, 1536, 384),
            (70, 47, 130),
        ] {
            let w = randn(&[n, k], 1);
            let b = randn(&[n], 2);
            let layer = Int8Linear::new(&w, Some(&b)).unwrap();
            let x: Vec<f32> = randn(&[rows * k], 3).to_vec1().unwrap();
            for act in [Activation::Identity, Activation::Gelu] {
                let want = layer.run(&x, act, Isa::Baseline);
                for isa in [Isa::Vnni512, Isa::Avx2] {
                    if !isa.supported() {
                        eprintln!("skipping {isa:?}: this CPU does not have it");
                        continue;
                    }
                    let got = layer.run(&x, act, isa);
                    assert_eq!(got, want, "{isa:?} on {rows}×{k} · {k}×{n}");
                }
            }
        }
    }

    /// The quantised product is close to the f32 one: within a few
    /// roundings of 1/127 of each row's scale.
    #[test]
    fn close_to_the_f32_product() {
        let (rows, n, k) = (33, 100, 384);
        let w = randn(&[n, k], 4);
        let b = randn(&[n], 5);
        let x = randn(&[rows, k], 6);
        let layer = Int8Linear::new(&w, Some(&b)).unwrap();
        for act in [Activation::Identity, Activation::Gelu] {
            let got = layer.forward(&x, act).unwrap();
            let mut want = x
                .matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&b)
                .unwrap();
            if act == Activation::Gelu {
                want = want.gelu_erf().unwrap();
            }
            let err = max_diff(&got, &want);
            let scale: f32 = want.abs().unwrap().mean_all().unwrap().to_scalar().unwrap();
            // Inputs and weights uniform in ±2 over 384 terms: the sums are
            // about ±25, and each term's two roundings (up to 1/254 of its
            // row's largest value) add up, with random signs, to ~0.2.
            assert!(
                err < 0.05 * scale.max(1.0),
                "max error {err} at mean |y| {scale}"
            );
            assert!(err > 0.0, "a product that rounds nothing is not quantised");
        }
    }

    /// The rounding trick rounds as `round_ties_even` does, over the
    /// whole range a scaled value takes.
    #[test]
    fn rounds_to_nearest_even() {
        let row: Vec<f32> = (-1270..=1270)
            .map(|i| i as f32 / 10.0)
            .chain([-127.0, 126.5, 0.5, -0.5, 1.5])
            .collect();
        let mut out = vec![0i8; row.len()];
        round_row(&row, 1.0, &mut out);
        for (&v, &q) in row.iter().zip(&out) {
            assert_eq!(q as f32, v.round_ties_even(), "{v}");
        }
    }

    /// Zero and non-finite rows: a zero row gives the bias; a row with a
    /// NaN or infinity gives NaN (as the f32 product would), not a panic.
    #[test]
    fn zero_and_non_finite_rows() {
        let (n, k) = (5, 8);
        let w = randn(&[n, k], 7);
        let b = randn(&[n], 8);
        let layer = Int8Linear::new(&w, Some(&b)).unwrap();
        let mut x = vec![0f32; 2 * k];
        x[k] = f32::INFINITY;
        let y = layer.run(&x, Activation::Identity, Isa::detect());
        assert_eq!(&y[..n], &b.to_vec1::<f32>().unwrap()[..]);
        assert!(y[n..].iter().all(|v| v.is_nan()));
    }
}
