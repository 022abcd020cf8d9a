//! Each fused kernel against the same function composed from candle's
//! primitive ops: values and every input's gradient.

use candle_core::{Device, Tensor, Var};

use super::{gelu, layer_norm, softmax};

pub(super) fn randn(shape: &[usize], seed: u64) -> Tensor {
    // A fixed pseudo-random fill, so failures reproduce.
    let n: usize = shape.iter().product();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

pub(super) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Runs `f` on variables made from `inputs`, weights the output by a fixed
/// random tensor, and returns the output and each input's gradient.
fn value_and_grads(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Tensor) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let out = f(&tensors);
    let weights = randn(out.dims(), 99);
    let grads = (&out * &weights)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = tensors
        .iter()
        .map(|t| grads.get(t).expect("a gradient for every input").clone())
        .collect();
    (out, g)
}

fn assert_same(
    name: &str,
    inputs: &[Tensor],
    fused: impl Fn(&[Tensor]) -> Tensor,
    composed: impl Fn(&[Tensor]) -> Tensor,
    grads_of: usize,
) {
    let (a, ga) = value_and_grads(inputs, fused);
    let (b, gb) = value_and_grads(inputs, composed);
    assert_eq!(a.dims(), b.dims());
    let d = max_diff(&a, &b);
    assert!(d < 2e-5, "{name}: values differ by {d}");
    for (i, (x, y)) in ga.iter().zip(&gb).take(grads_of).enumerate() {
        assert_eq!(x.dims(), y.dims(), "{name}: gradient {i} shape");
        let d = max_diff(x, y);
        let scale = y
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            d < 2e-5 * scale.max(1.0),
            "{name}: gradient {i} differs by {d}"
        );
    }
}

#[test]
fn layer_norm_matches_composed_ops() {
    // Widths below, at and above the 16-lane reduction chunks.
    for (rows, width) in [(3, 5), (64, 16), (37, 384)] {
        let x = randn(&[rows, width], 1);
        let gamma = randn(&[width], 2).affine(0.3, 1.0).unwrap();
        let beta = randn(&[width], 3);
        assert_same(
            "layer norm",
            &[x.reshape((1, rows, width)).unwrap(), gamma, beta],
            |t| layer_norm::layer_norm(&t[0], &t[1], &t[2], 1e-12).unwrap(),
            |t| layer_norm::composed(&t[0], &t[1], &t[2], 1e-12).unwrap(),
            3,
        );
    }
}

