//! Samples, result rows, the printed table, the JSON file and baseline diffs.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::budgets::{BudgetLine, RunsLine};
use crate::error::{io_err, BenchResult};
use crate::measure::median;

/// One repetition of one workload on one engine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Wall time of the measured part.
    pub seconds: f64,
    /// Median per-operation latency, where operations are timed one by one.
    pub p50_us: Option<f64>,
    /// 99th percentile per-operation latency.
    pub p99_us: Option<f64>,
    /// Bytes the engine left on disk (after close).
    pub bytes_on_disk: Option<u64>,
    /// Peak resident set of the process doing the work.
    pub peak_rss_bytes: Option<u64>,
    /// Workload-specific numbers (read time after open, violations, ...).
    pub extra: BTreeMap<String, f64>,
}

/// The aggregate of every repetition of one workload on one engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// `batpak`, `sqlite` or `raw` (the physical-limit loops).
    pub engine: String,
    /// Workload id (`W1`, `W4x8`, `W5-crash`, `P1`, ...).
    pub workload: String,
    /// Operations per repetition (events, syncs, opens, entities).
    pub n: u64,
    /// Median wall time.
    pub seconds_median: f64,
    /// Fastest repetition.
    pub seconds_min: f64,
    /// Slowest repetition.
    pub seconds_max: f64,
    /// `n / seconds_median`.
    pub per_second: f64,
    /// Median over repetitions of the per-operation p50.
    pub p50_us: Option<f64>,
    /// Median over repetitions of the per-operation p99.
    pub p99_us: Option<f64>,
    /// Median bytes on disk.
    pub bytes_on_disk: Option<u64>,
    /// Largest peak resident set seen.
    pub peak_rss_bytes: Option<u64>,
    /// Medians of the workload-specific numbers.
    pub extra: BTreeMap<String, f64>,
    /// Every repetition, in order.
    pub samples: Vec<Sample>,
    /// Errors of failed repetitions (a row with no samples failed entirely).
    pub errors: Vec<String>,
}

impl Row {
    /// Aggregates the samples of one workload on one engine.
    pub fn aggregate(
        engine: &str,
        workload: &str,
        n: u64,
        samples: Vec<Sample>,
        errors: Vec<String>,
    ) -> Row {
        let seconds: Vec<f64> = samples.iter().map(|s| s.seconds).collect();
        let seconds_median = median(&seconds);
        let optional_median = |values: Vec<f64>| (!values.is_empty()).then(|| median(&values));
        let p50_us = optional_median(samples.iter().filter_map(|s| s.p50_us).collect());
        let p99_us = optional_median(samples.iter().filter_map(|s| s.p99_us).collect());
        let bytes_on_disk = optional_median(
            samples
                .iter()
                .filter_map(|s| s.bytes_on_disk.map(|b| b as f64))
                .collect(),
        )
        .map(|b| b as u64);
        let peak_rss_bytes = samples.iter().filter_map(|s| s.peak_rss_bytes).max();
        let mut keys: Vec<&String> = samples.iter().flat_map(|s| s.extra.keys()).collect();
        keys.sort();
        keys.dedup();
        let extra = keys
            .into_iter()
            .map(|key| {
                let values: Vec<f64> = samples
                    .iter()
                    .filter_map(|s| s.extra.get(key).copied())
                    .collect();
                (key.clone(), median(&values))
            })
            .collect();
        Row {
            engine: engine.to_string(),
            workload: workload.to_string(),
            n,
            seconds_median,
            seconds_min: seconds.iter().copied().fold(f64::INFINITY, f64::min),
            seconds_max: seconds.iter().copied().fold(0.0, f64::max),
            per_second: n as f64 / seconds_median,
            p50_us,
            p99_us,
            bytes_on_disk,
            peak_rss_bytes,
            extra,
            samples,
            errors,
        }
    }

    /// True if at least one repetition produced a sample.
    pub fn ok(&self) -> bool {
        !self.samples.is_empty()
    }

    /// One printed line.
    pub fn line(&self) -> String {
        let mut text = format!("{:<7} {:<9} n={:<8}", self.engine, self.workload, self.n);
        if !self.ok() {
            let first = self
                .errors
                .first()
                .map(String::as_str)
                .unwrap_or("no sample");
            text.push_str(&format!(" FAILED: {first}"));
            return text;
        }
        text.push_str(&format!(
            " {:>9} [{}..{}]  {:>9}/s [{}..{}]",
            duration(self.seconds_median),
            duration(self.seconds_min),
            duration(self.seconds_max),
            count(self.per_second),
            count(self.n as f64 / self.seconds_max),
            count(self.n as f64 / self.seconds_min),
        ));
        if let (Some(p50), Some(p99)) = (self.p50_us, self.p99_us) {
            text.push_str(&format!("  p50 {} p99 {}", micros(p50), micros(p99)));
        }
        if let Some(bytes) = self.bytes_on_disk {
            text.push_str(&format!("  disk {}", bytes_text(bytes as f64)));
            if self.n > 0 && self.workload.starts_with('W') {
                text.push_str(&format!(" ({:.0} B/ev)", bytes as f64 / self.n as f64));
            }
        }
        if let Some(rss) = self.peak_rss_bytes {
            text.push_str(&format!("  rss {}", bytes_text(rss as f64)));
        }
        for (key, value) in &self.extra {
            text.push_str(&format!("  {key}={}", number(*value)));
        }
        if !self.errors.is_empty() {
            text.push_str(&format!("  ({} failed repetitions)", self.errors.len()));
        }
        text
    }
}

