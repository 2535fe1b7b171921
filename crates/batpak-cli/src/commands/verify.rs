//! `batpak verify`: every checksum, sequence, clock and hash-chain link.
//!
//! A store that opens is checked through the open store, which also compares
//! the index with the log. A store too damaged to open is checked file by
//! file with [`verify_dir_with_progress`], so the report still names every
//! damaged place.

use batpak::store::{verify_dir_with_progress, VerifyProgress, VerifyReport};
use batpak::{Store, StoreError};
use indicatif::ProgressBar;
use serde_json::json;

use super::Context;
use crate::cli::VerifyArgs;
use crate::error::{CliError, CliResult};
use crate::output::{format_bytes, progress_bar, Align, Out, Table};

/// Runs the check, prints the report; exit code 1 if anything is damaged.
pub fn run(context: &Context, _args: &VerifyArgs) -> CliResult {
    context.require_directory()?;
    let mut bar: Option<ProgressBar> = None;
    let mut progress = |step: &VerifyProgress| {
        let bar = bar.get_or_insert_with(|| {
            progress_bar(context.progress, step.bytes_total, "{bytes}/{total_bytes}")
        });
        bar.set_position(step.bytes_done);
    };
    let (report, opened) = match Store::open_read_only(context.config()) {
        Ok(store) => (store.verify_with_progress(&mut progress)?, true),
        Err(StoreError::Corrupt { .. }) => (
            verify_dir_with_progress(&context.config(), &mut progress)?,
            false,
        ),
        Err(other) => return Err(other.into()),
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let mut out = Out::stdout();
    if context.json {
        let mut value = serde_json::to_value(&report).map_err(std::io::Error::from)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("clean".into(), json!(report.is_clean()));
            object.insert("opened".into(), json!(opened));
        }
        out.json_pretty(&value)?;
    } else {
        print_report(&mut out, &report, opened)?;
    }
    out.flush()?;
    match report.damage.first() {
        None => Ok(()),
        Some(first) => Err(CliError::CheckFailed(format!(
            "{} damaged place(s); the first is {} at offset {}: {}",
            report.damage.len(),
            first.file.display(),
            first.offset,
            first.detail
        ))),
    }
}

fn print_report(out: &mut Out, report: &VerifyReport, opened: bool) -> CliResult {
    out.line(format!(
        "checked {} segment(s), {}: {} events, {} entities, {} chain links",
        report.segments,
        format_bytes(report.bytes),
        report.events,
        report.entities,
        report.links_checked
    ))?;
    if !opened {
        out.line("the store does not open (damage before valid data); checked its files directly")?;
    }
    if report.is_clean() {
        return out.line("ok: no damage found");
    }
    out.line(format!(
        "DAMAGE: {} place(s), in log order (the first is where it starts)",
        report.damage.len()
    ))?;
    let mut table = Table::new(&[
        ("KIND", Align::Left),
        ("FILE", Align::Left),
        ("OFFSET", Align::Right),
        ("SEQ", Align::Right),
        ("ENTITY", Align::Left),
        ("DETAIL", Align::Left),
    ]);
    for damage in &report.damage {
        table.row(vec![
            format!("{:?}", damage.kind),
            damage.file.display().to_string(),
            damage.offset.to_string(),
            damage.sequence.map_or("-".into(), |s| s.to_string()),
            damage.entity.clone().unwrap_or_else(|| "-".into()),
            damage.detail.clone(),
        ]);
    }
    table.print(out)
}
