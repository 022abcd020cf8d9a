//! Which vector instructions the CPU kernels run on: the best the CPU has,
//! unless `PRETEXT_SIMD` (`avx512`, `avx2` or `baseline`) asks for less.
//!
//! Why an override: this machine, like most servers, picks AVX-512, so the
//! AVX2 and baseline builds of every kernel would otherwise never run in
//! the tests. `cargo test` reruns the kernel tests under each level in a
//! child process (`tests::every_level_passes_the_kernel_tests`); a user can
//! use it to rule a vector path in or out when numbers look wrong.

use std::sync::OnceLock;

/// A set of vector instructions, from the fewest up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// What the target guarantees (SSE2 on x86-64, NEON on aarch64).
    Baseline,
    /// AVX2 and FMA.
    Avx2,
    /// AVX-512 F, BW, DQ and VL.
    Avx512,
}

impl Level {
    /// The best level this CPU has.
    pub fn detected() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            let has = |f: &str| match f {
                "avx512" => {
                    is_x86_feature_detected!("avx512f")
                        && is_x86_feature_detected!("avx512bw")
                        && is_x86_feature_detected!("avx512dq")
                        && is_x86_feature_detected!("avx512vl")
                }
                _ => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            };
            if has("avx512") {
                return Level::Avx512;
            }
            if has("avx2") {
                return Level::Avx2;
            }
        }
        Level::Baseline
    }

    fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "avx512" => Some(Level::Avx512),
            "avx2" => Some(Level::Avx2),
            "baseline" => Some(Level::Baseline),
            _ => None,
        }
    }
}

/// The level the kernels run on: `PRETEXT_SIMD` when set (capped at what
/// the CPU has: a level it lacks would crash), else the best detected.
/// Read once per process.
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let best = Level::detected();
        match std::env::var("PRETEXT_SIMD") {
            Ok(v) => match Level::parse(&v) {
                Some(asked) => asked.min(best),
                None => {
                    eprintln!(
                        "warning: PRETEXT_SIMD={v} is not avx512, avx2 or baseline; using {best:?}"
                    );
                    best
                }
            },
            Err(_) => best,
        }
    })
}
