//! `batpak compact`.

use super::Context;
use crate::cli::CompactArgs;
use crate::error::{CliError, CliResult};

/// Compaction. The engine's compaction has not landed in this build, so this
/// reports that instead of rewriting segments by hand.
pub fn run(context: &Context, _args: &CompactArgs) -> CliResult {
    context.require_directory()?;
    Err(CliError::Failed(
        "compact is not available in this build: the storage engine does not provide compaction yet".into(),
    ))
}
