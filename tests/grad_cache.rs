//! GradCache (`train.grad_cache`): a step whose batch is encoded in chunks
//! gives the unchunked step's loss and every gradient, dropout on, with
//! hard negatives, separate towers, a MoCo queue and cross-device
//! negatives.

mod common;

use common::{gap, max_abs, rank_gradients, shipped_tokenizer, toy_batch, toy_config, Gradients};
use pretext::config::Config;
use pretext::train::{Start, Trainer};

/// A named change to the test config.
type Variant = (&'static str, fn(&mut Config));

/// Asserts `got` equals `want`: each gradient to 1e-5 of its own largest
/// element, plus 1e-6 of the model's largest. Chunks sum a weight's
/// gradient in another order, which moves f32 results by rounding, in
/// proportion to the terms summed; a gradient that is zero in exact
/// arithmetic (the last LayerNorm bias of a document tower: a shift of
/// every document scores each query's candidates alike) is such noise in
/// both steps. A wrong dropout mask or a missing term moves gradients by
/// far more (`model::tests::chunks_are_masked_as_in_the_whole_batch`).
fn assert_same(what: &str, got: &Gradients, want: &Gradients) {
    assert!(
        (got.0 - want.0).abs() <= 1e-5 * want.0.abs().max(1.0),
        "{what}: loss {} vs {}",
        got.0,
        want.0
    );
    assert_eq!(
        got.1.len(),
        want.1.len(),
        "{what}: gradients of other variables"
    );
    assert!(want.1.len() > 10);
    let model_scale = want.1.iter().map(|(_, w)| max_abs(w)).fold(0f32, f32::max);
    for ((name, g), (name2, w)) in got.1.iter().zip(&want.1) {
        assert_eq!(name, name2);
        let diff = gap(g, w);
        let scale = max_abs(w);
        assert!(
            diff <= 1e-5 * scale + 1e-6 * model_scale,
            "{what} {name}: diff {diff}, scale {scale}"
        );
    }
}

fn gradients(config: Config, rows: usize) -> Gradients {
    let tok = shipped_tokenizer(24);
    let mut t = Trainer::new(config, Start::Fresh).unwrap();
    t.gradients(&toy_batch(&tok, 0..rows)).unwrap()
}

#[test]
fn chunked_steps_give_the_unchunked_loss_and_gradients() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 8;
    let variants: [Variant; 3] = [
        ("shared tower, hard negatives", |_| {}),
        ("separate towers", |c| c.model.shared_towers = false),
        ("MoCo queue", |c| {
            c.train.memory = pretext::config::Memory::Moco;
            c.train.queue_size = 16;
        }),
    ];
    for (i, (what, set)) in variants.iter().enumerate() {
        let make = |chunk: usize| {
            let mut c = toy_config(&dir.path().join(format!("{i}-{chunk}")), rows);
            // Dropout on: each chunk must be masked as the whole batch is.
            c.model.dropout = Some(0.1);
            c.train.grad_cache = chunk;
            set(&mut c);
            c
        };
        let whole = gradients(make(0), rows);
        // 3 does not divide 8: a short last chunk.
        for chunk in [1, 3, 8] {
            assert_same(
                &format!("{what}, chunks of {chunk}"),
                &gradients(make(chunk), rows),
                &whole,
            );
        }
    }
}

#[test]
fn chunked_ranks_give_the_global_batchs_gradients() {
    let dir = tempfile::tempdir().unwrap();
    let tok = shipped_tokenizer(24);
    let (world, b) = (2, 4);
    let whole = gradients(toy_config(&dir.path().join("single"), world * b), world * b);
    let ranks = rank_gradients(dir.path(), &tok, world, b, |c| c.train.grad_cache = 3);
    for (r, got) in ranks.iter().enumerate() {
        assert_same(&format!("rank {r}"), got, &whole);
    }
}

#[test]
fn grad_cache_is_refused_where_it_has_nothing_to_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = toy_config(dir.path(), 4);
    c.train.grad_cache = 2;
    c.train.mode = pretext::config::TrainMode::Ltre;
    let problems = pretext::config::check::problems(&c).join("\n");
    assert!(problems.contains("train.grad_cache"), "{problems}");
}
