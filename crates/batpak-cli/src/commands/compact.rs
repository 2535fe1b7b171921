//! `batpak compact`: remove or redact events under a retention policy.

use batpak::{Compaction, CompactionProgress, Store};
use indicatif::ProgressBar;
use serde_json::json;

use super::{confirm, Context};
use crate::cli::CompactArgs;
use crate::error::{CliError, CliResult};
use crate::output::{format_bytes, progress_bar, Out};

/// Builds the policy from the flags, confirms (unless `--yes`), and runs
/// [`Store::compact`] through a writable handle.
pub fn run(context: &Context, args: &CompactArgs) -> CliResult {
    context.require_directory()?;
    let policy = policy(args);
    if policy.is_empty() {
        return Err(CliError::Usage(
            "compact needs a policy: --drop-entity, --before-sequence, --older-than, \
             --redact-entity or --redact-event"
                .into(),
        ));
    }
    if !args.yes && !confirm("removed and redacted events cannot be restored; compact now?")? {
        return Err(CliError::Failed(
            "compaction cancelled; nothing changed".into(),
        ));
    }
    let store = Store::open(context.config())?;
    let mut bar: Option<ProgressBar> = None;
    let report = store.compact_with_progress(&policy, &mut |step: &CompactionProgress| {
        let bar = bar.get_or_insert_with(|| {
            progress_bar(context.progress, step.bytes_total, "{bytes}/{total_bytes}")
        });
        bar.set_position(step.bytes_done);
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let closed = store.close();
    let report = report?;
    closed?;
    let mut out = Out::stdout();
    if context.json {
        out.json_pretty(&json!({
            "compaction": report,
            "bytes_reclaimed": report.bytes_reclaimed(),
        }))?;
    } else {
        out.line(format!(
            "compacted {} of {} sealed segment(s): {} event(s) removed, {} redacted, {} reclaimed",
            report.segments_rewritten,
            report.segments_examined,
            report.events_removed,
            report.events_redacted,
            format_bytes(report.bytes_reclaimed())
        ))?;
    }
    out.flush()
}

fn policy(args: &CompactArgs) -> Compaction {
    let mut policy = Compaction::new();
    for entity in &args.drop_entity {
        policy = policy.drop_entity(entity.clone());
    }
    if let Some(sequence) = args.before_sequence {
        policy = policy.drop_before_sequence(sequence);
    }
    if let Some(age) = args.older_than {
        policy = policy.drop_older_than(age);
    }
    for entity in &args.redact_entity {
        policy = policy.redact_entity(entity.clone());
    }
    for id in &args.redact_event {
        policy = policy.redact_event(*id);
    }
    policy
}
