//! `batpak-bench`: the standard workloads of TARGETS.md (W1–W7) for batpak
//! and its SQLite peer, the physical limits of this machine (P1–P2), and the
//! budget ratios, measured in one run. See `docs/reference/BENCHMARKS.md`.

mod batpak_engine;
mod budgets;
mod child;
mod error;
mod fixture;
mod measure;
mod physical;
mod report;
mod runner;
mod sqlite_engine;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use crate::budgets::{BudgetLine, Status};
use crate::child::ChildEngine;
use crate::error::{BenchError, BenchResult};
use crate::fixture::Fixture;
use crate::report::{compare, RunReport, RunsReport, REGRESSION_THRESHOLD};
use crate::runner::{Plan, Sizes, WORKLOAD_IDS};

/// Which public surface of batpak the workloads use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Surface {
    /// The plain store API, no projection cache.
    Neutral,
    /// With the native projection cache (the projection rows).
    Native,
}

/// Benchmarks batpak against SQLite and the physical limits of this machine.
#[derive(Debug, Parser)]
#[command(name = "batpak-bench", version)]
struct Args {
    /// Public surface: `neutral` (no projection cache) or `native`.
    #[arg(long, value_enum, default_value = "neutral")]
    surface: Surface,
    /// Also save the results as the named baseline (target/bench/baselines/NAME.json).
    #[arg(long, value_name = "NAME")]
    save: Option<String>,
    /// Compare with a saved baseline and flag slowdowns of more than 10 %.
    #[arg(long, value_name = "NAME")]
    compare: Option<String>,
    /// Exit with status 1 when any budget ratio is missed (with `--runs`,
    /// as judged over the runs).
    #[arg(long)]
    gates: bool,
    /// Run the whole bench this many times and judge each budget by the
    /// median of its ratios (a durability budget by every run).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Small sizes for a smoke run (not comparable with a full run).
    #[arg(long)]
    quick: bool,
    /// Run only these workloads (comma-separated: P1,P2,W1,...,W7).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    only: Vec<String>,
    /// Engines to run (comma-separated: batpak,sqlite); P1/P2 run when selected.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "ENGINES",
        default_value = "batpak,sqlite"
    )]
    engines: Vec<String>,
    /// Repetitions of each workload (median and min..max are reported).
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Directory for the data (default: target/bench-data in the repository).
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,

    /// Marker syscalls around durable appends, for the strace receipt check.
    #[arg(long, hide = true)]
    trace_markers: bool,
    #[arg(long, hide = true, value_name = "DIR")]
    child_open: Option<PathBuf>,
    #[arg(long, hide = true, value_name = "DIR")]
    child_crash: Option<PathBuf>,
    #[arg(long, hide = true, value_enum)]
    child_engine: Option<ChildEngine>,
    #[arg(long, hide = true, default_value = "entity-7")]
    child_entity: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // The engine's panics are caught and reported per sample; one line each
    // is enough.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        eprintln!("  panic in {}: {info}", thread.name().unwrap_or("a thread"));
    }));
    match run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("batpak-bench: {error}");
            ExitCode::from(2)
        }
    }
}

