//! The step lists of `cargo xtask ci` and `cargo xtask preflight`, and the
//! runner that times them and prints a summary table.
//!
//! `.ci/run` calls `cargo xtask ci`, so this file is the single definition of
//! what CI runs.

use std::time::{Duration, Instant};

use crate::campaigns;
use crate::docs;
use crate::error::{XtaskError, XtaskResult};
use crate::process::{flush_stdout, Invocation, TestCounts};
use crate::summary::CampaignTable;

/// What the steps of one run add up: libtest totals and campaign counts.
#[derive(Debug, Default)]
pub struct Tallies {
    /// Summed over every test step, if any ran.
    pub tests: Option<TestCounts>,
    /// One row per campaign run by the chaos and fuzz steps.
    pub campaigns: CampaignTable,
}

/// What a step does.
#[derive(Clone, Debug)]
pub enum Action {
    /// Run a program.
    Command(Invocation),
    /// Run a test program and add up its libtest summary lines.
    Tests(Invocation),
    /// `cargo xtask docs`, run in this process.
    Docs {
        /// Whether to build the mdBook guide too.
        build_guide: bool,
    },
    /// `cargo xtask chaos`, run in this process.
    Chaos {
        /// Number of SIGKILLs of the crash campaign.
        kills: u64,
    },
    /// `cargo xtask fuzz`, run in this process.
    Fuzz {
        /// Seconds per fuzz target.
        seconds: u64,
    },
}

/// One named, timed step.
#[derive(Clone, Debug)]
pub struct Step {
    /// Short name shown in the summary table.
    pub name: &'static str,
    /// What the step does.
    pub action: Action,
}

impl Step {
    fn command(name: &'static str, arguments: &[&str]) -> Self {
        Step {
            name,
            action: Action::Command(Invocation::cargo(arguments)),
        }
    }

    fn tests(name: &'static str, arguments: &[&str]) -> Self {
        Step {
            name,
            action: Action::Tests(Invocation::cargo(arguments)),
        }
    }

    /// The command a user would type to run this step alone.
    pub fn shown(&self) -> String {
        match &self.action {
            Action::Command(invocation) | Action::Tests(invocation) => invocation.display(),
            Action::Docs { build_guide: true } => "cargo xtask docs".to_string(),
            Action::Docs { build_guide: false } => "cargo xtask docs --no-mdbook".to_string(),
            Action::Chaos { kills } => format!("cargo xtask chaos --kills {kills}"),
            Action::Fuzz { seconds } => format!("cargo xtask fuzz --seconds {seconds}"),
        }
    }

    /// Runs the step; test steps add their totals to `tallies.tests`,
    /// campaign steps their rows to `tallies.campaigns`.
    fn execute(&self, tallies: &mut Tallies) -> XtaskResult<()> {
        match &self.action {
            Action::Command(invocation) => invocation.run(),
            Action::Tests(invocation) => {
                invocation.run_counting_tests(tallies.tests.get_or_insert_with(TestCounts::default))
            }
            Action::Docs { build_guide } => {
                println!("$ {}", self.shown());
                docs::docs(*build_guide)
            }
            Action::Chaos { kills } => {
                println!("$ {}", self.shown());
                campaigns::chaos(*kills, &mut tallies.campaigns)
            }
            Action::Fuzz { seconds } => {
                println!("$ {}", self.shown());
                campaigns::fuzz(*seconds, &mut tallies.campaigns)
            }
        }
    }
}

/// The CI steps, in order. `.ci/run` runs exactly these.
pub fn ci_steps() -> Vec<Step> {
    vec![
        Step::command("fmt", &["fmt", "--all", "--", "--check"]),
        Step::command(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
        ),
        Step::tests("test", &["test"]),
        Step::tests(
            "test (workspace, all features)",
            &["test", "--workspace", "--all-features"],
        ),
        Step::tests(
            "test (no default features)",
            &["test", "--no-default-features", "--lib", "--tests"],
        ),
        Step::command("quickstart", &["run", "--example", "quickstart"]),
        Step {
            name: "docs (no mdbook)",
            action: Action::Docs { build_guide: false },
        },
    ]
}

/// The preflight steps: CI (with the full docs build including the guide),
/// then the crash campaign, then fuzzing when fuzz targets exist.
pub fn preflight_steps(kills: u64, fuzz_seconds: u64, fuzz_available: bool) -> Vec<Step> {
    let mut steps: Vec<Step> = ci_steps()
        .into_iter()
        .filter(|step| !matches!(step.action, Action::Docs { .. }))
        .collect();
    steps.push(Step {
        name: "docs",
        action: Action::Docs { build_guide: true },
    });
    steps.push(Step {
        name: "chaos",
        action: Action::Chaos { kills },
    });
    if fuzz_available {
        steps.push(Step {
            name: "fuzz",
            action: Action::Fuzz {
                seconds: fuzz_seconds,
            },
        });
    }
    steps
}

/// What to do after a step fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Stop; the remaining steps are reported as not run (CI).
    StopAtFirst,
    /// Run the remaining steps anyway, to see every problem in one pass.
    KeepGoing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Passed(Duration),
    Failed(Duration),
    NotRun,
}