#[test]
fn softmax_rows_match_composed_ops_and_zero_the_padding() {
    let (rows, keys, pad) = (7, 40, 13);
    let scores = randn(&[1, 1, rows, keys], 4);
    let mut bias = vec![0f32; keys];
    bias[keys - pad..].iter_mut().for_each(|b| *b = -1e9);
    let bias_t = Tensor::from_vec(bias.clone(), (1, 1, 1, keys), &Device::Cpu).unwrap();
    let mut probs = scores.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    softmax::rows_in_place(&mut probs, &bias);
    let want = softmax::composed(&scores, &bias_t).unwrap();
    let got = Tensor::from_vec(probs.clone(), (1, 1, rows, keys), &Device::Cpu).unwrap();
    assert!(max_diff(&got, &want) < 2e-6);
    for row in probs.chunks(keys) {
        assert!(
            row[keys - pad..].iter().all(|&p| p == 0.0),
            "padding attended"
        );
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // Backward: probs · (g - Σ g·probs) per row, against candle's autograd.
    let g = randn(&[1, 1, rows, keys], 5);
    let mut dx = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    softmax::grad_rows_in_place(&probs, &mut dx, keys);
    let v = Var::from_tensor(&scores).unwrap();
    let grads = (softmax::composed(v.as_tensor(), &bias_t).unwrap() * &g)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let want = grads.get(v.as_tensor()).unwrap();
    let got = Tensor::from_vec(dx, (1, 1, rows, keys), &Device::Cpu).unwrap();
    assert!(max_diff(&got, want) < 2e-5);
}

#[test]
fn bias_gelu_matches_composed_ops() {
    for (rows, width) in [(3, 7), (50, 64)] {
        let x = randn(&[2, rows, width], 6);
        let bias = randn(&[width], 7);
        assert_same(
            "bias gelu",
            &[x, bias],
            |t| gelu::bias_gelu(&t[0], &t[1]).unwrap(),
            |t| gelu::composed(&t[0], &t[1]).unwrap(),
            2,
        );
    }
}

#[test]
fn linear_matches_composed_ops() {
    use super::linear;
    for (batch, rows, input, out) in [(1, 3, 5, 7), (2, 33, 64, 48)] {
        let x = randn(&[batch, rows, input], 10);
        let w = randn(&[out, input], 11);
        let b = randn(&[out], 12);
        assert_same(
            "linear with bias",
            &[x.clone(), w.clone(), b],
            |t| linear::linear(&t[0], &t[1], Some(&t[2])).unwrap(),
            |t| linear::composed(&t[0], &t[1], Some(&t[2])).unwrap(),
            3,
        );
        assert_same(
            "linear without bias",
            &[x, w],
            |t| linear::linear(&t[0], &t[1], None).unwrap(),
            |t| linear::composed(&t[0], &t[1], None).unwrap(),
            2,
        );
    }
}

/// Attention's padding bias: the second item's last `pad` tokens masked.
fn padding_bias(batch: usize, seq: usize, pad: usize) -> Tensor {
    let mut bias = vec![0f32; batch * seq];
    if batch > 1 {
        for b in &mut bias[2 * seq - pad..2 * seq] {
            *b = -1e9;
        }
    }
    Tensor::from_vec(bias, (batch, 1, 1, seq), &Device::Cpu).unwrap()
}

/// A padding bias of `batch × seq` whose items are all padding, padded on
/// the left and padded on the right (six keys), in that order.
fn uneven_padding_bias(seq: usize) -> Tensor {
    let mut bias = vec![0f32; 3 * seq];
    bias[..seq].fill(-1e9);
    bias[seq..seq + 4].fill(-1e9);
    bias[3 * seq - 6..].fill(-1e9);
    Tensor::from_vec(bias, (3, 1, 1, seq), &Device::Cpu).unwrap()
}

#[test]
fn attention_matches_composed_ops() {
    use super::attention;
    use crate::model::layers::Mode;
    // The last case skips trailing padding keys: its all-padding item keeps
    // every key (the softmax is uniform), the left-padded one has nothing
    // trailing to skip, the right-padded one skips six.
    let cases = [
        (1, 5, 8, 2, padding_bias(1, 5, 1)),
        (3, 19, 48, 4, padding_bias(3, 19, 19 / 3)),
        (3, 11, 24, 3, uneven_padding_bias(11)),
    ];
    for (batch, seq, hidden, heads, bias) in cases {
        let qkv = randn(&[batch, seq, 3 * hidden], 20);
        assert_same(
            "attention",
            &[qkv],
            |t| attention::attention(&t[0], &bias, heads, Mode::Eval, 0.1).unwrap(),
            |t| attention::composed(&t[0], &bias, heads, |p| Ok(p.clone())).unwrap(),
            1,
        );
    }
}

#[test]
fn attention_dropout_matches_composed_ops_with_the_same_mask() {
    use super::{attention, dropout::DropMask};
    use crate::model::layers::{DropoutRng, Mode};
    let (batch, seq, hidden, heads, p) = (2, 9, 16, 2, 0.3);
    let bias = padding_bias(batch, seq, 3);
    let qkv = randn(&[batch, seq, 3 * hidden], 30);
    // The fused op draws one seed from the generator; the composed side
    // rebuilds the same mask from that seed.
    let seed = DropoutRng::new(5).next_seed();
    let mask = DropMask::new(p, seed);
    let factors: Vec<f32> = (0..batch * heads * seq * seq)
        .map(|i| mask.factor(i))
        .collect();
    let dropped = factors.iter().filter(|&&f| f == 0.0).count() as f64 / factors.len() as f64;
    assert!((dropped - p).abs() < 0.1, "dropped {dropped}");
    let factors = Tensor::from_vec(factors, (batch, heads, seq, seq), &Device::Cpu).unwrap();
    assert_same(
        "attention with dropout",
        &[qkv],
        |t| {
            let rng = DropoutRng::new(5);
            attention::attention(&t[0], &bias, heads, Mode::Train(&rng), p).unwrap()
        },
        |t| attention::composed(&t[0], &bias, heads, |probs| probs * &factors).unwrap(),
        1,
    );
}

#[test]
fn dropout_masks_forward_and_backward_alike() {
    use super::dropout::{dropout, DropMask};
    let p = 0.25;
    let mask = DropMask::new(p, 42);
    let x = Var::from_tensor(&randn(&[50_000], 40)).unwrap();
    let y = dropout(x.as_tensor(), mask).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    let (xv, yv) = (x.to_vec1::<f32>().unwrap(), y.to_vec1::<f32>().unwrap());
    let gv = g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    let scale = (1.0 / (1.0 - p)) as f32;
    let mut zeros = 0;
    for i in 0..xv.len() {
        let f = mask.factor(i);
        assert!(f == 0.0 || f == scale);
        assert_eq!(yv[i], xv[i] * f);
        assert_eq!(gv[i], f);
        zeros += usize::from(f == 0.0);
    }
    let rate = zeros as f64 / xv.len() as f64;
    assert!((rate - p).abs() < 0.01, "dropped {rate}");
    // A different seed, a different mask.
    let other = DropMask::new(p, 43);
    assert!((0..1000).any(|i| other.factor(i) != mask.factor(i)));
}

/// Inputs of the residual norm op, `(y, bias, residual, gamma, beta)`, for
/// `batch × rows × width` activations.
fn residual_norm_inputs(batch: usize, rows: usize, width: usize, seed: u64) -> Vec<Tensor> {
    vec![
        randn(&[batch, rows, width], seed),
        randn(&[width], seed + 1),
        randn(&[batch, rows, width], seed + 2),
        randn(&[width], seed + 3).affine(0.3, 1.0).unwrap(),
        randn(&[width], seed + 4),
    ]
}

/// The fused residual norm on [`residual_norm_inputs`].
fn fused_residual_norm(t: &[Tensor], mode: crate::model::layers::Mode, p: f64) -> Tensor {
    super::residual_norm::residual_norm(&t[0], &t[1], &t[2], &t[3], &t[4], 1e-12, mode, p).unwrap()
}

/// The composed residual norm on [`residual_norm_inputs`], dropout applied by `dropout`.
fn composed_residual_norm(
    t: &[Tensor],
    dropout: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Tensor {
    super::residual_norm::composed(&t[0], &t[1], &t[2], &t[3], &t[4], 1e-12, dropout).unwrap()
}

#[test]
fn residual_norm_matches_composed_ops() {
    use crate::model::layers::Mode;
    for (rows, width) in [(3, 5), (70, 48)] {
        assert_same(
            "residual norm",
            &residual_norm_inputs(2, rows, width, 50),
            |t| fused_residual_norm(t, Mode::Eval, 0.1),
            |t| composed_residual_norm(t, |x| Ok(x.clone())),
            5,
        );
    }
}

#[test]
fn residual_norm_dropout_matches_composed_ops_with_the_same_mask() {
    use super::dropout::DropMask;
    use crate::model::layers::{DropoutRng, Mode};
    let (rows, width, p) = (40, 32, 0.3);
    let mask = DropMask::new(p, DropoutRng::new(8).next_seed());
    let factors: Vec<f32> = (0..rows * width).map(|i| mask.factor(i)).collect();
    let factors = Tensor::from_vec(factors, (1, rows, width), &Device::Cpu).unwrap();
    assert_same(
        "residual norm with dropout",
        &residual_norm_inputs(1, rows, width, 60),
        |t| fused_residual_norm(t, Mode::Train(&DropoutRng::new(8)), p),
        |t| composed_residual_norm(t, |x| x * &factors),
        5,
    );
}

#[test]
fn dense_gelu_matches_composed_ops() {
    use super::{gelu, linear};
    let x = randn(&[2, 21, 24], 70);
    let w = randn(&[40, 24], 71).affine(0.2, 0.0).unwrap();
    let b = randn(&[40], 72);
    assert_same(
        "dense gelu",
        &[x, w, b],
        |t| gelu::dense_gelu(&t[0], &t[1], &t[2]).unwrap(),
        |t| gelu::composed(&linear::composed(&t[0], &t[1], None).unwrap(), &t[2]).unwrap(),
        3,
    );
}

#[test]
fn parameter_gradients_are_the_same_bits_on_any_thread_count() {
    // Layer norm, bias + GELU, residual norm and the dense layer sum their
    // parameter gradients over rows; those sums must not depend on how many
    // threads split the rows (a resumed run on another machine, or rayon
    // stealing differently, must reach the same weights).
    let (rows, width) = (3000, 64);
    let grads_with = |threads: usize| -> Vec<Vec<f32>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let x = randn(&[rows, width], 50);
            let w = randn(&[width, width], 51).affine(0.1, 0.0).unwrap();
            let gamma = randn(&[width], 52).affine(0.3, 1.0).unwrap();
            let beta = randn(&[width], 53);
            let b = randn(&[width], 54);
            let r = randn(&[rows, width], 55);
            let (_, g) = value_and_grads(&[x, w, gamma, beta, b, r], |t| {
                let y = super::linear(&t[0], &t[1], None).unwrap();
                let y = super::residual_norm::residual_norm(
                    &y,
                    &t[4],
                    &t[5],
                    &t[2],
                    &t[3],
                    1e-12,
                    crate::model::layers::Mode::Eval,
                    0.0,
                )
                .unwrap();
                let y = super::gelu::bias_gelu(&y, &t[4]).unwrap();
                layer_norm::layer_norm(&y, &t[2], &t[3], 1e-12).unwrap()
            });
            g.iter()
                .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .collect()
        })
    };
    let one = grads_with(1);
    for threads in [2, 3, 7] {
        let many = grads_with(threads);
        for (i, (a, b)) in one.iter().zip(&many).enumerate() {
            let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(
                same,
                "input {i}: gradients differ between 1 and {threads} threads"
            );
        }
    }
}

