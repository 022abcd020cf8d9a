//! Branch-free `exp` and `erfc` for f32, written so that LLVM vectorises
//! loops over them (the standard library calls scalar libm functions, one
//! element at a time, which made GELU and softmax slower than the matrix
//! products around them).

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two (Cody–Waite) so that `x - n·ln2` stays exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding and subtracting 1.5·2²³ rounds to the nearest integer.
const ROUND: f32 = 12_582_912.0;

/// `e^x` with a relative error below 2e-7 (Cephes' polynomial on
/// `[-ln2/2, ln2/2]`); 0 below -87.3, where f32 underflows.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let clamped = x.clamp(-87.3, 88.3);
    let t = clamped * LOG2E + ROUND;
    let n = t - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2ⁿ from n's bits in `t` (its low mantissa bits hold n once ROUND's bits
    // are taken away): integer ops only, since a float-to-int `as` cast
    // saturates and so cannot vectorise.
    let scale = f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23);
    if x < -87.3 {
        0.0
    } else {
        e * scale
    }
}

/// `erfc(|z|)` for `z`: Abramowitz & Stegun 7.1.26, absolute error below
/// 1.5e-7. Computing erfc of the magnitude directly keeps the small tail
/// accurate where `1 - erf` would cancel.
#[inline(always)]
pub fn erfc_abs(z: f32) -> f32 {
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let mut p = 1.061_405_4f32;
    p = p * t - 1.453_152_1;
    p = p * t + 1.421_413_8;
    p = p * t - 0.284_496_74;
    p = p * t + 0.254_829_6;
    p * t * exp(-a * a)
}

/// `Φ(x)`, the standard normal CDF: `0.5·(1 + erf(x/√2))`.
#[inline(always)]
pub fn normal_cdf(x: f32) -> f32 {
    let tail = 0.5 * erfc_abs(x * std::f32::consts::FRAC_1_SQRT_2);
    if x >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// `φ(x)`, the standard normal density.
#[inline(always)]
pub fn normal_pdf(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    INV_SQRT_2PI * exp(-0.5 * x * x)
}

/// Sum of a slice with 16 independent accumulators, so the loop
/// vectorises (a single accumulator forces one add at a time).
#[inline(always)]
pub fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// Dot product with 16 independent accumulators (see [`sum`]).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Largest element (−∞ for an empty slice), vectorisable.
#[inline(always)]
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for i in 0..16 {
            acc[i] = acc[i].max(c[i]);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    acc.iter().fold(tail, |m, &v| m.max(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_to_2e7_relative() {
        let mut worst = 0f32;
        for i in -8700..=8800 {
            let x = i as f32 * 0.01;
            let rel = ((exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 2e-7, "worst relative error {worst}");
        assert_eq!(exp(-1e9), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn normal_cdf_matches_erf_to_3e7() {
        for i in -1000..=1000 {
            let x = i as f64 * 0.01;
            let want = 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2);
            let got = normal_cdf(x as f32) as f64;
            assert!((got - want).abs() < 3e-7, "x={x}: {got} vs {want}");
        }
    }

    #[test]
    fn reductions_match_naive_sums() {
        let xs: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let ys: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let naive_sum: f32 = xs.iter().sum();
        let naive_dot: f32 = xs.iter().zip(&ys).map(|(a, b)| a * b).sum();
        assert!((sum(&xs) - naive_sum).abs() < 1e-5);
        assert!((dot(&xs, &ys) - naive_dot).abs() < 1e-5);
        assert_eq!(max(&xs), xs.iter().cloned().fold(f32::MIN, f32::max));
    }
}
