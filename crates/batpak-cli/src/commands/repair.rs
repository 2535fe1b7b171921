//! `batpak repair`: find damage (a strict read-only open, then a full
//! verify, since an open that restores its index from images does not read
//! every frame), say what a repair would drop, and only after confirmation
//! reopen with [`RecoveryMode::Repair`], which scans the log and cuts it at
//! the damage.

use std::path::{Path, PathBuf};

use batpak::store::DamageKind;
use batpak::{RecoveryMode, Store, StoreError};
use serde::Serialize;
use serde_json::json;

use super::info::describe_cut;
use super::{confirm, Context};
use crate::cli::RepairArgs;
use crate::error::{CliError, CliResult};
use crate::output::{format_bytes, Out};

/// What a strict open found, and what a repair would remove.
#[derive(Debug, Serialize)]
struct Damage {
    file: PathBuf,
    offset: u64,
    reason: String,
    /// Bytes of the damaged file from the damage on.
    bytes_after_damage: u64,
    /// Later segment files, which repair deletes whole.
    later_files: Vec<PathBuf>,
    later_bytes: u64,
}

/// Reports damage and, once confirmed, repairs it.
pub fn run(context: &Context, args: &RepairArgs) -> CliResult {
    context.require_directory()?;
    let mut out = Out::stdout();
    let damage = match Store::open_read_only(context.config()) {
        Ok(store) => match first_damage(&store)? {
            Some(damage) => damage,
            None => {
                let torn_tail = store.open_report().torn_tail.clone();
                if context.json {
                    out.json_pretty(
                        &json!({ "damage": null, "torn_tail": torn_tail, "repaired": null }),
                    )?;
                } else {
                    out.line("no damage found; nothing to repair")?;
                    if torn_tail.is_some() {
                        out.line(format!(
                        "torn tail (an interrupted last write; the next writable open cuts it): {}",
                        describe_cut(torn_tail.as_ref())
                    ))?;
                    }
                }
                return out.flush();
            }
        },
        Err(StoreError::Corrupt {
            file,
            offset,
            reason,
        }) => measure(file, offset, reason),
        Err(other) => return Err(other.into()),
    };
    if !context.json || args.dry_run {
        describe(&mut out, context, &damage)?;
        out.flush()?;
    }
    if args.dry_run {
        return Err(CliError::CheckFailed(
            "damage found (dry run: nothing changed)".into(),
        ));
    }
    if !args.yes && !confirm("drop everything after the damage?")? {
        return Err(CliError::CheckFailed(
            "repair declined: nothing changed".into(),
        ));
    }
    let store = Store::open(context.config().with_recovery_mode(RecoveryMode::Repair))?;
    let repaired = store.open_report().repaired.clone();
    let events_kept = store.next_sequence();
    let remaining = store.verify()?;
    store.close()?;
    if context.json {
        out.json_pretty(&json!({
            "damage": damage,
            "repaired": repaired,
            "events_kept": events_kept,
        }))?;
    } else {
        out.line(format!("repaired: {}", describe_cut(repaired.as_ref())))?;
        out.line(format!("{events_kept} events remain"))?;
    }
    out.flush()?;
    match remaining.damage.iter().find(|d| d.kind != DamageKind::TornTail) {
        None => Ok(()),
        Some(left) => Err(CliError::CheckFailed(format!(
            "damage remains after repair ({:?} at {} offset {}: {}); repair only cuts frames that fail their checks, see `batpak verify`",
            left.kind,
            left.file.display(),
            left.offset,
            left.detail
        ))),
    }
}

/// The first damage a full verify of an open store finds; a torn tail is
/// not damage (the next writable open cuts it).
fn first_damage(store: &Store) -> CliResult<Option<Damage>> {
    let report = store.verify()?;
    Ok(report
        .damage
        .into_iter()
        .find(|d| d.kind != DamageKind::TornTail)
        .map(|d| measure(d.file, d.offset, format!("{:?}: {}", d.kind, d.detail))))
}

fn measure(file: PathBuf, offset: u64, reason: String) -> Damage {
    let size = std::fs::metadata(&file).map_or(0, |m| m.len());
    let later_files = later_segments(&file);
    let later_bytes = later_files
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|m| m.len())
        .sum();
    Damage {
        bytes_after_damage: size.saturating_sub(offset),
        file,
        offset,
        reason,
        later_files,
        later_bytes,
    }
}

/// Segment files that sort after `file` in its directory. Segment names are
/// zero-padded numbers, so name order is log order.
fn later_segments(file: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut later: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|e| e == "segment")
                && path.file_name().is_some_and(|n| n > name)
        })
        .collect();
    later.sort();
    later
}

fn describe(out: &mut Out, context: &Context, damage: &Damage) -> CliResult {
    if context.json {
        return out.json_pretty(&json!({ "damage": damage, "repaired": null }));
    }
    out.line(format!(
        "damage: {} at offset {}: {}",
        damage.file.display(),
        damage.offset,
        damage.reason
    ))?;
    out.line(format!(
        "repair would cut {} at the start of the damaged write (at or before offset {}), dropping at least {}",
        damage.file.display(),
        damage.offset,
        format_bytes(damage.bytes_after_damage)
    ))?;
    if damage.later_files.is_empty() {
        out.line("no later segment files")?;
    } else {
        out.line(format!(
            "and delete {} later segment file(s) ({}):",
            damage.later_files.len(),
            format_bytes(damage.later_bytes)
        ))?;
        for path in &damage.later_files {
            out.line(format!("  {}", path.display()))?;
        }
    }
    out.line("events stored after the damage are lost; copy the directory first if they may matter")
}
