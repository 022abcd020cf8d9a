//! Cross-encoders: Hugging Face `BertForSequenceClassification` folders
//! load and score as `transformers` does. The fixtures (two tiny random
//! models, one logit and two labels, and transformers' logits for a few
//! pairs, some cut at the maximum length) are made by
//! `tests/fixtures/cross_encoder/make_expected.py`.

mod common;

use candle_core::Device;
use common::root;
use pretext::model::cross::{Output, PretrainedCrossEncoder};
use serde_json::Value;

fn expected() -> Value {
    let p = root().join("tests/fixtures/cross_encoder/expected.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn pairs(e: &Value) -> Vec<(String, String)> {
    e["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
        .collect()
}

fn as_f32(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

#[test]
fn logits_match_transformers() {
    let e = expected();
    let max_len = e["max_length"].as_u64().unwrap() as usize;
    let owned = pairs(&e);
    let refs: Vec<(&str, &str)> = owned
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    for (name, output) in [
        ("one-logit", Output::Logit),
        ("two-labels", Output::TwoLabels),
    ] {
        let dir = root().join("tests/fixtures/cross_encoder").join(name);
        // The folder's own maximum (tokenizer_config.json) is the one the
        // fixture was cut at.
        let ce = PretrainedCrossEncoder::load(&dir, &Device::Cpu, None).unwrap();
        assert_eq!(ce.model.output(), output);
        let m = &e["models"][name];
        // Same tokens and segments as transformers' tokenizer.
        let (b, types) = ce.tokenizer.encode_pairs(&refs).unwrap();
        assert_eq!(b.seq, max_len);
        let want_ids: Vec<u32> = m["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
            })
            .collect();
        let want_types: Vec<u32> = m["token_type_ids"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
            })
            .collect();
        assert_eq!(b.ids, want_ids, "{name}: token ids");
        assert_eq!(types, want_types, "{name}: segment types");
        assert!(types.contains(&1));
        let got: Vec<Vec<f32>> = ce.logits(&refs).unwrap().to_vec2().unwrap();
        let want = as_f32(&m["logits"]);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.len(), w.len());
            for (a, b) in g.iter().zip(w) {
                assert!((a - b).abs() < 1e-5, "{name} pair {i}: {g:?} vs {w:?}");
            }
        }
        // Relevance: the logit, or label 1 minus label 0, in input order
        // whatever order the length batching scored them in.
        let scores = ce.score(&refs, 2).unwrap();
        for (s, w) in scores.iter().zip(&want) {
            let r = match output {
                Output::Logit => w[0],
                Output::TwoLabels => w[1] - w[0],
            };
            assert!((s - r).abs() < 1e-5, "{name}: {s} vs {r}");
        }
    }
}

#[test]
fn a_dual_encoder_folder_is_not_a_cross_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("tests/fixtures/cross_encoder/one-logit");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let cfg = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("BertForSequenceClassification", "BertModel"),
    )
    .unwrap();
    let err = PretrainedCrossEncoder::load(dir.path(), &Device::Cpu, None)
        .err()
        .unwrap();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("BertForSequenceClassification") && msg.contains("config.json"),
        "{msg}"
    );
}
