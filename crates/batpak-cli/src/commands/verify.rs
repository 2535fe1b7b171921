//! `batpak verify`.

use super::Context;
use crate::cli::VerifyArgs;
use crate::error::{CliError, CliResult};

/// Full integrity check. The engine's `Store::verify` has not landed in this
/// build, so this reports that instead of pretending to check.
pub fn run(context: &Context, _args: &VerifyArgs) -> CliResult {
    context.require_directory()?;
    Err(CliError::Failed(
        "verify is not available in this build: the storage engine does not provide a full integrity check yet".into(),
    ))
}