/// Runs the steps, prints a summary table (and the campaign table, if
/// campaigns ran), and fails if any step failed.
pub fn run_steps(title: &str, steps: &[Step], policy: FailurePolicy) -> XtaskResult<()> {
    let mut outcomes = Vec::with_capacity(steps.len());
    let mut tallies = Tallies::default();
    let mut stopped = false;
    for (index, step) in steps.iter().enumerate() {
        if stopped {
            outcomes.push(Outcome::NotRun);
            continue;
        }
        println!();
        println!("==> [{}/{}] {}", index + 1, steps.len(), step.name);
        flush_stdout();
        let started = Instant::now();
        let result = step.execute(&mut tallies);
        let elapsed = started.elapsed();
        match result {
            Ok(()) => outcomes.push(Outcome::Passed(elapsed)),
            Err(error) => {
                eprintln!("error: step `{}` failed: {error}", step.name);
                outcomes.push(Outcome::Failed(elapsed));
                stopped = policy == FailurePolicy::StopAtFirst;
            }
        }
    }
    print_summary(title, steps, &outcomes);
    tallies.campaigns.print(title);
    if let Some(totals) = tallies.tests {
        // The plain closing line, summed over every test step that ran (a test
        // that runs in several steps is counted once per step).
        println!(
            "tests: {} passed, {} failed, {} skipped",
            totals.passed, totals.failed, totals.ignored
        );
        flush_stdout();
    }
    let failed_steps: Vec<String> = steps
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| matches!(outcome, Outcome::Failed(_)))
        .map(|(step, _)| step.name.to_string())
        .collect();
    if failed_steps.is_empty() {
        Ok(())
    } else {
        Err(XtaskError::StepsFailed { failed_steps })
    }
}

fn print_summary(title: &str, steps: &[Step], outcomes: &[Outcome]) {
    let name_width = steps
        .iter()
        .map(|step| step.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let total: Duration = outcomes
        .iter()
        .map(|outcome| match outcome {
            Outcome::Passed(elapsed) | Outcome::Failed(elapsed) => *elapsed,
            Outcome::NotRun => Duration::ZERO,
        })
        .sum();
    println!();
    println!("{title} summary");
    println!(
        "{:<name_width$}  {:<7}  {:>9}  command",
        "step", "result", "seconds"
    );
    for (step, outcome) in steps.iter().zip(outcomes) {
        let (result, seconds) = match outcome {
            Outcome::Passed(elapsed) => ("pass", format!("{:.1}", elapsed.as_secs_f64())),
            Outcome::Failed(elapsed) => ("FAIL", format!("{:.1}", elapsed.as_secs_f64())),
            Outcome::NotRun => ("not run", "-".to_string()),
        };
        println!(
            "{:<name_width$}  {result:<7}  {seconds:>9}  {}",
            step.name,
            step.shown()
        );
    }
    println!(
        "{:<name_width$}  {:<7}  {:>9.1}",
        "total",
        "",
        total.as_secs_f64()
    );
    flush_stdout();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_runs_the_documented_commands_in_order() {
        let shown: Vec<String> = ci_steps().iter().map(Step::shown).collect();
        assert_eq!(
            shown,
            vec![
                "cargo fmt --all -- --check",
                "cargo clippy --workspace --all-targets --all-features -- -D warnings",
                "cargo test",
                "cargo test --workspace --all-features",
                "cargo test --no-default-features --lib --tests",
                "cargo run --example quickstart",
                "cargo xtask docs --no-mdbook",
            ]
        );
    }

    #[test]
    fn preflight_is_ci_with_the_full_docs_then_campaigns() {
        let shown: Vec<String> = preflight_steps(5000, 60, true)
            .iter()
            .map(Step::shown)
            .collect();
        assert_eq!(shown.len(), 9);
        assert_eq!(shown[6], "cargo xtask docs");
        assert_eq!(shown[7], "cargo xtask chaos --kills 5000");
        assert_eq!(shown[8], "cargo xtask fuzz --seconds 60");
        assert_eq!(preflight_steps(5000, 60, false).len(), 8);
    }

    #[test]
    fn stop_at_first_failure_skips_the_rest_and_reports_the_failure() {
        let steps = vec![
            Step {
                name: "fails",
                action: Action::Command(Invocation::new("false")),
            },
            Step {
                name: "would pass",
                action: Action::Command(Invocation::new("true")),
            },
        ];
        match run_steps("test", &steps, FailurePolicy::StopAtFirst) {
            Err(XtaskError::StepsFailed { failed_steps }) => {
                assert_eq!(failed_steps, vec!["fails".to_string()])
            }
            other => panic!("unexpected result {other:?}"),
        }
    }

    #[test]
    fn keep_going_runs_every_step() {
        let steps = vec![
            Step {
                name: "first fails",
                action: Action::Command(Invocation::new("false")),
            },
            Step {
                name: "second fails too",
                action: Action::Command(Invocation::new("false")),
            },
        ];
        match run_steps("test", &steps, FailurePolicy::KeepGoing) {
            Err(XtaskError::StepsFailed { failed_steps }) => assert_eq!(failed_steps.len(), 2),
            other => panic!("unexpected result {other:?}"),
        }
    }
}
