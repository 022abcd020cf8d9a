//! Memory stays flat as the corpus grows: runs the real binary over the
//! shipped corpus repeated 1×, 10× and 100× (5.6 MB to 560 MB) and prints
//! peak anonymous memory (heap; the mapped corpus is file-backed and not in
//! it) and throughput. `cargo bench --bench pairs_memory`.

use std::io::Write;
use std::path::Path;
use std::process::Command;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks for the benchmark names
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read(root.join("corpora/python-docs/corpus.jsonl")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    println!("| task | corpus | documents | peak anon RSS | vs 1x | MB/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    for task in ["crop", "neighbors", "spans"] {
        let mut base = None;
        for copies in [1usize, 10, 100] {
            let path = dir.path().join(format!("c{copies}.jsonl"));
            if !path.exists() {
                let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
                for _ in 0..copies {
                    f.write_all(&shipped).unwrap();
                }
            }
            let stats = dir.path().join("stats.json");
            let status = Command::new(env!("CARGO_BIN_EXE_pretext"))
                .args([
                    "pairs",
                    "--quiet",
                    "--task",
                    task,
                    "--out",
                    "/dev/null",
                    "--corpus",
                ])
                .arg(&path)
                .arg("--stats")
                .arg(&stats)
                .status()
                .unwrap();
            assert!(status.success());
            let s: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
            let anon = s["peak_rss_anon_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0;
            let base = *base.get_or_insert(anon);
            println!(
                "| {task} | {:.0} MB | {} | {anon:.1} MiB | {:.2}x | {:.0} |",
                (shipped.len() * copies) as f64 / 1e6,
                s["documents"],
                anon / base,
                s["mb_per_s"].as_f64().unwrap()
            );
        }
    }
}