#[test]
fn dropout_off_the_fused_path_uses_the_same_seeded_mask() {
    // Other devices (and other dtypes) take the composed path; its mask
    // comes from the run's generator too, and is the fused kernel's mask.
    use crate::model::layers::DropoutRng;
    let p = 0.3;
    let x = randn(&[40, 50], 60).affine(0.0, 1.0).unwrap();
    let fused = DropoutRng::new(11).dropout(&x, p).unwrap();
    let x64 = x.to_dtype(candle_core::DType::F64).unwrap();
    assert!(!super::fused_for(&x64), "f64 takes the composed path");
    let composed = DropoutRng::new(11).dropout(&x64, p).unwrap();
    let again = DropoutRng::new(11).dropout(&x64, p).unwrap();
    let (f, c, a) = (
        fused.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        composed.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
        again.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
    );
    assert_eq!(c, a, "the same seed gives the same mask");
    assert!(f.iter().zip(&c).all(|(f, c)| (*f as f64 - c).abs() < 1e-6));
    let dropped = c.iter().filter(|&&v| v == 0.0).count() as f64 / c.len() as f64;
    assert!((dropped - p).abs() < 0.05, "dropped {dropped}");
}

/// Under `PRETEXT_SIMD` the kernels run on the level asked for (or the
/// best below it that the CPU has): what the test below relies on.
#[test]
fn pretext_simd_sets_the_level() {
    use super::simd::{level, Level};
    let want = match std::env::var("PRETEXT_SIMD").as_deref() {
        Ok("avx2") => Level::Avx2.min(Level::detected()),
        Ok("baseline") => Level::Baseline,
        _ => Level::detected(),
    };
    assert_eq!(level(), want);
}

/// Every kernel test again, in a child process per lower level (this
/// machine picks AVX-512, so the AVX2 and baseline builds would otherwise
/// never run): the same comparisons against the composed ops, the int8
/// paths' bits, and the level check above.
#[test]
fn every_level_passes_the_kernel_tests() {
    let exe = std::env::current_exe().expect("the test binary");
    for level in ["avx2", "baseline"] {
        let out = std::process::Command::new(&exe)
            .args([
                "model::kernels::",
                "--skip",
                "every_level_passes_the_kernel_tests",
            ])
            .env("PRETEXT_SIMD", level)
            .output()
            .expect("running the kernel tests in a child process");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "kernel tests failed under PRETEXT_SIMD={level}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let passed: usize = stdout
            .lines()
            .find_map(|l| l.strip_prefix("test result: ok. "))
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(
            passed >= 10,
            "only {passed} kernel tests ran under {level}:\n{stdout}"
        );
    }
}
