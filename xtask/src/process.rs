//! Running other programs: every command is printed before it runs, runs in
//! the repository root with inherited stdio, and a failure becomes a typed
//! [`XtaskError`] naming the command.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{XtaskError, XtaskResult};

/// The repository root (the directory holding the workspace `Cargo.toml`).
///
/// `cargo run` sets `CARGO_MANIFEST_DIR` to the xtask package directory at run
/// time as well as at build time; the root is its parent.
pub fn repository_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    match manifest_dir.parent() {
        Some(parent) => parent.to_path_buf(),
        None => manifest_dir,
    }
}

/// A program invocation that is printed before it is run.
#[derive(Clone, Debug)]
pub struct Invocation {
    program: String,
    arguments: Vec<String>,
    environment: Vec<(String, String)>,
}

impl Invocation {
    /// A new invocation of `program` with no arguments.
    pub fn new(program: &str) -> Self {
        Invocation {
            program: program.to_string(),
            arguments: Vec::new(),
            environment: Vec::new(),
        }
    }

    /// A `cargo` invocation with the given arguments.
    pub fn cargo(arguments: &[&str]) -> Self {
        Invocation::new("cargo").args(arguments)
    }

    /// Appends arguments.
    pub fn args<S: AsRef<str>>(mut self, arguments: &[S]) -> Self {
        self.arguments.extend(
            arguments
                .iter()
                .map(|argument| argument.as_ref().to_string()),
        );
        self
    }

    /// Sets an environment variable for the child (shown when printed).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.environment.push((name.to_string(), value.to_string()));
        self
    }

    /// The command line as a user would type it, e.g. `RUSTDOCFLAGS='-D warnings' cargo doc`.
    pub fn display(&self) -> String {
        let mut parts: Vec<String> = self
            .environment
            .iter()
            .map(|(name, value)| format!("{name}={}", shell_quote(value)))
            .collect();
        parts.push(self.program.clone());
        parts.extend(self.arguments.iter().map(|argument| shell_quote(argument)));
        parts.join(" ")
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.arguments);
        for (name, value) in &self.environment {
            command.env(name, value);
        }
        command.current_dir(repository_root());
        command
    }

    /// Prints the command line, runs it with inherited stdio and fails unless
    /// it exits successfully.
    pub fn run(&self) -> XtaskResult<()> {
        let shown = self.display();
        println!("$ {shown}");
        flush_stdout();
        let status = self
            .command()
            .stdin(Stdio::null())
            .status()
            .map_err(|source| XtaskError::Spawn {
                command: shown.clone(),
                source,
            })?;
        exit_ok(shown, status)
    }

    /// Like [`Invocation::run`], but reads the child's stdout line by line
    /// (echoing every line) and adds libtest's `test result:` lines to
    /// `counts`, also when the tests fail.
    pub fn run_counting_tests(&self, counts: &mut TestCounts) -> XtaskResult<()> {
        self.run_teeing(&mut |line| {
            if let Some(result) = TestCounts::parse_libtest_summary(line) {
                counts.add(&result);
            }
        })
    }

    /// Like [`Invocation::run`], but tees the child's output: every line of
    /// its stdout and stderr is echoed to ours (stdout to stdout, stderr to
    /// stderr, as it arrives) and handed to `on_line`, also when the child
    /// fails. Stdout lines reach `on_line` as they arrive, stderr lines when
    /// the child has finished.
    pub fn run_teeing(&self, on_line: &mut dyn FnMut(&str)) -> XtaskResult<()> {
        use std::io::{BufRead, BufReader};

        let shown = self.display();
        println!("$ {shown}");
        flush_stdout();
        let spawn_error = |source| XtaskError::Spawn {
            command: shown.clone(),
            source,
        };
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        let stderr_lines = child.stderr.take().map(|stderr| {
            std::thread::spawn(move || {
                let mut lines = Vec::new();
                for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
                    let line = String::from_utf8_lossy(&line).into_owned();
                    eprintln!("{line}");
                    lines.push(line);
                }
                lines
            })
        });
        let mut read_error = None;
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).split(b'\n') {
                match line {
                    Ok(line) => {
                        let line = String::from_utf8_lossy(&line);
                        println!("{line}");
                        on_line(&line);
                    }
                    Err(error) => {
                        read_error = Some(error);
                        break;
                    }
                }
            }
        }
        flush_stdout();
        let status = child.wait().map_err(spawn_error)?;
        if let Some(reader) = stderr_lines {
            // A panicked reader thread only loses the echo of stderr.
            for line in reader.join().unwrap_or_default() {
                on_line(&line);
            }
        }
        if let Some(error) = read_error {
            return Err(spawn_error(error));
        }
        exit_ok(shown, status)
    }

    /// Runs quietly and returns the first line of stdout if the program exists
    /// and exits successfully; `None` otherwise. For version probes.
    pub fn first_line_of_output(&self) -> Option<String> {
        let output = self
            .command()
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !output.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .map(str::to_string)
    }

    /// Runs quietly and returns all of stdout if the program exits successfully.
    pub fn output_text(&self) -> Option<String> {
        let output = self
            .command()
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if output.status.success() {
            Some(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            None
        }
    }
}

