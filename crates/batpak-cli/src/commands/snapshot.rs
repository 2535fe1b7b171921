//! `batpak snapshot DEST`.

use super::Context;
use crate::cli::SnapshotArgs;
use crate::error::{CliError, CliResult};

/// Consistent online backup. The engine's `Store::snapshot` has not landed
/// in this build, so this reports that instead of copying files by hand.
pub fn run(context: &Context, _args: &SnapshotArgs) -> CliResult {
    context.require_directory()?;
    Err(CliError::Failed(
        "snapshot is not available in this build: the storage engine does not provide snapshots yet".into(),
    ))
}
