//! Long-running campaigns and the benchmark front door: `chaos` (the SIGKILL
//! crash campaign), `fuzz` (cargo-fuzz targets under `fuzz/`), `bench` and
//! `perf-gates` (the `batpak-bench` crate).

use crate::error::{XtaskError, XtaskResult};
use crate::process::{repository_root, Invocation};
use crate::toolchain::{nightly_version, CARGO_FUZZ};

/// Default number of kills of `cargo xtask chaos` (the preflight budget in TARGETS.md).
pub const DEFAULT_KILLS: u64 = 5000;
/// Default seconds per fuzz target.
pub const DEFAULT_FUZZ_SECONDS: u64 = 60;

/// The crash campaign: `tests/crash.rs` in release mode with fault hooks,
/// told how many kills to make through `BATPAK_CRASH_KILLS`.
pub fn chaos(kills: u64) -> XtaskResult<()> {
    let crash_test = repository_root().join("tests").join("crash.rs");
    if !crash_test.is_file() {
        return Err(XtaskError::Missing(format!(
            "{} not found: the crash campaign has not been written yet, so nothing was run",
            crash_test.display()
        )));
    }
    Invocation::cargo(&[
        "test",
        "--release",
        "--features",
        "dangerous-test-hooks",
        "--test",
        "crash",
        "--",
        "--include-ignored",
        "--nocapture",
    ])
    .env("BATPAK_CRASH_KILLS", &kills.to_string())
    .run()?;
    // The other campaigns at their long settings; each prints its own summary
    // line (faults injected, crash images, flips, violations) and fails on
    // any violation.
    let long_campaigns: [(&str, &[(&str, &str)]); 3] = [
        (
            "chaos_faults",
            &[
                ("BATPAK_CHAOS_ITERATIONS", "0"),
                ("BATPAK_CHAOS_IMAGES", "8"),
            ],
        ),
        (
            "chaos_model",
            &[
                ("BATPAK_CHAOS_CASES", "2000"),
                ("BATPAK_CHAOS_STEPS", "100"),
            ],
        ),
        ("chaos_corruption", &[("BATPAK_CHAOS_FLIPS", "10000")]),
    ];
    for (test, settings) in long_campaigns {
        if !repository_root()
            .join("tests")
            .join(format!("{test}.rs"))
            .is_file()
        {
            continue;
        }
        let mut invocation = Invocation::cargo(&[
            "test",
            "--release",
            "--all-features",
            "--test",
            test,
            "--",
            "--nocapture",
        ]);
        for (name, value) in settings {
            invocation = invocation.env(name, value);
        }
        invocation.run()?;
    }
    Ok(())
}

/// Whether the repository has cargo-fuzz targets.
pub fn fuzz_available() -> bool {
    repository_root().join("fuzz").join("Cargo.toml").is_file()
}

/// Runs every cargo-fuzz target for `seconds` each, on the nightly toolchain.
pub fn fuzz(seconds: u64) -> XtaskResult<()> {
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
        // Each run of this target creates and syncs a store: keep inputs
        // small enough that it explores instead of growing slowly.
        if target == "segment_recovery" {
            arguments.extend_from_slice(&["-len_control=0", "-max_len=2048"]);
        }
        fuzz_command(&arguments).run()?;
    }
    Ok(())
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

/// The performance gates: the benchmark with `--gates` plus any extra arguments.
pub fn perf_gates(arguments: &[String]) -> XtaskResult<()> {
    let mut all_arguments = vec!["--gates".to_string()];
    all_arguments.extend_from_slice(arguments);
    bench(&all_arguments)
}
