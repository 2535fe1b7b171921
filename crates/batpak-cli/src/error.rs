//! What can go wrong in a command, and the exit code each failure maps to.
//!
//! | code | meaning                                                      |
//! |------|--------------------------------------------------------------|
//! | 0    | success                                                      |
//! | 1    | damage found, a check failed, or a repair was declined       |
//! | 2    | usage error: bad arguments (clap uses 2 for its own errors)  |
//! | 3    | the operation failed (I/O, lock held, not found, bad input)  |

use std::io;
use std::path::PathBuf;

use batpak::StoreError;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: damage found or a check failed.
pub const EXIT_DAMAGE: u8 = 1;
/// Exit code: usage error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the operation failed for another reason.
pub const EXIT_FAILED: u8 = 3;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line was wrong in a way clap could not see.
    #[error("{0}")]
    Usage(String),
    /// The store holds damaged bytes.
    #[error("the store is damaged: corrupt {} at offset {offset}: {reason}", file.display())]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// A check ran and found problems; the report was already printed.
    #[error("{0}")]
    CheckFailed(String),
    /// The store returned an error.
    #[error("{0}")]
    Store(StoreError),
    /// Reading the input or writing the output failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The input of `import` is malformed.
    #[error("{0}")]
    Input(String),
    /// Anything else that stopped the command.
    #[error("{0}")]
    Failed(String),
    /// The reader of our output went away (`batpak events | head`); not an
    /// error for the user.
    #[error("broken pipe")]
    BrokenPipe,
}

impl CliError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Corrupt { .. } | CliError::CheckFailed(_) => EXIT_DAMAGE,
            CliError::BrokenPipe => EXIT_OK,
            CliError::Store(_) | CliError::Io { .. } | CliError::Input(_) | CliError::Failed(_) => {
                EXIT_FAILED
            }
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> CliError {
        if source.kind() == io::ErrorKind::BrokenPipe {
            return CliError::BrokenPipe;
        }
        CliError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<StoreError> for CliError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Corrupt {
                file,
                offset,
                reason,
            } => CliError::Corrupt {
                file,
                offset,
                reason,
            },
            StoreError::Locked { path } => CliError::Failed(format!(
                "store {} is locked by another writer; stop it first (read-only commands work beside it)",
                path.display()
            )),
            other => CliError::Store(other),
        }
    }
}

/// Output errors: a closed pipe ends the command quietly.
impl From<io::Error> for CliError {
    fn from(error: io::Error) -> Self {
        CliError::io("writing output", error)
    }
}

/// The result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;
