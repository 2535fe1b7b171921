//! `batpak import`: JSON Lines (the export format) into a store, in atomic
//! batches.
//!
//! Idempotence: each batch carries the key `batpak-import:v1:<blake3 of its
//! input lines>`. Batch boundaries depend only on the input and
//! `--batch-size`, so a rerun over the same input builds the same batches;
//! the store answers a batch it already has with the original receipts and
//! writes nothing. Those receipts also rebuild the map from source event ids
//! to new ids, so links from later batches resolve the same way.
//!
//! Links: the store mints new ids, so a causation or correlation id that
//! names an imported event is rewritten to that event's new id. Inside one
//! batch a cause is named by position ([`Causation::Item`]) and a correlation
//! by inheritance from the cause; when a link cannot be expressed that way
//! the batch is ended early, so the linked event has its new id first. Ids of
//! events that are not in the input are kept as they are, and counted.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};

use batpak::{Batch, BatchItem, Causation, Coordinate, EventId, EventKind, Store, StoreError};
use indicatif::ProgressBar;
use serde::Deserialize;
use serde_json::json;

use super::Context;
use crate::cli::ImportArgs;
use crate::error::{CliError, CliResult};
use crate::output::{progress_bar, Out};

/// A batch is ended once its estimated encoded size passes this, well below
/// the store's default 16 MiB batch limit.
const BATCH_BYTES_SOFT_MAX: u64 = 8 * 1024 * 1024;
/// Per-item overhead the store counts on top of payload and coordinate.
const ITEM_OVERHEAD_BYTES: u64 = 160;
/// Longest input line accepted, so one bad line cannot exhaust memory.
const LINE_MAX_BYTES: u64 = 80 * 1024 * 1024;

/// One input line: an event as `export` writes it. Only the coordinate,
/// `header.kind` and the payload are required; unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct ImportLine {
    coordinate: Coordinate,
    header: ImportHeader,
    payload: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct ImportHeader {
    #[serde(default)]
    event_id: Option<EventId>,
    #[serde(default)]
    correlation_id: Option<EventId>,
    #[serde(default)]
    causation_id: Option<EventId>,
    kind: EventKind,
    #[serde(default)]
    flags: u16,
    #[serde(default)]
    schema_version: u16,
}

/// What is known about an item of the batch being built.
#[derive(Debug)]
struct Pending {
    line: u64,
    source_id: Option<EventId>,
    /// The correlation the item will end up with, as a source id.
    source_correlation: Option<EventId>,
}

/// Counters reported at the end.
#[derive(Debug, Default)]
struct Tally {
    read: u64,
    written: u64,
    already_present: u64,
    skipped_reserved: u64,
    foreign_links: u64,
    batches: u64,
}

struct Importer<'a> {
    store: &'a Store,
    batch_size: usize,
    skip_reserved: bool,
    /// Source event id → id in this store.
    imported: HashMap<EventId, EventId>,
    items: Vec<BatchItem>,
    pending: Vec<Pending>,
    /// Source event id → position in the batch being built.
    pending_ids: HashMap<EventId, usize>,
    hasher: blake3::Hasher,
    pending_bytes: u64,
    tally: Tally,
}

/// How an item's links are written (causation, correlation, and how many of
/// them name events outside the input), or `None` if the batch must end first.
type Links = Option<(Option<Causation>, Option<EventId>, u64)>;

impl<'a> Importer<'a> {
    fn new(store: &'a Store, args: &ImportArgs) -> Self {
        Importer {
            store,
            batch_size: usize::try_from(args.batch_size).unwrap_or(usize::MAX),
            skip_reserved: args.skip_reserved,
            imported: HashMap::new(),
            items: Vec::new(),
            pending: Vec::new(),
            pending_ids: HashMap::new(),
            hasher: blake3::Hasher::new(),
            pending_bytes: 0,
            tally: Tally::default(),
        }
    }

