//! `batpak info` (alias `stats`).

use batpak::store::{IndexSource, TailCut};

use super::Context;
use crate::error::CliResult;
use crate::output::{format_bytes, Out};

/// Prints the store's counters and open report.
pub fn run(context: &Context) -> CliResult {
    let store = context.open_read_only()?;
    let stats = store.stats();
    let mut out = Out::stdout();
    if context.json {
        let mut value = serde_json::to_value(&stats).map_err(std::io::Error::from)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("store".into(), context.store.display().to_string().into());
        }
        out.json_pretty(&value)?;
        return out.flush();
    }
    let report = &stats.open_report;
    let field = |name: &str, value: String| format!("{name:<18}{value}");
    out.line(field("store", context.store.display().to_string()))?;
    out.line(field("events", stats.events.to_string()))?;
    out.line(field("entities", stats.entities.to_string()))?;
    out.line(field(
        "segments",
        format!("{} ({})", stats.segments, format_bytes(stats.segment_bytes)),
    ))?;
    out.line(field("next sequence", stats.next_sequence.to_string()))?;
    out.line(field(
        "durable through",
        stats
            .durable_sequence
            .map_or("nothing yet".into(), |s| format!("sequence {s}")),
    ))?;
    out.line(field("unsynced events", stats.unsynced_events.to_string()))?;
    out.line(field(
        "index memory",
        format_bytes(stats.index_memory_bytes),
    ))?;
    out.line(field("poisoned", yes_no(stats.poisoned).into()))?;
    let source = match &report.index_source {
        IndexSource::Empty => "new empty store".to_string(),
        IndexSource::Scan => format!("full scan of {} segment(s)", report.segments),
        IndexSource::Checkpoint {
            restored_events,
            scanned_events,
            images,
        } => format!(
            "{images} index image(s) restored {restored_events} events, {scanned_events} scanned after them"
        ),
    };
    out.line(field(
        "opened",
        format!(
            "{source}, {} events in {:.1} ms (read-only)",
            report.events,
            report.duration.as_secs_f64() * 1000.0
        ),
    ))?;
    out.line(field("torn tail", describe_cut(report.torn_tail.as_ref())))?;
    out.line(field("repaired", describe_cut(report.repaired.as_ref())))?;
    for file in &report.removed_files {
        out.line(field("removed file", file.display().to_string()))?;
    }
    for ignored in &report.ignored_files {
        out.line(field(
            "ignored image",
            format!("{}: {}", ignored.file.display(), ignored.reason),
        ))?;
    }
    for file in &report.foreign_files {
        out.line(field("foreign file", file.display().to_string()))?;
    }
    out.flush()
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

/// One line about a cut the open report recorded.
pub fn describe_cut(cut: Option<&TailCut>) -> String {
    match cut {
        None => "none".into(),
        Some(cut) => {
            let mut text = format!(
                "{} at offset {} ({} dropped): {}",
                cut.file.display(),
                cut.offset,
                format_bytes(cut.dropped_bytes),
                cut.reason
            );
            for file in &cut.dropped_files {
                text.push_str(&format!("; deleted {}", file.display()));
            }
            text
        }
    }
}
