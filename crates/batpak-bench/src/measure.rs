//! Clocks, latency percentiles, resident memory and disk usage.

use std::path::Path;
use std::time::Instant;

/// Per-operation latencies of one sample, in nanoseconds.
#[derive(Debug, Default)]
pub struct Latencies {
    nanos: Vec<u64>,
}

/// Relaxed appends take about a microsecond, and reading the clock twice
/// per operation would add several percent to the very throughput being
/// measured: such loops time one operation in this many (a systematic
/// sample, the same for both engines) for their percentiles.
pub const RELAXED_LATENCY_SAMPLE: usize = 8;

impl Latencies {
    /// Room for `n` operations, so recording never allocates in the timed loop.
    pub fn with_capacity(n: usize) -> Latencies {
        Latencies {
            nanos: Vec::with_capacity(n),
        }
    }

    /// Records the time since `start`.
    #[inline]
    pub fn record_since(&mut self, start: Instant) {
        self.nanos.push(start.elapsed().as_nanos() as u64);
    }

    /// Adds another sample's latencies (threads merge theirs at the end).
    pub fn merge(&mut self, other: Latencies) {
        self.nanos.extend(other.nanos);
    }

    /// The (p50, p99) in microseconds, or `None` with no operations.
    pub fn p50_p99_us(&mut self) -> Option<(f64, f64)> {
        if self.nanos.is_empty() {
            return None;
        }
        self.nanos.sort_unstable();
        Some((self.percentile_us(0.50), self.percentile_us(0.99)))
    }

    fn percentile_us(&self, quantile: f64) -> f64 {
        let last = self.nanos.len() - 1;
        let rank = ((last as f64) * quantile).round() as usize;
        self.nanos[rank.min(last)] as f64 / 1000.0
    }
}

/// Resets the process's peak resident set (`VmHWM`), so the next reading is
/// the peak of what runs after this call. Silently does nothing where the
/// kernel does not support it.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set of this process in bytes (`VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    status_field_bytes("VmHWM:")
}

/// Current resident set of this process in bytes (`VmRSS`).
pub fn current_rss_bytes() -> Option<u64> {
    status_field_bytes("VmRSS:")
}

fn status_field_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Sum of the apparent sizes of every file under `path` (or of `path` itself).
pub fn disk_bytes(path: &Path) -> u64 {
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if metadata.is_file() {
        return metadata.len();
    }
    if !metadata.is_dir() {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| disk_bytes(&entry.path()))
        .sum()
}

/// Median of a non-empty slice (the mean of the middle two for an even length).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.is_empty() {
        f64::NAN
    } else if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_lengths() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn percentiles_pick_ranks() {
        let mut latencies = Latencies::with_capacity(100);
        latencies.nanos = (1..=100).map(|i| i * 1000).collect();
        let (p50, p99) = latencies.p50_p99_us().expect("some");
        assert_eq!(p50, 51.0);
        assert_eq!(p99, 99.0);
    }

    #[test]
    fn rss_is_readable_on_linux() {
        assert!(current_rss_bytes().is_some_and(|b| b > 0));
        assert!(peak_rss_bytes().is_some_and(|b| b > 0));
    }
}
