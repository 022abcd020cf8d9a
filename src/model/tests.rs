use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use super::*;

fn tiny() -> BertConfig {
    let mut c = BertConfig::preset("tiny", 50).unwrap();
    c.max_position_embeddings = 16;
    c.hidden_size = 16;
    c.intermediate_size = 32;
    c
}

fn build(config: &BertConfig, head: Head, shared: bool, seed: u64) -> (VarMap, DualEncoder) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = DualEncoder::new(config, head, shared, vb).unwrap();
    weights::seeded_init(&varmap, seed).unwrap();
    (varmap, model)
}

fn batch() -> (Tensor, Tensor) {
    let ids = Tensor::new(&[[2u32, 7, 9, 4, 3, 0], [2, 11, 12, 3, 0, 0]], &Device::Cpu).unwrap();
    let mask = Tensor::new(&[[1u32, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]], &Device::Cpu).unwrap();
    (ids, mask)
}

const HEAD: Head = Head {
    pooling: Pooling::Mean,
    projection: Some(8),
    normalize: false,
};

#[test]
fn every_variable_gets_a_gradient_with_dropout_on() {
    for shared in [true, false] {
        let (varmap, model) = build(&tiny(), HEAD, shared, 1);
        let (ids, mask) = batch();
        let rng = DropoutRng::new(3);
        let q = model
            .query()
            .encode(&ids, &mask, Mode::Train(&rng))
            .unwrap();
        let d = model.doc().encode(&ids, &mask, Mode::Train(&rng)).unwrap();
        let loss = q.mul(&d).unwrap().sum_all().unwrap().sqr().unwrap();
        let grads = loss.backward().unwrap();
        let data = varmap.data().lock().unwrap();
        assert!(data.len() > 20);
        for (name, var) in data.iter() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(norm.is_finite(), "{name}: gradient not finite");
            if !name.contains("token_type") && !name.contains("position") {
                assert!(norm > 0.0, "{name}: zero gradient");
            }
        }
    }
}

#[test]
fn dropout_is_real_and_seeded() {
    let (_, model) = build(&tiny(), HEAD, true, 1);
    let (ids, mask) = batch();
    let enc = |seed| {
        let rng = DropoutRng::new(seed);
        model
            .query()
            .encode(&ids, &mask, Mode::Train(&rng))
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    };
    let eval = model
        .query()
        .encode(&ids, &mask, Mode::Eval)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(enc(5), enc(5), "same seed, same masks");
    assert_ne!(enc(5), enc(6), "dropout did nothing");
    assert_ne!(enc(5), eval);
}

/// Checks a scalar function's gradient against central finite differences.
fn check_grad(x0: &[f32], shape: (usize, usize), f: impl Fn(&Tensor) -> Tensor) {
    let var = Var::from_vec(x0.to_vec(), shape, &Device::Cpu).unwrap();
    let grads = f(var.as_tensor()).backward().unwrap();
    let analytic = grads
        .get(var.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let h = 1e-2f64;
    for i in 0..x0.len() {
        let mut plus = x0.to_vec();
        let mut minus = x0.to_vec();
        plus[i] += h as f32;
        minus[i] -= h as f32;
        let fp = f(&Tensor::from_vec(plus, shape, &Device::Cpu).unwrap())
            .to_scalar::<f32>()
            .unwrap() as f64;
        let fm = f(&Tensor::from_vec(minus, shape, &Device::Cpu).unwrap())
            .to_scalar::<f32>()
            .unwrap() as f64;
        let numeric = (fp - fm) / (2.0 * h);
        let err = (numeric - analytic[i] as f64).abs();
        assert!(
            err < 2e-3 + 2e-2 * numeric.abs(),
            "grad[{i}]: numeric {numeric} vs analytic {}",
            analytic[i]
        );
    }
}

#[test]
fn layer_norm_and_softmax_gradients_match_finite_differences() {
    let x: Vec<f32> = (0..12)
        .map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.7 + i as f32 * 0.05)
        .collect();
    let w = Tensor::new(
        &[
            [0.3f32, -1.2, 0.5, 2.0],
            [1.0, 0.1, -0.7, 0.4],
            [0.2, 0.9, -0.3, 1.1],
        ],
        &Device::Cpu,
    )
    .unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let ln = layers::LayerNorm::new(4, 1e-5, vb).unwrap();
    check_grad(&x, (3, 4), |t| {
        ln.forward(t).unwrap().mul(&w).unwrap().sum_all().unwrap()
    });
    check_grad(&x, (3, 4), |t| {
        candle_nn::ops::softmax(t, candle_core::D::Minus1)
            .unwrap()
            .mul(&w)
            .unwrap()
            .sum_all()
            .unwrap()
    });
    check_grad(&x, (3, 4), |t| {
        l2_normalize(t).unwrap().mul(&w).unwrap().sum_all().unwrap()
    });
    check_grad(&x, (3, 4), |t| {
        let bias = Tensor::new(&[0.1f32, -0.2, 0.0, 0.3], &Device::Cpu).unwrap();
        kernels::bias_gelu(t, &bias)
            .unwrap()
            .mul(&w)
            .unwrap()
            .sum_all()
            .unwrap()
    });
}

