//! Resident memory of this process, read from `/proc/self/status` (Linux).
//! Anonymous memory is what a reader that copied the corpus would grow;
//! memory-mapped corpus pages are file-backed and not counted in it.

/// Resident anonymous memory in KiB (`RssAnon`), where the system tells.
pub fn rss_anon_kib() -> Option<u64> {
    status_field("RssAnon:")
}

/// Peak resident set size in KiB (`VmHWM`, file-backed pages included).
pub fn peak_rss_kib() -> Option<u64> {
    status_field("VmHWM:")
}

fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// Keeps the largest sample seen.
#[derive(Debug, Default, Clone, Copy)]
pub struct PeakSampler {
    peak: Option<u64>,
}

impl PeakSampler {
    /// Samples anonymous memory now.
    pub fn sample(&mut self) {
        if let Some(v) = rss_anon_kib() {
            self.peak = Some(self.peak.map_or(v, |p| p.max(v)));
        }
    }

    /// The largest sample, in KiB.
    pub fn peak_kib(&self) -> Option<u64> {
        self.peak
    }
}
