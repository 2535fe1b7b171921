//! The fsync probe of `cargo xtask doctor`: how fast can this disk make a
//! small write durable? Durable single appends can never beat this number
//! (TARGETS.md calls it P1), so it is the first thing to know about a machine.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{XtaskError, XtaskResult};

/// Size of one probe write: one page, like a small group-commit batch.
pub const WRITE_BYTES: usize = 4096;
/// P1 of TARGETS.md: appending 4 KiB + fdatasync on the reference machine.
const REFERENCE_SYNCS_PER_SECOND: f64 = 5300.0;
/// Upper bound on iterations, so a typo cannot fill a disk.
pub const ITERATIONS_MAX: usize = 100_000;

/// Timing of one probe run.
#[derive(Clone, Debug)]
pub struct ProbeResult {
    /// Measured write + `fdatasync` iterations.
    pub iterations: usize,
    /// Iterations divided by the summed time of all iterations.
    pub syncs_per_second: f64,
    /// Median time of one write + sync, in microseconds.
    pub latency_us_p50: u64,
    /// 99th percentile time of one write + sync, in microseconds.
    pub latency_us_p99: u64,
    /// Slowest write + sync, in microseconds.
    pub latency_us_max: u64,
}

/// The scratch directory name of one probe run of this process.
fn scratch_name(label: &str) -> String {
    format!(".batpak-fsync-probe-{}-{label}", std::process::id())
}

/// A scratch directory removed again when dropped, even on error.
struct ScratchDirectory {
    path: PathBuf,
}

impl ScratchDirectory {
    fn create(parent: &Path, label: &str) -> XtaskResult<Self> {
        let path = parent.join(scratch_name(label));
        fs::create_dir_all(&path)
            .map_err(|source| XtaskError::io("creating probe directory", &path, source))?;
        Ok(ScratchDirectory { path })
    }
}

