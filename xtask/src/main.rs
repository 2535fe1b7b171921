//! `cargo xtask`: the project's maintainer commands (see `cargo xtask help`).
//!
//! Plain std on purpose: xtask builds in seconds on a fresh clone and has no
//! dependencies to keep up to date.

mod campaigns;
mod docs;
mod doctor;
mod error;
mod fsync_probe;
mod link_check;
mod process;
mod steps;
mod summary;
mod toolchain;

use std::path::PathBuf;
use std::process::ExitCode;

use error::{XtaskError, XtaskResult};
use steps::FailurePolicy;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  setup                       install rustfmt, clippy and mdbook if missing, then `cargo build`
  doctor [--dir PATH] [--iterations N]
                              toolchain versions, free disk, and an fsync probe of the data disk
                              (default: the repository's disk, 200 iterations)
  ci                          exactly what CI runs (.ci/run): fmt, clippy, tests (default,
                              all features, no default features), the quickstart, docs --no-mdbook
  docs [--no-mdbook]          rustdoc with warnings denied, the mdBook guide, and the link check
  chaos [--kills N]           SIGKILL crash campaign (tests/crash.rs, default 5000 kills), then the
                              long fault, model and corruption campaigns; campaign table
  fuzz [--seconds N]          run every cargo-fuzz target for N seconds each (needs nightly), default 60
  bench [ARGS...]             the benchmark: cargo run --release -p batpak-bench -- ARGS
                              e.g. `cargo xtask bench --surface neutral --save baseline`
  perf-gates [ARGS...]        the benchmark's budget gates (bench --gates --runs 3 ARGS): each
                              budget judged by the median of three runs; `--runs N` to change
  preflight [--kills N] [--seconds N] [--fail-fast]
                              ci, docs (with the guide), chaos, fuzz if available; step table and
                              campaign table (kills, faults, crash images, flips, model ops, fuzz
                              seconds, violations); fails on any failure or violation
  help                        this message
";

fn main() -> ExitCode {
    let raw_arguments: Vec<_> = std::env::args_os().skip(1).collect();
    let result = process::utf8_arguments(raw_arguments).and_then(|arguments| dispatch(&arguments));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            if matches!(error, XtaskError::Usage(_)) {
                eprintln!();
                eprint!("{USAGE}");
            }
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(1))
        }
    }
}

fn dispatch(arguments: &[String]) -> XtaskResult<()> {
    let Some((command, rest)) = arguments.split_first() else {
        print!("{USAGE}");
        return Ok(());
    };
    // Pass-through commands take their arguments verbatim, `--help` included.
    match command.as_str() {
        "bench" => return campaigns::bench(rest),
        "perf-gates" => return campaigns::perf_gates(rest),
        _ => {}
    }
    let mut options = Options::new(command, rest);
    if options.flag("--help") || options.flag("-h") {
        print!("{USAGE}");
        return Ok(());
    }
    match command.as_str() {
        "help" | "--help" | "-h" => {
            options.finish()?;
            print!("{USAGE}");
            Ok(())
        }
        "setup" => {
            options.finish()?;
            toolchain::setup()
        }
        "doctor" => {
            let directory = options.value("--dir")?.map(PathBuf::from);
            let iterations = options
                .number("--iterations")?
                .unwrap_or(doctor::DEFAULT_ITERATIONS as u64);
            options.finish()?;
            let iterations = usize::try_from(iterations)
                .ok()
                .filter(|&count| (1..=fsync_probe::ITERATIONS_MAX).contains(&count))
                .ok_or_else(|| {
                    XtaskError::Usage(format!(
                        "--iterations must be between 1 and {}",
                        fsync_probe::ITERATIONS_MAX
                    ))
                })?;
            doctor::doctor(&doctor::DoctorOptions {
                directory,
                iterations,
            })
        }
        "ci" => {
            options.finish()?;
            steps::run_steps("ci", &steps::ci_steps(), FailurePolicy::StopAtFirst)
        }
        "docs" => {
            let skip_guide = options.flag("--no-mdbook");
            options.finish()?;
            docs::docs(!skip_guide)
        }
        "chaos" => {
            let kills = options
                .number("--kills")?
                .unwrap_or(campaigns::DEFAULT_KILLS);
            options.finish()?;
            let mut table = summary::CampaignTable::default();
            let result = campaigns::chaos(kills, &mut table);
            table.print("chaos");
            result
        }
        "fuzz" => {
            let seconds = options
                .number("--seconds")?
                .unwrap_or(campaigns::DEFAULT_FUZZ_SECONDS);
            options.finish()?;
            let mut table = summary::CampaignTable::default();
            let result = campaigns::fuzz(seconds, &mut table);
            table.print("fuzz");
            result
        }
        "preflight" => {
            let kills = options
                .number("--kills")?
                .unwrap_or(campaigns::DEFAULT_KILLS);
            let seconds = options
                .number("--seconds")?
                .unwrap_or(campaigns::DEFAULT_FUZZ_SECONDS);
            let policy = if options.flag("--fail-fast") {
                FailurePolicy::StopAtFirst
            } else {
                FailurePolicy::KeepGoing
            };
            options.finish()?;
            let steps = steps::preflight_steps(kills, seconds, campaigns::fuzz_available());
            steps::run_steps("preflight", &steps, policy)
        }
        other => Err(XtaskError::Usage(format!("unknown command `{other}`"))),
    }
}

