//! Encoding throughput of `pretext` (what `eval` and `mine` do): a model
//! folder encodes the shipped corpus's 2,750 sections in length-sorted
//! batches. Prints JSON; `benches/encode_compare.sh` puts it next to
//! sentence-transformers on the same model, batch and maximum length.
//!
//! `ENCODE_MODEL=DIR ENCODE_MAX_LEN=256 ENCODE_BATCH=64 [ENCODE_INT8=1] cargo bench --bench encode`

use std::time::Instant;

#[global_allocator]
static GLOBAL: pretext::alloc::Allocator = mimalloc::MiMalloc;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // As the binary does (src/main.rs).
    pretext::alloc::keep_freed_memory();
    let Ok(dir) = std::env::var("ENCODE_MODEL") else {
        eprintln!("set ENCODE_MODEL to a model folder (e.g. all-MiniLM-L6-v2)");
        return;
    };
    let max_len: usize = std::env::var("ENCODE_MAX_LEN").map_or(256, |v| v.parse().unwrap());
    let batch: usize = std::env::var("ENCODE_BATCH").map_or(64, |v| v.parse().unwrap());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let texts: Vec<String> = std::fs::read_to_string(root.join("corpora/python-faq/corpus.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{} {}",
                v["title"].as_str().unwrap_or(""),
                v["text"].as_str().unwrap_or("")
            )
        })
        .collect();
    let device = candle_core::Device::Cpu;
    let mut model =
        pretext::model::pretrained::Pretrained::load(dir.as_ref(), &device, Some(max_len)).unwrap();
    let int8 = std::env::var("ENCODE_INT8").is_ok_and(|v| v == "1");
    if int8 {
        model.quantize().unwrap();
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let started = Instant::now();
    let e = pretext::eval::embed_texts(
        &model,
        &refs,
        pretext::tokenize::Side::Document,
        batch,
        &mut |_| {},
    )
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(e.dims2().unwrap().0, texts.len());
    println!(
        "{}",
        serde_json::json!({"system": if int8 { "pretext --int8" } else { "pretext" }, "docs": texts.len(), "seconds": secs, "docs_per_s": texts.len() as f64 / secs})
    );
}
