//! Long-running campaigns and the benchmark front door: `chaos` (the SIGKILL
//! crash campaign), `fuzz` (cargo-fuzz targets under `fuzz/`), `bench` and
//! `perf-gates` (the `batpak-bench` crate).

use std::time::Instant;

use crate::error::{XtaskError, XtaskResult};
use crate::process::{repository_root, Invocation};
use crate::summary::{CampaignTable, Row, Status, Tally};
use crate::toolchain::{nightly_version, CARGO_FUZZ};

/// Default number of kills of `cargo xtask chaos` (the preflight budget in TARGETS.md).
pub const DEFAULT_KILLS: u64 = 5000;
/// Default seconds per fuzz target.
pub const DEFAULT_FUZZ_SECONDS: u64 = 60;

/// Runs one campaign, teeing its output, and returns its row: the counts
/// of its summary lines, how it ended and how long it took.
fn run_campaign(name: &str, invocation: &Invocation, extra: &dyn Fn(&str, &mut Tally)) -> Row {
    let started = Instant::now();
    let mut tally = Tally::default();
    let result = invocation.run_teeing(&mut |line| {
        if let Some(counts) = Tally::parse_line(line) {
            tally.add(&counts);
        }
        extra(line, &mut tally);
    });
    if let Err(error) = &result {
        eprintln!("error: campaign `{name}` failed: {error}");
    }
    Row {
        name: name.to_string(),
        status: if result.is_ok() {
            Status::Passed
        } else {
            Status::Failed
        },
        tally,
        elapsed: started.elapsed(),
        command: invocation.display(),
    }
}

/// Fails with the names of the rows from `first_row` on that failed or
/// found violations.
fn check_rows(table: &CampaignTable, first_row: usize) -> XtaskResult<()> {
    let failed: Vec<String> = table.rows[first_row.min(table.rows.len())..]
        .iter()
        .filter(|row| row.is_bad())
        .map(|row| row.name.clone())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(XtaskError::CampaignsFailed { campaigns: failed })
    }
}

/// A campaign test binary in release mode with the fault hooks, its output
/// shown as it runs.
fn campaign_test(test: &str, ignored_too: bool) -> Invocation {
    let mut arguments = vec![
        "test",
        "--release",
        "--all-features",
        "--test",
        test,
        "--",
        "--nocapture",
    ];
    if ignored_too {
        arguments.push("--include-ignored");
    }
    Invocation::cargo(&arguments)
}

/// A long campaign: its name in the table, its test binary, and the
/// environment that makes it long.
type LongCampaign = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The long campaigns, each a test binary with its long settings.
const LONG_CAMPAIGNS: [LongCampaign; 3] = [
    (
        "faults (every call of every I/O point)",
        "chaos_faults",
        &[
            ("BATPAK_CHAOS_ITERATIONS", "0"),
            ("BATPAK_CHAOS_IMAGES", "8"),
        ],
    ),
    (
        "model check",
        "chaos_model",
        &[
            ("BATPAK_CHAOS_CASES", "2000"),
            ("BATPAK_CHAOS_STEPS", "100"),
        ],
    ),
    (
        "corruption (flips, truncations)",
        "chaos_corruption",
        &[("BATPAK_CHAOS_FLIPS", "10000")],
    ),
];

/// The crash campaign (`tests/crash.rs`, `kills` SIGKILLs, told through
/// `BATPAK_CRASH_KILLS`) and then the other campaigns at their long
/// settings. Every campaign runs even if an earlier one failed; each adds
/// its row to `table`. Fails if any campaign failed or found a violation.
pub fn chaos(kills: u64, table: &mut CampaignTable) -> XtaskResult<()> {
    let crash_test = repository_root().join("tests").join("crash.rs");
    if !crash_test.is_file() {
        return Err(XtaskError::Missing(format!(
            "{} not found: the crash campaign has not been written yet, so nothing was run",
            crash_test.display()
        )));
    }
    let first_row = table.rows.len();
    table.rows.push(run_campaign(
        "crash (SIGKILL)",
        &campaign_test("crash", true).env("BATPAK_CRASH_KILLS", &kills.to_string()),
        &|_, _| {},
    ));
    for (name, test, settings) in LONG_CAMPAIGNS {
        if !repository_root()
            .join("tests")
            .join(format!("{test}.rs"))
            .is_file()
        {
            continue;
        }
        let mut invocation = campaign_test(test, false);
        for (variable, value) in settings {
            invocation = invocation.env(variable, value);
        }
        table.rows.push(run_campaign(name, &invocation, &|_, _| {}));
    }
    check_rows(table, first_row)
}

/// Whether the repository has cargo-fuzz targets.
pub fn fuzz_available() -> bool {
    repository_root().join("fuzz").join("Cargo.toml").is_file()
}

/// Counts a fuzz run: libFuzzer's crash report is a violation, and a clean
/// run that found nothing reports zero.
fn fuzz_outcome(line: &str, tally: &mut Tally) {
    if line.trim_start().starts_with("SUMMARY: libFuzzer:") {
        tally.violations = Some(tally.violations.unwrap_or(0) + 1);
    }
}