/// The options of one command, consumed as they are read; whatever is left
/// at [`Options::finish`] is an error.
struct Options {
    command: String,
    remaining: Vec<String>,
}

impl Options {
    fn new(command: &str, arguments: &[String]) -> Self {
        Options {
            command: command.to_string(),
            remaining: arguments.to_vec(),
        }
    }

    /// Removes `name` if present; true if it was.
    fn flag(&mut self, name: &str) -> bool {
        let before = self.remaining.len();
        self.remaining.retain(|argument| argument != name);
        self.remaining.len() != before
    }

    /// Removes `name VALUE` or `name=VALUE` and returns the value.
    fn value(&mut self, name: &str) -> XtaskResult<Option<String>> {
        let prefix = format!("{name}=");
        if let Some(index) = self.remaining.iter().position(|argument| argument == name) {
            if index + 1 >= self.remaining.len() {
                return Err(XtaskError::Usage(format!(
                    "{name} needs a value (`cargo xtask {} {name} VALUE`)",
                    self.command
                )));
            }
            let value = self.remaining.remove(index + 1);
            self.remaining.remove(index);
            return Ok(Some(value));
        }
        if let Some(index) = self
            .remaining
            .iter()
            .position(|argument| argument.starts_with(&prefix))
        {
            let argument = self.remaining.remove(index);
            return Ok(Some(argument[prefix.len()..].to_string()));
        }
        Ok(None)
    }

    /// Like [`Options::value`], parsed as a non-negative integer.
    fn number(&mut self, name: &str) -> XtaskResult<Option<u64>> {
        match self.value(name)? {
            None => Ok(None),
            Some(text) => text.parse::<u64>().map(Some).map_err(|_| {
                XtaskError::Usage(format!("{name} expects a whole number, got `{text}`"))
            }),
        }
    }

    /// Fails if any argument was not understood.
    fn finish(self) -> XtaskResult<()> {
        match self.remaining.first() {
            None => Ok(()),
            Some(argument) => Err(XtaskError::Usage(format!(
                "unexpected argument `{argument}` for `cargo xtask {}`",
                self.command
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(arguments: &[&str]) -> Vec<String> {
        arguments
            .iter()
            .map(|argument| argument.to_string())
            .collect()
    }

    #[test]
    fn unknown_command_is_a_usage_error_with_exit_code_2() {
        let error = dispatch(&strings(&["frobnicate"])).expect_err("unknown command");
        assert!(matches!(error, XtaskError::Usage(_)));
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn options_accept_separate_and_joined_values() {
        let mut options = Options::new("chaos", &strings(&["--kills", "20"]));
        assert_eq!(options.number("--kills").expect("parses"), Some(20));
        assert!(options.finish().is_ok());
        let mut options = Options::new("chaos", &strings(&["--kills=7"]));
        assert_eq!(options.number("--kills").expect("parses"), Some(7));
        assert!(options.finish().is_ok());
    }

    #[test]
    fn bad_option_values_and_leftovers_are_usage_errors() {
        let mut options = Options::new("chaos", &strings(&["--kills", "many"]));
        assert!(matches!(
            options.number("--kills"),
            Err(XtaskError::Usage(_))
        ));
        let mut options = Options::new("chaos", &strings(&["--kills"]));
        assert!(matches!(
            options.value("--kills"),
            Err(XtaskError::Usage(_))
        ));
        let options = Options::new("docs", &strings(&["--mdbook-please"]));
        assert!(matches!(options.finish(), Err(XtaskError::Usage(_))));
        assert!(matches!(
            dispatch(&strings(&["docs", "--bogus"])),
            Err(XtaskError::Usage(_))
        ));
        assert!(matches!(
            dispatch(&strings(&["doctor", "--iterations", "0"])),
            Err(XtaskError::Usage(_))
        ));
    }

    #[test]
    fn help_succeeds() {
        assert!(dispatch(&strings(&["help"])).is_ok());
        assert!(dispatch(&[]).is_ok());
        assert!(dispatch(&strings(&["ci", "--help"])).is_ok());
    }
}