/// Test totals added up from libtest summary lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestCounts {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed.
    pub failed: u64,
    /// Tests that were ignored (not run).
    pub ignored: u64,
}

impl TestCounts {
    /// Adds another run's totals.
    pub fn add(&mut self, other: &TestCounts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }

    /// Parses `test result: ok. 27 passed; 0 failed; 1 ignored; 0 measured; ...`.
    pub fn parse_libtest_summary(line: &str) -> Option<TestCounts> {
        let rest = line.trim().strip_prefix("test result: ")?;
        let (_, tallies) = rest.split_once(". ")?;
        let mut counts = TestCounts::default();
        let mut found_passed = false;
        for tally in tallies.split(';') {
            let mut words = tally.split_whitespace();
            let (Some(number), Some(label)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(number) = number.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => {
                    counts.passed = number;
                    found_passed = true;
                }
                "failed" => counts.failed = number,
                "ignored" => counts.ignored = number,
                _ => {}
            }
        }
        found_passed.then_some(counts)
    }
}

/// Flushes stdout so our lines interleave correctly with child output.
pub fn flush_stdout() {
    use std::io::Write;
    // A failed flush of our own progress output is not worth failing a build over.
    let _ = std::io::stdout().flush();
}

/// Quotes an argument for display if it contains shell-special characters.
fn shell_quote(argument: &str) -> String {
    let plain = !argument.is_empty()
        && argument
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        argument.to_string()
    } else {
        format!("'{}'", argument.replace('\'', r"'\''"))
    }
}

/// Whether `program` can be found on `PATH` as an executable file.
pub fn on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|directory| is_executable(&directory.join(program)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(metadata) => metadata.is_file() && metadata.permissions().mode() & 0o111 != 0,
        Err(_) => false,
    }
}

/// Converts an argument list from the OS, rejecting non-UTF-8 arguments.
pub fn utf8_arguments(arguments: Vec<OsString>) -> XtaskResult<Vec<String>> {
    arguments
        .into_iter()
        .map(|argument| {
            argument.into_string().map_err(|argument| {
                XtaskError::Usage(format!("argument is not valid UTF-8: {argument:?}"))
            })
        })
        .collect()
}

/// `Ok` if the program succeeded, else the command and how it ended.
fn exit_ok(command: String, status: std::process::ExitStatus) -> XtaskResult<()> {
    if status.success() {
        Ok(())
    } else {
        Err(XtaskError::CommandFailed {
            command,
            status: status.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_environment_values_with_spaces() {
        let invocation =
            Invocation::cargo(&["doc", "--workspace"]).env("RUSTDOCFLAGS", "-D warnings");
        assert_eq!(
            invocation.display(),
            "RUSTDOCFLAGS='-D warnings' cargo doc --workspace"
        );
    }

    #[test]
    fn display_leaves_plain_arguments_unquoted() {
        let invocation = Invocation::cargo(&["fmt", "--all", "--", "--check"]);
        assert_eq!(invocation.display(), "cargo fmt --all -- --check");
    }

    #[test]
    fn failing_program_is_reported_with_its_command_line() {
        let error = Invocation::new("false")
            .run()
            .expect_err("`false` exits with status 1");
        match error {
            XtaskError::CommandFailed { command, .. } => assert_eq!(command, "false"),
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn parses_libtest_summary_lines() {
        let line = "test result: ok. 27 passed; 0 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.02s";
        assert_eq!(
            TestCounts::parse_libtest_summary(line),
            Some(TestCounts {
                passed: 27,
                failed: 0,
                ignored: 3
            })
        );
        let failed =
            "test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(
            TestCounts::parse_libtest_summary(failed).map(|counts| counts.failed),
            Some(2)
        );
        assert_eq!(TestCounts::parse_libtest_summary("running 3 tests"), None);
    }

    #[test]
    fn counting_run_echoes_and_adds_up_summary_lines() {
        let script = "echo 'test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out'; \
                      echo 'test result: ok. 5 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out'";
        let mut counts = TestCounts::default();
        Invocation::new("sh")
            .args(&["-c", script])
            .run_counting_tests(&mut counts)
            .expect("script succeeds");
        assert_eq!(
            counts,
            TestCounts {
                passed: 7,
                failed: 0,
                ignored: 1
            }
        );
    }

    #[test]
    fn counting_run_keeps_the_counts_of_a_failing_run() {
        let script = "echo 'test result: FAILED. 4 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out'; exit 101";
        let mut counts = TestCounts::default();
        let result = Invocation::new("sh")
            .args(&["-c", script])
            .run_counting_tests(&mut counts);
        assert!(matches!(result, Err(XtaskError::CommandFailed { .. })));
        assert_eq!((counts.passed, counts.failed), (4, 1));
    }

    #[test]
    fn missing_program_is_a_spawn_error_not_a_panic() {
        let error = Invocation::new("batpak-xtask-no-such-program")
            .run()
            .expect_err("program does not exist");
        assert!(matches!(error, XtaskError::Spawn { .. }));
    }
}