    fn push_line(&mut self, line_number: u64, text: &str) -> CliResult {
        let record: ImportLine = serde_json::from_str(text)
            .map_err(|e| CliError::Input(format!("line {line_number}: not an event: {e}")))?;
        self.tally.read += 1;
        let header = &record.header;
        if header.kind.is_reserved() {
            if self.skip_reserved {
                self.tally.skipped_reserved += 1;
                return Ok(());
            }
            return Err(CliError::Input(format!(
                "line {line_number}: kind {} is in a category reserved for the store (0x0, 0xD); pass --skip-reserved to leave such events out",
                header.kind
            )));
        }
        let (causation, correlation, foreign) = match self.links(header) {
            Some(links) => links,
            None => {
                self.flush()?;
                self.links(header).ok_or_else(|| {
                    CliError::Failed(format!(
                        "line {line_number}: links still unresolved after ending the batch"
                    ))
                })?
            }
        };
        self.tally.foreign_links += foreign;
        let mut item = BatchItem::new(&record.coordinate, header.kind, &record.payload)?
            .flags(header.flags)
            .schema_version(header.schema_version);
        if let Some(cause) = causation {
            item = item.caused_by(cause);
        }
        if let Some(id) = correlation {
            item = item.correlation_id(id);
        }
        let source_correlation = header.correlation_id.or(header.event_id);
        if let Some(id) = header.event_id {
            self.pending_ids.insert(id, self.items.len());
        }
        self.pending.push(Pending {
            line: line_number,
            source_id: header.event_id,
            source_correlation,
        });
        self.pending_bytes += record.payload.to_string().len() as u64
            + record.coordinate.entity().len() as u64
            + record.coordinate.scope().len() as u64
            + ITEM_OVERHEAD_BYTES;
        self.items.push(item);
        self.hasher.update(text.as_bytes());
        self.hasher.update(b"\n");
        if self.items.len() >= self.batch_size || self.pending_bytes >= BATCH_BYTES_SOFT_MAX {
            self.flush()?;
        }
        Ok(())
    }

    /// Rewrites the source causation and correlation of an item for this
    /// store; `None` if that needs an event of the current batch to have its
    /// new id first.
    fn links(&self, header: &ImportHeader) -> Links {
        let mut foreign = 0;
        let causation = header
            .causation_id
            .map(|cause| match self.pending_ids.get(&cause) {
                Some(&position) => Causation::Item(position),
                None => Causation::Event(self.imported.get(&cause).copied().unwrap_or_else(|| {
                    foreign += 1;
                    cause
                })),
            });
        let own = header.event_id;
        let correlation = match header.correlation_id.filter(|c| Some(*c) != own) {
            // The event is its own correlation: the store's default, unless
            // an in-batch cause would pass its correlation down instead.
            None if matches!(causation, Some(Causation::Item(_))) => return None,
            None => None,
            Some(wanted) => {
                let inherited = match causation {
                    Some(Causation::Item(position)) => self.pending[position].source_correlation,
                    _ => None,
                };
                if inherited == Some(wanted) {
                    None
                } else if let Some(new_id) = self.imported.get(&wanted) {
                    Some(*new_id)
                } else if self.pending_ids.contains_key(&wanted) {
                    return None;
                } else {
                    foreign += 1;
                    Some(wanted)
                }
            }
        };
        Some((causation, correlation, foreign))
    }

    /// Appends the batch being built (or gets the receipts of the earlier
    /// run that already did).
    fn flush(&mut self) -> CliResult {
        if self.items.is_empty() {
            return Ok(());
        }
        let key = format!("batpak-import:v1:{}", self.hasher.finalize().to_hex());
        let mut batch = Batch::new().idempotency_key(key);
        for item in self.items.drain(..) {
            batch.push(item);
        }
        let before = self.store.next_sequence();
        let receipts = self
            .store
            .append_batch(&batch)
            .map_err(|error| match error {
                StoreError::BatchItem { index, source } => {
                    let line = self.pending.get(index).map_or(0, |p| p.line);
                    CliError::Input(format!("line {line}: {source}"))
                }
                other => other.into(),
            })?;
        let count = receipts.len() as u64;
        if receipts.first().is_some_and(|r| r.sequence < before) {
            self.tally.already_present += count;
        } else {
            self.tally.written += count;
        }
        for (pending, receipt) in self.pending.iter().zip(&receipts) {
            if let Some(source) = pending.source_id {
                self.imported.insert(source, receipt.event_id);
            }
        }
        self.tally.batches += 1;
        self.pending.clear();
        self.pending_ids.clear();
        self.hasher = blake3::Hasher::new();
        self.pending_bytes = 0;
        Ok(())
    }
}

