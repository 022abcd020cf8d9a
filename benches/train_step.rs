//! One training step, split into forward, backward and optimizer, in one of
//! two settings (`BENCH_SETTING`):
//! - `reference` (default): the reference setting, a 4-layer,
//!   256-wide BERT (vocabulary 8192), batch 32 × 128 tokens, a MoCo key
//!   encoder and a 4096-key queue, InfoNCE;
//! - `minilm`: all-MiniLM-L6-v2's size (6 layers, 384 wide, 12 heads,
//!   vocabulary 30,522), batch 32 × 128, queries and positives through the
//!   one tower with gradient, in-batch negatives only (what
//!   sentence-transformers' MultipleNegativesRankingLoss trains).
//!
//! `cargo bench --bench train_step` prints a table of medians over
//! `BENCH_ITERS` steps (default 10) after two warm-up steps; `BENCH_JSON=1`
//! prints one JSON line instead (what `benches/train_step_compare.sh` reads
//! to put PyTorch's figures beside these).

use std::time::Instant;

#[global_allocator]
static GLOBAL: pretext::alloc::Allocator = mimalloc::MiMalloc;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use pretext::model::{
    weights, BertConfig, DropoutRng, DualEncoder, Head, Mode, Pooling, Similarity, Tower,
};
use pretext::objective::{Loss, StepEmbeddings};
use pretext::optim::{AdamW, AdamWConfig};
use pretext::queue::KeyQueue;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    pretext::alloc::keep_freed_memory();
    let iters: usize = std::env::var("BENCH_ITERS").map_or(10, |v| v.parse().unwrap());
    let (batch, seq, warmup) = (32usize, 128usize, 2);
    let dev = Device::Cpu;
    let minilm = match std::env::var("BENCH_SETTING").as_deref() {
        Ok("minilm") => true,
        Ok("reference") | Err(_) => false,
        Ok(other) => panic!("BENCH_SETTING={other}: reference or minilm"),
    };
    let vocab = if minilm { 30522 } else { 8192 };
    let mut config = BertConfig::preset("mini", vocab).unwrap();
    if minilm {
        config.hidden_size = 384;
        config.num_hidden_layers = 6;
        config.num_attention_heads = 12;
        config.intermediate_size = 1536;
    }
    if let Ok(p) = std::env::var("BENCH_DROPOUT") {
        config.hidden_dropout_prob = p.parse().unwrap();
        config.attention_probs_dropout_prob = p.parse().unwrap();
    }
    let head = Head {
        pooling: Pooling::Mean,
        projection: None,
        normalize: false,
    };
    let varmap = VarMap::new();
    let model = DualEncoder::new(
        &config,
        head,
        true,
        VarBuilder::from_varmap(&varmap, DType::F32, &dev),
    )
    .unwrap();
    weights::seeded_init(&varmap, 1).unwrap();
    let key_vars = VarMap::new();
    let key = Tower::new(
        &config,
        head,
        VarBuilder::from_varmap(&key_vars, DType::F32, &dev),
    )
    .unwrap();
    weights::seeded_init(&key_vars, 1).unwrap();
    let params: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    let vars = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut opt = AdamW::new(vars, AdamWConfig::default()).unwrap();
    let mut queue = KeyQueue::new(4096, config.hidden_size, &dev).unwrap();
    let loss_fn = Loss::default();
    let ids = |salt: u32| {
        let v: Vec<u32> = (0..batch * seq)
            .map(|i| (i as u32).wrapping_mul(2654435761).wrapping_add(salt) % vocab as u32)
            .collect();
        Tensor::from_vec(v, (batch, seq), &dev).unwrap()
    };
    let mask = Tensor::ones((batch, seq), DType::U32, &dev).unwrap();
    let key_links: Vec<_> = {
        let k = key_vars.data().lock().unwrap();
        let q = varmap.data().lock().unwrap();
        k.iter().map(|(n, v)| (v.clone(), q[n].clone())).collect()
    };
    let (mut fwd, mut bwd, mut upd, mut total) = (vec![], vec![], vec![], vec![]);
    for i in 0..warmup + iters {
        let t0 = Instant::now();
        let rng = DropoutRng::new(i as u64);
        if !minilm {
            for (k, q) in &key_links {
                k.set(
                    &((k.as_tensor() * 0.999).unwrap() + (q.as_tensor() * 0.001).unwrap()).unwrap(),
                )
                .unwrap();
            }
        }
        let q = model
            .query()
            .encode(&ids(1 + i as u32), &mask, Mode::Train(&rng))
            .unwrap();
        // The positives: the key encoder's (no graph) in the reference
        // setting, the same tower's with gradient in MiniLM's.
        let k = match minilm {
            true => model
                .query()
                .encode(&ids(7 + i as u32), &mask, Mode::Train(&rng))
                .unwrap(),
            false => key
                .encode(&ids(7 + i as u32), &mask, Mode::Eval)
                .unwrap()
                .detach(),
        };
        let keys = queue.keys().unwrap();
        let out = loss_fn
            .compute(
                &StepEmbeddings {
                    queries: &q,
                    positives: &k,
                    hard: None,
                    queue: (!minilm).then_some(&keys),
                },
                Similarity::Dot,
            )
            .unwrap();
        let _ = out.loss.to_scalar::<f32>().unwrap();
        let t1 = Instant::now();
        let grads = out.loss.backward().unwrap();
        let t2 = Instant::now();
        let norm = opt.grad_norm(&grads).unwrap();
        opt.step(&grads, 1e-4, pretext::optim::clip_scale(norm, Some(1.0)))
            .unwrap();
        if !minilm {
            queue.enqueue(&k).unwrap();
        }
        let t3 = Instant::now();
        if i >= warmup {
            fwd.push((t1 - t0).as_secs_f64());
            bwd.push((t2 - t1).as_secs_f64());
            upd.push((t3 - t2).as_secs_f64());
            total.push((t3 - t0).as_secs_f64());
        }
    }
    // Medians: this machine is shared, and a step now and then is slowed
    // by a neighbour; the median is what a long run sees.
    let (fwd, bwd, upd, step) = (
        median(&mut fwd),
        median(&mut bwd),
        median(&mut upd),
        median(&mut total),
    );
    // FLOPs: per token, 2 × (non-embedding weights) for the linear layers plus
    // attention's two (seq × seq × hidden) products; forward of the query
    // tower and the key tower, backward ≈ 2 × the query tower's forward.
    let h = config.hidden_size as f64;
    let layers = config.num_hidden_layers as f64;
    let linear = layers * (4.0 * h * h + 2.0 * h * config.intermediate_size as f64);
    let tokens = (batch * seq) as f64;
    let per_tower = 2.0 * linear * tokens + layers * 4.0 * batch as f64 * (seq * seq) as f64 * h;
    // MiniLM's setting: two towers' forward and backward, both with graph.
    let flops = if minilm { 6.0 } else { 4.0 } * per_tower;
    let peak_mib = pretext::memory::peak_rss_kib().map(|kib| kib as f64 / 1024.0);
    if std::env::var("BENCH_JSON").is_ok() {
        println!(
            "{}",
            serde_json::json!({
                "system": "pretext",
                "step": step,
                "forward": fwd,
                "backward": bwd,
                "optimizer": upd,
                "peak_rss_mib": peak_mib,
                "gflops": flops / step / 1e9,
                "tokens_per_s": 2.0 * tokens / step,
            })
        );
        return;
    }
    println!("| setting | value |\n|---|---:|");
    println!("| parameters | {:.2} M |", params as f64 / 1e6);
    println!("| batch × tokens | {batch} × {seq} |");
    println!("| step (median of {iters}) | {:.3} s |", step);
    println!(
        "| forward (query + key towers + loss) | {:.3} s ({:.0} %) |",
        fwd,
        100.0 * fwd / step
    );
    println!("| backward | {:.3} s ({:.0} %) |", bwd, 100.0 * bwd / step);
    println!(
        "| optimizer + momentum + enqueue | {:.3} s ({:.0} %) |",
        upd,
        100.0 * upd / step
    );
    println!("| tokens/s (queries + keys) | {:.0} |", 2.0 * tokens / step);
    println!("| achieved GFLOP/s | {:.1} |", flops / step / 1e9);
    if let Some(mib) = peak_mib {
        println!("| peak RSS | {mib:.0} MiB |");
    }
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}