/// Everything one run produced: saved as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// Seconds since the Unix epoch when the run ended.
    pub finished_unix_s: u64,
    /// `neutral` or `native`.
    pub surface: String,
    /// True for a `--quick` run (small n: not comparable with a full run).
    pub quick: bool,
    /// Repetitions per workload.
    pub repeat: u32,
    /// One row per engine and workload.
    pub rows: Vec<Row>,
    /// The budget ratios.
    pub budgets: Vec<BudgetLine>,
}

/// The budgets of several runs (`--runs`), saved next to the last run's
/// report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunsReport {
    /// Seconds since the Unix epoch when the last run ended.
    pub finished_unix_s: u64,
    /// Each run's budget lines, in the order the runs ran.
    pub runs: Vec<Vec<BudgetLine>>,
    /// Each budget judged over the runs.
    pub over_runs: Vec<RunsLine>,
}

impl RunsReport {
    /// Writes the report as pretty JSON.
    pub fn save(&self, path: &Path) -> BenchResult<()> {
        save_json(self, path)
    }
}

fn save_json<T: Serialize>(value: &T, path: &Path) -> BenchResult<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
    }
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text).map_err(io_err("write", path))
}

impl RunReport {
    /// Writes the report as pretty JSON.
    pub fn save(&self, path: &Path) -> BenchResult<()> {
        save_json(self, path)
    }

    /// Reads a saved report.
    pub fn load(path: &Path) -> BenchResult<RunReport> {
        let text = std::fs::read_to_string(path).map_err(io_err("read", path))?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// Threshold above which a slower time per operation is flagged.
pub const REGRESSION_THRESHOLD: f64 = 0.10;

/// One row of a baseline comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Engine and workload.
    pub key: String,
    /// Baseline median seconds per operation.
    pub baseline_s_per_op: f64,
    /// Current median seconds per operation.
    pub current_s_per_op: f64,
    /// True if current is more than [`REGRESSION_THRESHOLD`] slower.
    pub regression: bool,
}

/// Compares two runs row by row (same engine, workload and n); rows present in
/// only one of them are skipped.
pub fn compare(baseline: &RunReport, current: &RunReport) -> Vec<Comparison> {
    let mut out = Vec::new();
    for row in current.rows.iter().filter(|r| r.ok()) {
        let Some(base) = baseline.rows.iter().find(|b| {
            b.ok() && b.engine == row.engine && b.workload == row.workload && b.n == row.n
        }) else {
            continue;
        };
        let ops = row.n.max(1) as f64;
        let baseline_s_per_op = base.seconds_median / ops;
        let current_s_per_op = row.seconds_median / ops;
        out.push(Comparison {
            key: format!("{} {}", row.engine, row.workload),
            baseline_s_per_op,
            current_s_per_op,
            regression: current_s_per_op > baseline_s_per_op * (1.0 + REGRESSION_THRESHOLD),
        });
    }
    out
}

/// A duration in the most readable unit.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        "-".into()
    } else if seconds >= 1.0 {
        format!("{seconds:.3}s")
    } else if seconds >= 1e-3 {
        format!("{:.2}ms", seconds * 1e3)
    } else {
        format!("{:.1}µs", seconds * 1e6)
    }
}

/// Microseconds in the most readable unit.
pub fn micros(us: f64) -> String {
    duration(us / 1e6)
}

/// A rate or count with k/M suffixes.
pub fn count(value: f64) -> String {
    if !value.is_finite() {
        "-".into()
    } else if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.1}")
    }
}

/// Bytes with binary suffixes.
pub fn bytes_text(bytes: f64) -> String {
    if bytes >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}GiB", bytes / (1024.0 * 1024.0 * 1024.0))
    } else if bytes >= 1024.0 * 1024.0 {
        format!("{:.1}MiB", bytes / (1024.0 * 1024.0))
    } else if bytes >= 1024.0 {
        format!("{:.1}KiB", bytes / 1024.0)
    } else {
        format!("{bytes:.0}B")
    }
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seconds: f64) -> Sample {
        Sample {
            seconds,
            ..Sample::default()
        }
    }

    fn report(rows: Vec<Row>) -> RunReport {
        RunReport {
            finished_unix_s: 0,
            surface: "neutral".into(),
            quick: false,
            repeat: 3,
            rows,
            budgets: Vec::new(),
        }
    }

    #[test]
    fn aggregate_takes_median_and_spread() {
        let row = Row::aggregate(
            "batpak",
            "W1",
            100,
            vec![sample(3.0), sample(1.0), sample(2.0)],
            vec![],
        );
        assert_eq!(row.seconds_median, 2.0);
        assert_eq!(row.seconds_min, 1.0);
        assert_eq!(row.seconds_max, 3.0);
        assert_eq!(row.per_second, 50.0);
    }

    #[test]
    fn compare_flags_only_slowdowns_beyond_ten_percent() {
        let base = report(vec![
            Row::aggregate("batpak", "W1", 100, vec![sample(1.0)], vec![]),
            Row::aggregate("sqlite", "W1", 100, vec![sample(1.0)], vec![]),
            Row::aggregate("batpak", "W2", 100, vec![sample(1.0)], vec![]),
        ]);
        let current = report(vec![
            Row::aggregate("batpak", "W1", 100, vec![sample(1.2)], vec![]),
            Row::aggregate("sqlite", "W1", 100, vec![sample(1.05)], vec![]),
            Row::aggregate("batpak", "W2", 50, vec![sample(9.0)], vec![]),
        ]);
        let diff = compare(&base, &current);
        assert_eq!(diff.len(), 2, "rows with a different n are not compared");
        assert!(diff[0].regression);
        assert!(!diff[1].regression);
    }
}
