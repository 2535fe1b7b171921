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
        if status.success() {
            Ok(())
        } else {
            Err(XtaskError::CommandFailed {
                command: shown,
                status: status.to_string(),
            })
        }
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
    fn missing_program_is_a_spawn_error_not_a_panic() {
        let error = Invocation::new("batpak-xtask-no-such-program")
            .run()
            .expect_err("program does not exist");
        assert!(matches!(error, XtaskError::Spawn { .. }));
    }
}
