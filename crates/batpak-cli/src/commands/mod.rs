//! One module per subcommand.

pub mod compact;
pub mod entities;
pub mod events;
pub mod export;
pub mod import;
pub mod info;
pub mod repair;
pub mod show;
pub mod snapshot;
pub mod tail;
pub mod verify;

use std::io::{self, BufRead, Write};
use std::path::PathBuf;

use batpak::{Store, StoreConfig};

use crate::error::{CliError, CliResult};

/// What every command gets from the global arguments.
#[derive(Debug)]
pub struct Context {
    /// The store directory.
    pub store: PathBuf,
    /// `--json`: machine-readable output.
    pub json: bool,
    /// Progress bars allowed (still only drawn on a terminal).
    pub progress: bool,
}

impl Context {
    /// The store configuration for this directory.
    pub fn config(&self) -> StoreConfig {
        StoreConfig::new(&self.store)
    }

    /// Opens the store read-only (works beside a running writer).
    pub fn open_read_only(&self) -> CliResult<Store> {
        self.require_directory()?;
        Ok(Store::open_read_only(self.config())?)
    }

    /// Fails with a clear message if the store directory does not exist.
    pub fn require_directory(&self) -> CliResult {
        if self.store.is_dir() {
            Ok(())
        } else {
            Err(CliError::Failed(format!(
                "no store at {}: the directory does not exist",
                self.store.display()
            )))
        }
    }
}

/// Asks `question` on stderr and reads a line from stdin. Anything but yes
/// declines.
pub fn confirm(question: &str) -> CliResult<bool> {
    eprint!("{question} [y/N] ");
    io::stderr()
        .flush()
        .map_err(|e| CliError::io("writing prompt", e))?;
    let mut answer = String::new();
    io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::io("reading answer", e))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