#[test]
fn forward_matches_candle_transformers_bert() {
    let config = tiny();
    let (varmap, model) = build(
        &config,
        Head {
            pooling: Pooling::Mean,
            projection: None,
            normalize: false,
        },
        true,
        9,
    );
    let ids = Tensor::new(&[[2u32, 7, 9, 4, 3, 8], [2, 11, 12, 3, 5, 1]], &Device::Cpu).unwrap();
    let mask = ids.ones_like().unwrap();
    let ours = model
        .query()
        .bert()
        .forward(&ids, &mask, Mode::Eval)
        .unwrap();
    let json = serde_json::to_string(&config).unwrap();
    let theirs_config: candle_transformers::models::bert::Config =
        serde_json::from_str(&json).unwrap();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let theirs = candle_transformers::models::bert::BertModel::load(vb, &theirs_config).unwrap();
    let theirs = theirs
        .forward(&ids, &ids.zeros_like().unwrap(), Some(&mask))
        .unwrap();
    let diff = gap(&ours, &theirs);
    assert!(diff <= 1e-5, "max abs difference {diff}");
}

/// GradCache's chunks: rows `a..b` encoded alone with
/// `DropoutRng::chunk(a, b - a)` are masked exactly as those rows of the
/// whole batch, in the plain dropout and in the fused attention kernel; a
/// chunk that forgot its offset is masked otherwise.
#[test]
fn chunks_are_masked_as_in_the_whole_batch() {
    let dev = Device::Cpu;
    let (rows, seq, hidden, heads) = (7, 5, 8, 2);
    let x = Tensor::ones((rows, seq, hidden), DType::F32, &dev).unwrap();
    let qkv = Tensor::randn(0f32, 1.0, (rows, seq, 3 * hidden), &dev).unwrap();
    let bias = Tensor::zeros((rows, 1, 1, seq), DType::F32, &dev).unwrap();
    let run = |rng: &DropoutRng, x: &Tensor, qkv: &Tensor, bias: &Tensor| {
        let d = rng.dropout(x, 0.3).unwrap();
        let a = kernels::attention(qkv, bias, heads, Mode::Train(rng), 0.3).unwrap();
        (d, a)
    };
    let whole = DropoutRng::new(5);
    let (wd, wa) = run(&whole, &x, &qkv, &bias);
    let base = DropoutRng::new(5);
    let (mut ds, mut atts) = (Vec::new(), Vec::new());
    for (first, n) in [(0, 3), (3, 3), (6, 1)] {
        let rng = base.chunk(first, n);
        let (d, a) = run(
            &rng,
            &x.narrow(0, first, n).unwrap(),
            &qkv.narrow(0, first, n).unwrap(),
            &bias.narrow(0, first, n).unwrap(),
        );
        ds.push(d);
        atts.push(a);
    }
    assert_eq!(gap(&Tensor::cat(&ds, 0).unwrap(), &wd), 0.0);
    assert!(gap(&Tensor::cat(&atts, 0).unwrap(), &wa) < 1e-6);
    // The chunk generator leaves its parent where it was, until `follow`.
    assert_eq!(base.chunk(0, 0).next_seed(), DropoutRng::new(5).next_seed());
    let moved = base.chunk(0, 1);
    moved.next_seed();
    base.follow(&moved);
    assert_ne!(base.next_seed(), DropoutRng::new(5).next_seed());
    // Without the offset, the rows 3..6 get rows 0..3's masks: different.
    let wrong = DropoutRng::new(5).chunk(0, 3);
    let d = wrong.dropout(&x.narrow(0, 3, 3).unwrap(), 0.3).unwrap();
    assert!(gap(&d, &wd.narrow(0, 3, 3).unwrap()) > 0.5);
}

