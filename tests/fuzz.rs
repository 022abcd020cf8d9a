//! Every reader and loader of user files under mutated input (a few
//! thousand cases each; `cargo bench --bench fuzz` runs a million): no
//! panic, no hang, a clean result or an error naming the file.

mod fuzz_targets;

/// Cases per target: `PRETEXT_FUZZ_CASES`, else 2,000.
fn cases() -> u32 {
    std::env::var("PRETEXT_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
}

#[test]
fn every_loader_survives_mutated_files() {
    let failures: Vec<String> = fuzz_targets::targets()
        .iter()
        .filter_map(|t| t.run(cases()).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn set_overrides_never_panic() {
    fuzz_targets::run_set_overrides(cases()).unwrap();
}
