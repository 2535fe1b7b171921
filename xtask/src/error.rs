//! The one error type of `cargo xtask`: every failure says what failed and
//! where, and maps to a process exit code.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why an xtask command failed.
#[derive(Debug)]
pub enum XtaskError {
    /// The command line was wrong; the message says how. Exit code 2.
    Usage(String),
    /// A program could not be started at all (not installed, not executable).
    Spawn {
        /// The command line as printed.
        command: String,
        /// What the operating system said.
        source: io::Error,
    },
    /// A program ran and exited unsuccessfully.
    CommandFailed {
        /// The command line as printed.
        command: String,
        /// The exit status, e.g. `exit status: 101`.
        status: String,
    },
    /// A file system operation failed.
    Io {
        /// What we were doing, e.g. `creating probe directory`.
        action: String,
        /// The path involved.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The link check found links to files that do not exist.
    BrokenLinks {
        /// How many broken links were found (each was printed as `file:line`).
        count: usize,
    },
    /// A prerequisite of the command is missing and cannot be supplied here.
    Missing(String),
    /// Campaigns failed or found violations (each is in the campaign table).
    CampaignsFailed {
        /// The names of the failed campaigns.
        campaigns: Vec<String>,
    },
    /// Several steps of a multi-step command failed (each was reported).
    StepsFailed {
        /// The names of the failed steps.
        failed_steps: Vec<String>,
    },
}

impl XtaskError {
    /// The process exit code for this error: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            XtaskError::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Shorthand for an [`XtaskError::Io`].
    pub fn io(action: impl Into<String>, path: impl Into<PathBuf>, source: io::Error) -> Self {
        XtaskError::Io {
            action: action.into(),
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for XtaskError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XtaskError::Usage(message) => write!(formatter, "{message}"),
            XtaskError::Spawn { command, source } => {
                write!(formatter, "could not start `{command}`: {source}")
            }
            XtaskError::CommandFailed { command, status } => {
                write!(formatter, "`{command}` failed ({status})")
            }
            XtaskError::Io {
                action,
                path,
                source,
            } => write!(formatter, "{action} {}: {source}", path.display()),
            XtaskError::BrokenLinks { count } => {
                write!(formatter, "link check found {count} broken link(s)")
            }
            XtaskError::Missing(message) => write!(formatter, "{message}"),
            XtaskError::CampaignsFailed { campaigns } => {
                write!(
                    formatter,
                    "failed campaign(s) or violations: {}",
                    campaigns.join(", ")
                )
            }
            XtaskError::StepsFailed { failed_steps } => {
                write!(formatter, "failed step(s): {}", failed_steps.join(", "))
            }
        }
    }
}

impl std::error::Error for XtaskError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            XtaskError::Spawn { source, .. } | XtaskError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The result type of every xtask operation.
pub type XtaskResult<T> = Result<T, XtaskError>;