/// The largest absolute difference between two tensors.
fn gap(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Weighted pooling is sentence-transformers' WordWeights then mean
/// Pooling: with every weight 1 it is the plain mean; otherwise each real
/// token's state counts by its id's weight, padding not at all; and its
/// weights are trained (they get a gradient).
#[test]
fn weighted_pooling_weighs_each_token_by_its_id() {
    let weighted = Head {
        pooling: Pooling::Weighted,
        projection: None,
        normalize: false,
    };
    let (varmap, model) = build(&tiny(), weighted, true, 4);
    let (ids, mask) = batch();
    let states = model
        .query()
        .bert()
        .forward(&ids, &mask, Mode::Eval)
        .unwrap();
    let log_w = {
        let data = varmap.data().lock().unwrap();
        data["pooling.log_weights"].clone()
    };
    // Zero logarithms: every weight 1, the plain mean.
    log_w
        .set(&Tensor::zeros(50, DType::F32, &Device::Cpu).unwrap())
        .unwrap();
    let plain = mean_pool(&states, &mask).unwrap();
    let out = model.query().encode(&ids, &mask, Mode::Eval).unwrap();
    assert!(gap(&out, &plain) < 1e-6);
    // Weight of id i: 1 + i / 10, worked out by hand for the first row.
    let w: Vec<f32> = (0..50).map(|i| 1.0 + i as f32 / 10.0).collect();
    log_w
        .set(
            &Tensor::new(w.as_slice(), &Device::Cpu)
                .unwrap()
                .log()
                .unwrap(),
        )
        .unwrap();
    let out = model.query().encode(&ids, &mask, Mode::Eval).unwrap();
    let row: Vec<Vec<f32>> = states.get(0).unwrap().to_vec2().unwrap();
    let first = [2usize, 7, 9, 4, 3];
    let total: f32 = first.iter().map(|&i| w[i]).sum();
    let want: Vec<f32> = (0..16)
        .map(|d| {
            first
                .iter()
                .enumerate()
                .map(|(t, &i)| w[i] * row[t][d])
                .sum::<f32>()
                / total
        })
        .collect();
    let got = out.get(0).unwrap();
    assert!(gap(&got, &Tensor::new(want.as_slice(), &Device::Cpu).unwrap()) < 1e-5);
    assert!(gap(&out, &plain) > 1e-4);
    // The weights learn: the ids in the batch get a gradient, the others none.
    let loss = out.sqr().unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let g: Vec<f32> = grads.get(log_w.as_tensor()).unwrap().to_vec1().unwrap();
    assert!(g[7].abs() > 0.0 && g[11].abs() > 0.0);
    assert_eq!(g[20], 0.0);
    // A loaded module's weights give the same pooling.
    let loaded = model
        .query()
        .clone()
        .with_token_weights(&Tensor::new(w.as_slice(), &Device::Cpu).unwrap())
        .unwrap();
    let again = loaded.encode(&ids, &mask, Mode::Eval).unwrap();
    assert!(gap(&again, &out) < 1e-6);
}

/// `--int8` encodes as the f32 model does to within its rounding (cosine
/// above 0.99 for every text), but not bit for bit (it is quantised);
/// training passes ignore it and give the f32 model's bits.
#[test]
fn int8_encoding_is_close_to_f32_and_training_ignores_it() {
    let (_vars, model) = build(&tiny(), HEAD, true, 5);
    let (ids, mask) = batch();
    let mut tower = model.query().clone();
    let f32_eval = tower.encode(&ids, &mask, Mode::Eval).unwrap();
    let rng = DropoutRng::new(1);
    let f32_train = tower.encode(&ids, &mask, Mode::Train(&rng)).unwrap();
    tower.quantize().unwrap();
    let int8 = tower.encode(&ids, &mask, Mode::Eval).unwrap();
    let cos = (l2_normalize(&int8).unwrap() * l2_normalize(&f32_eval).unwrap())
        .unwrap()
        .sum(1)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(cos.iter().all(|&c| c > 0.99), "cosines {cos:?}");
    assert!(
        gap(&int8, &f32_eval) > 0.0,
        "int8 gave the f32 bits: not quantised"
    );
    let rng = DropoutRng::new(1);
    let train = tower.encode(&ids, &mask, Mode::Train(&rng)).unwrap();
    assert_eq!(gap(&train, &f32_train), 0.0);
}
