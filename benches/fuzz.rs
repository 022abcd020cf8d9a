//! The long fuzzing run: `cargo bench --bench fuzz -- [CASES]` (default
//! 1,000,000 in all, split evenly over the targets of
//! `tests/fuzz_targets.rs`), printing a table of cases run, failures and
//! time per target. CI runs the same targets with a few thousand cases
//! each (`tests/fuzz.rs`).

#[path = "../tests/fuzz_targets/mod.rs"]
mod fuzz_targets;

fn main() {
    let total: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let targets = fuzz_targets::targets();
    let per = (total / (targets.len() as u64 + 1)).max(1) as u32;
    println!("| target | cases | failures | seconds |");
    println!("|---|---:|---:|---:|");
    let mut failed = 0;
    let mut report = |name: &str, result: Result<(), String>, secs: f64| {
        let bad = u32::from(result.is_err());
        failed += bad;
        println!("| {name} | {per} | {bad} | {secs:.1} |");
        if let Err(e) = result {
            eprintln!("{e}");
        }
    };
    for t in &targets {
        let started = std::time::Instant::now();
        let r = t.run(per);
        report(t.name, r, started.elapsed().as_secs_f64());
    }
    let started = std::time::Instant::now();
    let r = fuzz_targets::run_set_overrides(per);
    report("--set overrides", r, started.elapsed().as_secs_f64());
    if failed > 0 {
        std::process::exit(1);
    }
}