/// The repository root (results go to `<root>/target/bench`).
fn repository_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn run(args: Args) -> BenchResult<ExitCode> {
    if args.child_open.is_some() || args.child_crash.is_some() {
        return run_child(&args).map(|()| ExitCode::SUCCESS);
    }
    let only = if args.only.is_empty() {
        WORKLOAD_IDS.iter().map(|s| s.to_string()).collect()
    } else {
        let mut ids = Vec::new();
        for id in &args.only {
            let id = id.trim().to_ascii_uppercase();
            if !WORKLOAD_IDS.contains(&id.as_str()) {
                return Err(BenchError::Check(format!(
                    "unknown workload {id:?}; known: {}",
                    WORKLOAD_IDS.join(",")
                )));
            }
            ids.push(id);
        }
        ids
    };
    if args.trace_markers {
        batpak_engine::enable_trace_markers();
    }
    let root = repository_root();
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| root.join("target").join("bench-data"));
    std::fs::create_dir_all(&dir).map_err(error::io_err("create", &dir))?;
    let results_dir = root.join("target").join("bench");

    match args.surface {
        Surface::Neutral => eprintln!("surface: neutral (no projection cache)"),
        Surface::Native => eprintln!(
            "surface: native (adds the projection rows W6p: per-entity folds through \
             Store::project and the FileCache)"
        ),
    }
    eprintln!(
        "data in {}; {} repetitions; {}",
        dir.display(),
        args.repeat,
        if args.quick {
            "quick sizes"
        } else {
            "full sizes"
        }
    );

    let fixture = Fixture::new()?;
    for engine in &args.engines {
        if engine != "batpak" && engine != "sqlite" {
            return Err(BenchError::Check(format!(
                "unknown engine {engine:?}; known: batpak,sqlite"
            )));
        }
    }
    let plan = Plan {
        only,
        engines: args.engines.clone(),
        native: args.surface == Surface::Native,
        repeat: args.repeat,
        sizes: Sizes::new(args.quick),
        dir,
    };
    let latest = results_dir.join("latest.json");
    let mut reports: Vec<RunReport> = Vec::new();
    for number in 1..=args.runs {
        if args.runs > 1 {
            eprintln!("run {number} of {}", args.runs);
            println!();
            println!("run {number} of {}", args.runs);
        }
        let report = run_once(&args, &plan, &fixture)?;
        report.save(&latest)?;
        println!("saved {}", latest.display());
        reports.push(report);
    }
    let Some(last) = reports.last() else {
        return Ok(ExitCode::SUCCESS);
    };
    if let Some(name) = &args.save {
        let path = baseline_path(&results_dir, name)?;
        last.save(&path)?;
        println!("saved baseline {}", path.display());
    }
    if let Some(name) = &args.compare {
        let path = baseline_path(&results_dir, name)?;
        let baseline = RunReport::load(&path)?;
        print_comparison(&baseline, last, name);
    }
    let verdicts: Vec<BudgetLine> = if args.runs > 1 {
        let runs: Vec<_> = reports.iter().map(|r| r.budgets.clone()).collect();
        let over_runs = budgets::over_runs(&runs);
        println!();
        println!(
            "budgets over {} runs (each ratio measured within its run; judged by the median \
             of the runs, durability by the worst run)",
            args.runs
        );
        for line in &over_runs {
            println!("{}", line.line());
        }
        let verdicts: Vec<BudgetLine> = over_runs.iter().map(|l| l.budget.clone()).collect();
        let path = results_dir.join("latest-runs.json");
        RunsReport {
            finished_unix_s: last.finished_unix_s,
            runs,
            over_runs,
        }
        .save(&path)?;
        print_counts(&verdicts);
        println!("saved {}", path.display());
        verdicts
    } else {
        last.budgets.clone()
    };
    let missed: Vec<&str> = verdicts
        .iter()
        .filter(|line| line.status == Status::Missed)
        .map(|line| line.id.as_str())
        .collect();
    if args.gates && !missed.is_empty() {
        println!("gates: missed {}", missed.join(", "));
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// One run of the plan: prints its table, budgets and diagnostics.
fn run_once(args: &Args, plan: &Plan, fixture: &Fixture) -> BenchResult<RunReport> {
    let rows = runner::run(plan, fixture)?;
    let budget_lines = budgets::evaluate(&rows);

    println!();
    println!(
        "results (median [min..max] over {} repetitions)",
        args.repeat.max(1)
    );
    for row in &rows {
        println!("{}", row.line());
    }
    println!();
    println!("budgets (TARGETS.md)");
    for line in &budget_lines {
        println!("{}", line.line());
    }
    let diagnostics = budgets::diagnostics(&rows);
    if !diagnostics.is_empty() {
        println!();
        println!("diagnostics (not budgets)");
        for line in &diagnostics {
            println!("{line}");
        }
    }
    print_counts(&budget_lines);
    Ok(RunReport {
        finished_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        surface: format!("{:?}", args.surface).to_ascii_lowercase(),
        quick: args.quick,
        repeat: args.repeat,
        rows,
        budgets: budget_lines,
    })
}

/// The line that counts met, missed and unavailable budgets.
fn print_counts(verdicts: &[BudgetLine]) {
    let count = |status: Status| verdicts.iter().filter(|l| l.status == status).count();
    println!(
        "{} met, {} missed, {} not available",
        count(Status::Met),
        count(Status::Missed),
        count(Status::NotAvailable)
    );
}

fn baseline_path(results_dir: &Path, name: &str) -> BenchResult<PathBuf> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with('.');
    if !valid {
        return Err(BenchError::Check(format!(
            "baseline name {name:?} must be letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(results_dir.join("baselines").join(format!("{name}.json")))
}

fn print_comparison(baseline: &RunReport, current: &RunReport, name: &str) {
    println!();
    println!(
        "compared with baseline {name} (time per operation; regression = more than {:.0} % slower)",
        REGRESSION_THRESHOLD * 100.0
    );
    if baseline.quick != current.quick {
        println!(
            "note: one run is --quick and the other is not; only rows with equal n are compared"
        );
    }
    let diffs = compare(baseline, current);
    for diff in &diffs {
        let change = (diff.current_s_per_op / diff.baseline_s_per_op - 1.0) * 100.0;
        println!(
            "{:<18} {:>10} -> {:>10}  {:+6.1} %{}",
            diff.key,
            report::duration(diff.baseline_s_per_op),
            report::duration(diff.current_s_per_op),
            change,
            if diff.regression { "  REGRESSION" } else { "" }
        );
    }
    let regressions = diffs.iter().filter(|d| d.regression).count();
    println!("{regressions} regressions in {} compared rows", diffs.len());
}

fn run_child(args: &Args) -> BenchResult<()> {
    let engine = args
        .child_engine
        .ok_or_else(|| BenchError::Child("--child-engine is required".into()))?;
    if let Some(dir) = &args.child_open {
        let outcome = match engine {
            ChildEngine::Batpak => batpak_engine::child_open(dir, &args.child_entity)?,
            ChildEngine::Sqlite => sqlite_engine::child_open(dir, &args.child_entity)?,
        };
        return child::print_outcome(&outcome);
    }
    if let Some(dir) = &args.child_crash {
        let fixture = Fixture::new()?;
        return match engine {
            ChildEngine::Batpak => batpak_engine::child_crash(&fixture, dir),
            ChildEngine::Sqlite => sqlite_engine::child_crash(&fixture, dir),
        };
    }
    Ok(())
}
