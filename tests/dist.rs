//! Cross-device (cross-batch) negatives: N ranks of batch B give the loss
//! and gradients of one process with batch N·B.

mod common;

use common::{gap, max_abs, rank_gradients, shipped_tokenizer, toy_batch, toy_config};
use pretext::train::{Start, Trainer};

#[test]
fn ranks_give_the_loss_and_gradients_of_the_global_batch() {
    let dir = tempfile::tempdir().unwrap();
    let tok = shipped_tokenizer(24);
    let (world, b) = (2, 4);
    let mut single = Trainer::new(
        toy_config(&dir.path().join("single"), world * b),
        Start::Fresh,
    )
    .unwrap();
    let (loss, grads) = single.gradients(&toy_batch(&tok, 0..world * b)).unwrap();
    assert!(grads.len() > 10);
    let ranks = rank_gradients(dir.path(), &tok, world, b, |_| {});
    for (r, (rl, rg)) in ranks.iter().enumerate() {
        assert!((rl - loss).abs() < 1e-5, "rank {r}: loss {rl} vs {loss}");
        assert_eq!(rg.len(), grads.len());
        for ((name, g), (name2, want)) in rg.iter().zip(&grads) {
            assert_eq!(name, name2);
            let diff = gap(g, want);
            let scale = max_abs(want);
            assert!(
                diff <= 1e-5 + 1e-4 * scale,
                "rank {r} {name}: diff {diff}, scale {scale}"
            );
        }
    }
    // Without the gather a rank would only see its own share: a different loss.
    let mut alone = Trainer::new(toy_config(&dir.path().join("alone"), b), Start::Fresh).unwrap();
    let (own, _) = alone.gradients(&toy_batch(&tok, 0..b)).unwrap();
    assert!((own - loss).abs() > 1e-3, "{own} vs {loss}");
}