impl Drop for ScratchDirectory {
    fn drop(&mut self) {
        // Best effort: a leftover probe directory is harmless and named clearly.
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Appends `iterations` blocks of 4 KiB to a new file, `fdatasync` after each
/// (`File::sync_data`). Each sync also has to persist the grown file size.
pub fn probe_append(parent: &Path, iterations: usize) -> XtaskResult<ProbeResult> {
    let scratch = ScratchDirectory::create(parent, "append")?;
    let path = scratch.path.join("append.probe");
    let mut file = create_synced_file(&path)?;
    let mut latencies = Vec::with_capacity(iterations);
    let mut block = [0u8; WRITE_BYTES];
    for iteration in 0..iterations {
        fill_block(&mut block, iteration);
        let started = Instant::now();
        file.write_all(&block)
            .map_err(|source| XtaskError::io("appending to", &path, source))?;
        file.sync_data()
            .map_err(|source| XtaskError::io("fdatasync of", &path, source))?;
        latencies.push(started.elapsed());
    }
    Ok(summarize(&latencies))
}

/// Writes `iterations` blocks once and syncs them, then rewrites each block in
/// place with `fdatasync` after each: the cost of a sync when the file size
/// does not change (as with a preallocated segment).
pub fn probe_rewrite(parent: &Path, iterations: usize) -> XtaskResult<ProbeResult> {
    let scratch = ScratchDirectory::create(parent, "rewrite")?;
    let path = scratch.path.join("rewrite.probe");
    let mut file = create_synced_file(&path)?;
    let mut block = [0u8; WRITE_BYTES];
    for iteration in 0..iterations {
        fill_block(&mut block, iteration);
        file.write_all(&block)
            .map_err(|source| XtaskError::io("preallocating", &path, source))?;
    }
    file.sync_all()
        .map_err(|source| XtaskError::io("fsync of", &path, source))?;
    let mut latencies = Vec::with_capacity(iterations);
    for iteration in 0..iterations {
        fill_block(&mut block, iteration + iterations);
        let offset = (iteration * WRITE_BYTES) as u64;
        let started = Instant::now();
        file.write_all_at(&block, offset)
            .map_err(|source| XtaskError::io("rewriting", &path, source))?;
        file.sync_data()
            .map_err(|source| XtaskError::io("fdatasync of", &path, source))?;
        latencies.push(started.elapsed());
    }
    Ok(summarize(&latencies))
}

/// Creates the file and makes its existence durable (file and directory
/// fsync), so that creation cost stays out of the measured iterations.
fn create_synced_file(path: &Path) -> XtaskResult<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .read(true)
        .open(path)
        .map_err(|source| XtaskError::io("creating", path, source))?;
    file.sync_all()
        .map_err(|source| XtaskError::io("fsync of", path, source))?;
    if let Some(directory) = path.parent() {
        File::open(directory)
            .and_then(|handle| handle.sync_all())
            .map_err(|source| XtaskError::io("fsync of directory", directory, source))?;
    }
    Ok(file)
}

/// Different bytes per iteration, so no layer can skip an identical write.
fn fill_block(block: &mut [u8; WRITE_BYTES], iteration: usize) {
    let seed = (iteration as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for (index, byte) in block.iter_mut().enumerate() {
        *byte = (seed >> ((index % 8) * 8)) as u8 ^ index as u8;
    }
}

/// Nearest-rank percentile of sorted latencies, in microseconds.
fn percentile_us(sorted: &[Duration], percent: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    let index = (rank - 1).min(sorted.len() - 1);
    u64::try_from(sorted[index].as_micros()).unwrap_or(u64::MAX)
}

fn summarize(latencies: &[Duration]) -> ProbeResult {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    let total: Duration = sorted.iter().sum();
    let syncs_per_second = if total.is_zero() {
        f64::INFINITY
    } else {
        sorted.len() as f64 / total.as_secs_f64()
    };
    ProbeResult {
        iterations: sorted.len(),
        syncs_per_second,
        latency_us_p50: percentile_us(&sorted, 50),
        latency_us_p99: percentile_us(&sorted, 99),
        latency_us_max: percentile_us(&sorted, 100),
    }
}

/// Durability verdict for an append probe, one line.
pub fn verdict(append: &ProbeResult, filesystem_type: Option<&str>) -> String {
    let rate = append.syncs_per_second;
    let volatile_filesystem = matches!(filesystem_type, Some("tmpfs" | "ramfs"));
    if volatile_filesystem {
        format!(
            "VOLATILE: the data directory is on {}; fdatasync is a no-op and nothing survives a reboot",
            filesystem_type.unwrap_or("memory")
        )
    } else if append.latency_us_p50 < 20 {
        format!(
            "SUSPICIOUS: a 4 KiB fdatasync takes {} µs (p50), faster than a real flush; this disk or a volatile write cache probably does not honour it, so durable receipts may not survive power loss",
            append.latency_us_p50
        )
    } else if rate < 200.0 {
        format!(
            "SLOW: about {rate:.0} durable syncs/s; durable single appends (sync_every_n_events(1)) cannot exceed that, so rely on group commit (concurrent appenders share a sync), batches, or n > 1"
        )
    } else {
        let comparison = if rate < REFERENCE_SYNCS_PER_SECOND / 2.0 {
            "well below the TARGETS.md reference P1 (~5.3k/s, p50 ~185 µs): the disk is slower or busy, rerun when idle before judging W2/W4"
        } else {
            "comparable to the TARGETS.md reference P1 (~5.3k/s, p50 ~185 µs)"
        };
        format!(
            "OK: about {rate:.0} durable syncs/s (p50 {} µs, p99 {} µs) bound durable single appends here; {comparison}",
            append.latency_us_p50, append.latency_us_p99
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(values: &[u64]) -> Vec<Duration> {
        values
            .iter()
            .map(|&value| Duration::from_micros(value))
            .collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted = micros(&(1..=200).collect::<Vec<_>>());
        assert_eq!(percentile_us(&sorted, 50), 100);
        assert_eq!(percentile_us(&sorted, 99), 198);
        assert_eq!(percentile_us(&sorted, 100), 200);
        assert_eq!(percentile_us(&[], 50), 0);
        assert_eq!(percentile_us(&micros(&[7]), 99), 7);
    }

    #[test]
    fn summary_rate_is_iterations_over_total_time() {
        let result = summarize(&micros(&[250, 250, 250, 250]));
        assert_eq!(result.iterations, 4);
        assert!((result.syncs_per_second - 4000.0).abs() < 1e-6);
        assert_eq!(result.latency_us_p50, 250);
    }

    #[test]
    fn verdict_flags_impossibly_fast_syncs_and_memory_filesystems() {
        let fast = summarize(&micros(&[3, 4, 5]));
        assert!(verdict(&fast, Some("ext4")).starts_with("SUSPICIOUS"));
        assert!(verdict(&fast, Some("tmpfs")).starts_with("VOLATILE"));
        let normal = summarize(&micros(&[180, 190, 200]));
        assert!(verdict(&normal, Some("ext4")).starts_with("OK"));
        let slow = summarize(&micros(&[9000, 9000]));
        assert!(verdict(&slow, None).starts_with("SLOW"));
    }

    #[test]
    fn probes_run_and_clean_up_after_themselves() {
        let parent = std::env::temp_dir();
        let append = probe_append(&parent, 3).expect("append probe runs");
        let rewrite = probe_rewrite(&parent, 3).expect("rewrite probe runs");
        assert_eq!(append.iterations, 3);
        assert_eq!(rewrite.iterations, 3);
        for label in ["append", "rewrite"] {
            let leftover = parent.join(scratch_name(label));
            assert!(!leftover.exists(), "scratch directory {label} was removed");
        }
    }
}