/// Reads the input line by line and appends it in batches.
pub fn run(context: &Context, args: &ImportArgs) -> CliResult {
    let (reader, total_bytes, name): (Box<dyn Read>, Option<u64>, String) =
        match args.input.as_deref() {
            None => (Box::new(io::stdin()), None, "stdin".into()),
            Some(path) if path.as_os_str() == "-" => (Box::new(io::stdin()), None, "stdin".into()),
            Some(path) => {
                let file = File::open(path)
                    .map_err(|e| CliError::io(format!("opening {}", path.display()), e))?;
                let size = file.metadata().ok().map(|m| m.len());
                (Box::new(file), size, path.display().to_string())
            }
        };
    let mut config = context.config();
    if let Some(bytes) = args.payload_max_bytes {
        // A batch must be able to hold at least one event of the largest size.
        let batch_bytes = (u64::from(bytes) + BATCH_BYTES_SOFT_MAX).max(2 * BATCH_BYTES_SOFT_MAX);
        config = config
            .with_payload_max_bytes(bytes)
            .with_batch_max_bytes(batch_bytes);
    }
    let store = Store::open(config)?;
    let bar = match total_bytes {
        Some(total) => progress_bar(context.progress, total, "{bytes}/{total_bytes}"),
        None => ProgressBar::hidden(),
    };
    let mut importer = Importer::new(&store, args);
    let result = read_lines(reader, &name, &bar, |number, text| {
        importer.push_line(number, text)
    })
    .and_then(|()| importer.flush());
    bar.finish_and_clear();
    let tally = std::mem::take(&mut importer.tally);
    let next_sequence = store.next_sequence();
    let closed = store.close();
    result?;
    closed?;
    let mut out = Out::stdout();
    if context.json {
        out.json_pretty(&json!({
            "read": tally.read,
            "written": tally.written,
            "already_present": tally.already_present,
            "skipped_reserved": tally.skipped_reserved,
            "foreign_links": tally.foreign_links,
            "batches": tally.batches,
            "next_sequence": next_sequence,
        }))?;
    } else {
        out.line(format!(
            "imported {} events from {name} in {} batch(es): {} written, {} already present from an earlier run",
            tally.read - tally.skipped_reserved,
            tally.batches,
            tally.written,
            tally.already_present
        ))?;
        if tally.skipped_reserved > 0 {
            out.line(format!(
                "skipped {} events of reserved kinds",
                tally.skipped_reserved
            ))?;
        }
        if tally.foreign_links > 0 {
            out.line(format!(
                "{} causation/correlation ids name events outside the input; kept as they were",
                tally.foreign_links
            ))?;
        }
    }
    out.flush()
}

/// Calls `each` with every non-blank line and its 1-based number.
fn read_lines(
    reader: Box<dyn Read>,
    name: &str,
    bar: &ProgressBar,
    mut each: impl FnMut(u64, &str) -> CliResult,
) -> CliResult {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut buffer = String::new();
    let mut number: u64 = 0;
    loop {
        buffer.clear();
        let read = (&mut reader)
            .take(LINE_MAX_BYTES + 1)
            .read_line(&mut buffer)
            .map_err(|e| CliError::io(format!("reading {name}"), e))?;
        if read == 0 {
            return Ok(());
        }
        number += 1;
        if read as u64 > LINE_MAX_BYTES {
            return Err(CliError::Input(format!(
                "line {number} of {name} is longer than {LINE_MAX_BYTES} bytes"
            )));
        }
        bar.inc(read as u64);
        let text = buffer.trim_end_matches(['\n', '\r']);
        if !text.trim().is_empty() {
            each(number, text)?;
        }
    }
}
