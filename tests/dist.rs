//! Cross-device (cross-batch) negatives: N ranks of batch B give the loss
//! and gradients of one process with batch N·B.

use std::path::{Path, PathBuf};

use pretext::config::Config;
use pretext::config::Memory;
use pretext::dist::ThreadGroup;
use pretext::tokenize::TextTokenizer;
use pretext::train::data::Batch;
use pretext::train::{Start, Trainer};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn config(out: &Path, batch: usize) -> Config {
    let mut c = Config {
        seed: 9,
        ..Config::default()
    };
    c.model.preset = "tiny".into();
    c.model.tokenizer = Some(root().join("corpora/python-docs.tokenizer.json"));
    c.model.max_len = 24;
    c.model.dropout = Some(0.0);
    c.train.out = out.to_path_buf();
    c.train.batch_size = batch;
    c.train.memory = Memory::None;
    c.train.hard_negatives = 1;
    c
}

fn batch(tok: &TextTokenizer, rows: std::ops::Range<usize>) -> Batch {
    let q: Vec<String> = rows
        .clone()
        .map(|i| format!("how do I use feature {i} of python"))
        .collect();
    let p: Vec<String> = rows
        .clone()
        .map(|i| format!("feature {i}: a module of the standard library, with examples"))
        .collect();
    let h: Vec<String> = rows
        .clone()
        .map(|i| format!("an unrelated passage about item {}", i * 7))
        .collect();
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    Batch {
        queries: tok.encode(&refs(&q)).unwrap(),
        positives: tok.encode(&refs(&p)).unwrap(),
        hard: Some((tok.encode(&refs(&h)).unwrap(), vec![1; rows.len()])),
        positive_texts: p,
        sources: vec![None; rows.len()],
    }
}

#[test]
fn ranks_give_the_loss_and_gradients_of_the_global_batch() {
    let dir = tempfile::tempdir().unwrap();
    let tok =
        TextTokenizer::from_file(&root().join("corpora/python-docs.tokenizer.json"), 24).unwrap();
    let (world, b) = (2, 4);
    let mut single =
        Trainer::new(config(&dir.path().join("single"), world * b), Start::Fresh).unwrap();
    let (loss, grads) = single.gradients(&batch(&tok, 0..world * b)).unwrap();
    assert!(grads.len() > 10);
    let ranks: Vec<(f32, Vec<(String, candle_core::Tensor)>)> = std::thread::scope(|s| {
        let joins: Vec<_> = ThreadGroup::new(world)
            .into_iter()
            .map(|g| {
                let (tok, dir) = (&tok, dir.path());
                s.spawn(move || {
                    let r = pretext::dist::ProcessGroup::rank(&g);
                    let cfg = config(&dir.join(format!("rank{r}")), b);
                    let mut t = Trainer::with_group(cfg, Start::Fresh, Box::new(g)).unwrap();
                    t.gradients(&batch(tok, r * b..(r + 1) * b)).unwrap()
                })
            })
            .collect();
        joins.into_iter().map(|j| j.join().unwrap()).collect()
    });
    for (r, (rl, rg)) in ranks.iter().enumerate() {
        assert!((rl - loss).abs() < 1e-5, "rank {r}: loss {rl} vs {loss}");
        assert_eq!(rg.len(), grads.len());
        for ((name, g), (name2, want)) in rg.iter().zip(&grads) {
            assert_eq!(name, name2);
            let diff = (g - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            let scale = want
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                diff <= 1e-5 + 1e-4 * scale,
                "rank {r} {name}: diff {diff}, scale {scale}"
            );
        }
    }
    // Without the gather a rank would only see its own share: a different loss.
    let mut alone = Trainer::new(config(&dir.path().join("alone"), b), Start::Fresh).unwrap();
    let (own, _) = alone.gradients(&batch(&tok, 0..b)).unwrap();
    assert!((own - loss).abs() > 1e-3, "{own} vs {loss}");
}
