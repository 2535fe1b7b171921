//! `batpak snapshot DEST`: a consistent copy that opens as a store.

use batpak::Store;
use serde_json::json;

use super::Context;
use crate::cli::SnapshotArgs;
use crate::error::{CliError, CliResult};
use crate::output::{format_bytes, Out};

/// Copies a durable prefix of the store with [`Store::snapshot`], then opens
/// the copy read-only to confirm it holds what the report says.
///
/// The engine takes snapshots through the writable handle (it needs the
/// writer lock to fix the cut), so this fails while another process writes;
/// such a program should call `Store::snapshot` itself.
pub fn run(context: &Context, args: &SnapshotArgs) -> CliResult {
    context.require_directory()?;
    let store = Store::open(context.config())?;
    let report = store.snapshot(&args.dest);
    let closed = store.close();
    let report = report?;
    closed?;
    let copy = Store::open_read_only(batpak::StoreConfig::new(&report.dir))?;
    let copied = copy.next_sequence();
    if copied != report.next_sequence {
        return Err(CliError::CheckFailed(format!(
            "the snapshot in {} opens with {copied} events, but {} were copied",
            report.dir.display(),
            report.next_sequence
        )));
    }
    let mut out = Out::stdout();
    if context.json {
        out.json_pretty(&json!({ "snapshot": report, "events": copied }))?;
    } else {
        out.line(format!(
            "snapshot of {} events ({} segment(s), {}) written to {}",
            report.next_sequence,
            report.segments,
            format_bytes(report.bytes),
            report.dir.display()
        ))?;
    }
    out.flush()
}