/// Runs every cargo-fuzz target for `seconds` each, on the nightly toolchain,
/// adding one row per target to `table`. Fails if any target failed.
pub fn fuzz(seconds: u64, table: &mut CampaignTable) -> XtaskResult<()> {
    if !fuzz_available() {
        println!("no fuzz targets yet (there is no fuzz/Cargo.toml); nothing to fuzz");
        return Ok(());
    }
    // cargo-fuzz needs nightly-only compiler flags. With no nightly
    // toolchain, the stable one accepts them under RUSTC_BOOTSTRAP=1.
    let nightly = nightly_version();
    match &nightly {
        Some(version) => println!("ok: {version}"),
        None => println!("no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1"),
    }
    let fuzz_command = |arguments: &[&str]| {
        let mut all: Vec<&str> = Vec::new();
        if nightly.is_some() {
            all.push("+nightly");
        }
        all.extend_from_slice(arguments);
        let invocation = Invocation::cargo(&all);
        if nightly.is_some() {
            invocation
        } else {
            invocation.env("RUSTC_BOOTSTRAP", "1")
        }
    };
    CARGO_FUZZ.ensure_installed()?;
    let listing = fuzz_command(&["fuzz", "list"]);
    println!("$ {}", listing.display());
    let Some(text) = listing.output_text() else {
        return Err(XtaskError::CommandFailed {
            command: listing.display(),
            status: "no target list".to_string(),
        });
    };
    let targets: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    if targets.is_empty() {
        return Err(XtaskError::Missing(
            "fuzz/ exists but `cargo fuzz list` shows no targets".to_string(),
        ));
    }
    println!("fuzz targets: {}", targets.join(", "));
    let time_limit = format!("-max_total_time={seconds}");
    let first_row = table.rows.len();
    for target in targets {
        let mut arguments = vec![
            "fuzz",
            "run",
            target,
            "--",
            &time_limit,
            "-rss_limit_mb=2048",
            "-malloc_limit_mb=512",
        ];
        // Each run of these targets creates and syncs a store: keep inputs
        // small enough that it explores instead of growing slowly.
        if matches!(target, "segment_recovery" | "checkpoint_loading") {
            arguments.extend_from_slice(&["-len_control=0", "-max_len=2048"]);
        }
        let mut row = run_campaign(
            &format!("fuzz {target}"),
            &fuzz_command(&arguments),
            &fuzz_outcome,
        );
        if row.status == Status::Passed {
            // A clean exit of libFuzzer: it found nothing in this time.
            row.tally.violations.get_or_insert(0);
            row.tally.fuzz_seconds.get_or_insert(row.elapsed.as_secs());
        }
        table.rows.push(row);
    }
    check_rows(table, first_row)
}

/// `cargo run --release -p batpak-bench -- <arguments>`.
pub fn bench(arguments: &[String]) -> XtaskResult<()> {
    let bench_manifest = repository_root()
        .join("crates")
        .join("batpak-bench")
        .join("Cargo.toml");
    if !bench_manifest.is_file() {
        return Err(XtaskError::Missing(format!(
            "{} not found: the benchmark crate has not been written yet",
            bench_manifest.display()
        )));
    }
    Invocation::cargo(&["run", "--release", "-p", "batpak-bench", "--"])
        .args(arguments)
        .run()
}

/// Runs of the whole bench the gates judge by default: on a shared
/// machine the disk and the CPU slow down in phases that can cover a whole
/// run, so a budget is judged by the median of three runs' ratios.
pub const PERF_GATE_RUNS: &str = "3";

/// The performance gates: the benchmark with `--gates` plus any extra
/// arguments, over [`PERF_GATE_RUNS`] runs unless they say `--runs`.
pub fn perf_gates(arguments: &[String]) -> XtaskResult<()> {
    bench(&perf_gate_arguments(arguments))
}

fn perf_gate_arguments(arguments: &[String]) -> Vec<String> {
    let mut all_arguments = vec!["--gates".to_string()];
    let chooses_runs = arguments
        .iter()
        .any(|a| a == "--runs" || a.starts_with("--runs="));
    if !chooses_runs {
        all_arguments.extend(["--runs".to_string(), PERF_GATE_RUNS.to_string()]);
    }
    all_arguments.extend_from_slice(arguments);
    all_arguments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(text: &str) -> Invocation {
        Invocation::new("sh").args(&["-c", text])
    }

    #[test]
    fn perf_gates_judge_three_runs_unless_told_otherwise() {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            perf_gate_arguments(&strings(&["--surface", "neutral"])),
            strings(&["--gates", "--runs", "3", "--surface", "neutral"])
        );
        assert_eq!(
            perf_gate_arguments(&strings(&["--runs", "1"])),
            strings(&["--gates", "--runs", "1"])
        );
        assert_eq!(
            perf_gate_arguments(&strings(&["--runs=5"])),
            strings(&["--gates", "--runs=5"])
        );
    }

    #[test]
    fn a_campaign_row_sums_its_summary_lines_from_stdout_and_stderr() {
        let row = run_campaign(
            "two",
            &script(
                "echo 'exhaustive flip campaign: 10 flips, 1 reported by verify, 0 violations'; \
                 echo 'random flip campaign: 5 flips, 5 reported by verify, 0 violations' >&2",
            ),
            &|_, _| {},
        );
        assert_eq!(row.status, Status::Passed);
        assert_eq!((row.tally.flips, row.tally.violations), (Some(15), Some(0)));
        assert!(!row.is_bad());
    }

    #[test]
    fn a_failing_campaign_fails_the_table_even_without_violations() {
        let mut table = CampaignTable::default();
        table.rows.push(run_campaign(
            "dies",
            &script("echo 'crash campaign: 3 kills, 0 violations'; exit 101"),
            &|_, _| {},
        ));
        assert_eq!(table.rows[0].status, Status::Failed);
        assert_eq!(table.rows[0].tally.kills, Some(3));
        match check_rows(&table, 0) {
            Err(XtaskError::CampaignsFailed { campaigns }) => assert_eq!(campaigns, vec!["dies"]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_fuzzer_crash_report_is_a_violation() {
        let row = run_campaign(
            "fuzz x",
            &script("echo 'SUMMARY: libFuzzer: deadly signal' >&2; exit 77"),
            &fuzz_outcome,
        );
        assert_eq!(row.tally.violations, Some(1));
        assert!(row.is_bad());
    }
}
