//! Shared by the chaos campaigns: a ledger of what the store told the caller,
//! and the invariant check a reopened store (or crash image) must pass.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use batpak::prelude::*;
use serde_json::json;

/// Reads a numeric setting from the environment (long campaigns), or a default.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the store said about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Acknowledged and known durable: must survive anything.
    Durable,
    /// Acknowledged, not yet known durable: may be lost to a power loss or to
    /// a failed sync, never reordered or changed.
    Relaxed,
    /// The call returned an error: must never appear.
    Failed,
    /// The call was interrupted by a crash (nobody saw its result): may or may
    /// not appear, but whole.
    Maybe,
    /// Acknowledged, then removed by compaction: never appears again, but
    /// its sequence stays used (a gap) and it still counts in its entity's
    /// clock.
    Removed,
    /// Acknowledged, then a compaction that would remove it failed or was
    /// interrupted: present at its sequence, or gone for good (its
    /// segment was rewritten before the failure). Counts in its clock.
    MaybeRemoved,
}

/// One event the test tried to write.
#[derive(Debug, Clone)]
pub struct Entry {
    pub tag: u64,
    pub entity: String,
    /// The atomic unit (a single append or a batch) it belonged to.
    pub unit: u64,
    pub status: Status,
    /// The sequence the receipt gave, if acknowledged.
    pub sequence: Option<u64>,
    /// Compaction redacted its payload: it reads back as `null`, flagged.
    pub redacted: bool,
}

/// Everything the test tried to write, in call order.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    pub entries: Vec<Entry>,
    next_tag: u64,
    next_unit: u64,
}

pub const KIND: EventKind = EventKind::custom(7, 1);

pub fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "chaos").expect("valid coordinate")
}

/// A payload carrying the tag, padded so stores grow several segments.
pub fn payload(tag: u64, pad: usize) -> serde_json::Value {
    json!({"tag": tag, "pad": "x".repeat(pad)})
}

impl Ledger {
    pub fn tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    pub fn unit(&mut self) -> u64 {
        self.next_unit += 1;
        self.next_unit
    }

    /// Records the outcome of one unit: `receipts` on success, else `failed`
    /// (an error) or `crashed` (an error caused by a simulated crash).
    pub fn record(
        &mut self,
        unit: u64,
        items: &[(u64, String)],
        result: Result<Vec<AppendReceipt>, &StoreError>,
        durable: bool,
        crashed: bool,
    ) {
        match result {
            Ok(receipts) => {
                assert_eq!(receipts.len(), items.len(), "one receipt per item");
                for ((tag, entity), receipt) in items.iter().zip(receipts) {
                    self.entries.push(Entry {
                        tag: *tag,
                        entity: entity.clone(),
                        unit,
                        status: if durable {
                            Status::Durable
                        } else {
                            Status::Relaxed
                        },
                        sequence: Some(receipt.sequence),
                        redacted: false,
                    });
                }
            }
            Err(_) => {
                for (tag, entity) in items {
                    self.entries.push(Entry {
                        tag: *tag,
                        entity: entity.clone(),
                        unit,
                        status: if crashed {
                            Status::Maybe
                        } else {
                            Status::Failed
                        },
                        sequence: None,
                        redacted: false,
                    });
                }
            }
        }
    }

    /// Everything acknowledged with a sequence below `durable_next` is durable
    /// (what `Store::durable_sequence` or a successful sync/close promised).
    pub fn durable_below(&mut self, durable_next: u64) {
        for entry in &mut self.entries {
            if entry.status == Status::Relaxed && entry.sequence.is_some_and(|s| s < durable_next) {
                entry.status = Status::Durable;
            }
        }
    }

    /// Every acknowledged event is durable (after a successful close or sync).
    pub fn all_durable(&mut self) {
        for entry in &mut self.entries {
            if entry.status == Status::Relaxed {
                entry.status = Status::Durable;
            }
        }
    }

    /// Call-time errors (interrupted by a crash) become "maybe".
    pub fn failures_maybe(&mut self) {
        for entry in &mut self.entries {
            if entry.status == Status::Failed {
                entry.status = Status::Maybe;
            }
        }
    }

    pub fn count(&self, status: Status) -> usize {
        self.entries.iter().filter(|e| e.status == status).count()
    }
}

/// Checks an opened store against the ledger: gapless sequences; every event
/// is one the test wrote, whole and unchanged; every durable event present at
/// its receipt's sequence; relaxed events present unless `relaxed_may_be_lost`
/// (and then only lost as a suffix); failed events absent; atomic units whole;
/// clocks counting up; `verify()` clean. Returns the number of events.
pub fn check_store(
    store: &Store,
    ledger: &Ledger,
    relaxed_may_be_lost: bool,
) -> Result<u64, String> {
    let events: Vec<StoredEvent> = store
        .query(&Region::all())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading the store failed: {e}"))?;
    let by_tag: HashMap<u64, &Entry> = ledger.entries.iter().map(|e| (e.tag, e)).collect();
    // Redacted payloads carry no tag: those events are known by sequence.
    let redacted_by_sequence: HashMap<u64, &Entry> = ledger
        .entries
        .iter()
        .filter(|e| e.redacted)
        .filter_map(|e| e.sequence.map(|s| (s, e)))
        .collect();
    // Sequences compaction removed stay used: gaps, and clock ticks.
    let removed: Vec<&Entry> = ledger
        .entries
        .iter()
        .filter(|e| matches!(e.status, Status::Removed | Status::MaybeRemoved))
        .collect();
    let removed_sequences: std::collections::HashSet<u64> =
        removed.iter().filter_map(|e| e.sequence).collect();
    let mut present: HashMap<u64, u64> = HashMap::new();
    let mut last_position = None;
    let mut expected_sequence = 0u64;
    // Per entity, the sequences that tick its clock: present and removed.
    let mut ticks: HashMap<String, Vec<u64>> = HashMap::new();
    for entry in &removed {
        if let Some(sequence) = entry.sequence {
            ticks
                .entry(entry.entity.clone())
                .or_default()
                .push(sequence);
        }
    }
    for (position, event) in events.iter().enumerate() {
        while event.header.sequence != expected_sequence
            && removed_sequences.contains(&expected_sequence)
        {
            expected_sequence += 1;
        }
        if event.header.sequence != expected_sequence {
            return Err(format!(
                "sequence gap: event {position} has sequence {}, expected {expected_sequence}",
                event.header.sequence
            ));
        }
        expected_sequence += 1;
        let sequence = event.header.sequence;
        let entry = if event.redacted {
            let Some(entry) = redacted_by_sequence.get(&sequence) else {
                return Err(format!(
                    "event at {sequence} is redacted, the model says not"
                ));
            };
            *entry
        } else {
            let Some(tag) = event.payload["tag"].as_u64() else {
                return Err(format!("event {position} has no tag: {}", event.payload));
            };
            let Some(entry) = by_tag.get(&tag) else {
                return Err(format!("event {position} has unknown tag {tag}"));
            };
            if entry.redacted {
                return Err(format!("tag {tag} at {sequence} should be redacted"));
            }
            *entry
        };
        let tag = entry.tag;
        match entry.status {
            Status::Failed => {
                return Err(format!(
                    "tag {tag} (unit {}) failed but is present at sequence {sequence}",
                    entry.unit
                ))
            }
            Status::Removed => {
                return Err(format!(
                    "tag {tag} was removed by compaction but is present at sequence {sequence}"
                ))
            }
            Status::Durable | Status::Relaxed | Status::MaybeRemoved => {
                if entry.sequence != Some(sequence) {
                    return Err(format!(
                        "tag {tag} acknowledged at {:?} but found at {sequence}",
                        entry.sequence
                    ));
                }
            }
            Status::Maybe => {}
        }
        if event.coordinate.entity() != entry.entity {
            return Err(format!("tag {tag} is on the wrong entity"));
        }
        let ledger_position = ledger
            .entries
            .iter()
            .position(|e| e.tag == tag)
            .unwrap_or(0);
        if last_position.is_some_and(|last| ledger_position <= last) {
            return Err(format!("tag {tag} is out of order"));
        }
        last_position = Some(ledger_position);
        if present.insert(tag, sequence).is_some() {
            return Err(format!("tag {tag} appears twice"));
        }
        if entry.status != Status::MaybeRemoved {
            // (Counted above, present or not.)
            ticks
                .entry(entry.entity.clone())
                .or_default()
                .push(sequence);
        }
    }
    // Clocks count up by one per entity, removed events included.
    let clock_of: HashMap<u64, u64> = ticks
        .values_mut()
        .flat_map(|sequences| {
            sequences.sort_unstable();
            sequences
                .iter()
                .enumerate()
                .map(|(rank, &sequence)| (sequence, rank as u64 + 1))
                .collect::<Vec<_>>()
        })
        .collect();
    for event in &events {
        let want = clock_of.get(&event.header.sequence).copied().unwrap_or(0);
        if event.header.clock != want {
            return Err(format!(
                "event at {}: entity {} clock {}, expected {want}",
                event.header.sequence,
                event.coordinate.entity(),
                event.header.clock
            ));
        }
    }
    let mut lost_relaxed_below = None;
    for entry in &ledger.entries {
        let here = present.contains_key(&entry.tag);
        match entry.status {
            Status::Durable if !here => {
                return Err(format!(
                    "durable tag {} (sequence {:?}, unit {}) is missing",
                    entry.tag, entry.sequence, entry.unit
                ))
            }
            Status::Relaxed if !here && !relaxed_may_be_lost => {
                return Err(format!(
                    "acknowledged tag {} (sequence {:?}) is missing",
                    entry.tag, entry.sequence
                ))
            }
            Status::Relaxed if !here => {
                let sequence = entry.sequence.unwrap_or(0);
                lost_relaxed_below =
                    Some(lost_relaxed_below.map_or(sequence, |s: u64| s.min(sequence)));
            }
            _ => {}
        }
    }
    if let Some(lost) = lost_relaxed_below {
        if events.last().is_some_and(|e| e.header.sequence > lost) {
            return Err(format!(
                "relaxed event at sequence {lost} lost but later events survived"
            ));
        }
    }
    // Atomic units are whole or absent.
    // (Compaction may remove part of a unit; the rest stays.)
    let mut units: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    for entry in ledger
        .entries
        .iter()
        .filter(|e| !matches!(e.status, Status::Removed | Status::MaybeRemoved))
    {
        let slot = units.entry(entry.unit).or_insert((0, 0));
        slot.0 += 1;
        if present.contains_key(&entry.tag) {
            slot.1 += 1;
        }
    }
    for (unit, (items, here)) in units {
        if here != 0 && here != items {
            return Err(format!("unit {unit} is partial: {here} of {items} items"));
        }
    }
    let report = store
        .verify()
        .map_err(|e| format!("verify could not run: {e}"))?;
    if !report.is_clean() {
        return Err(format!("verify found damage: {:?}", report.damage));
    }
    Ok(events.len() as u64)
}

/// Opens `dir` without faults, checks it against the ledger, appends one more
/// event (the store must be usable), and closes it.
pub fn reopen_and_check(
    dir: &Path,
    config: impl Fn(&Path) -> StoreConfig,
    ledger: &Ledger,
    relaxed_may_be_lost: bool,
) -> Result<u64, String> {
    reopen_and_check_with(dir, config, ledger, relaxed_may_be_lost, &|_| Ok(()))
}

/// Derived files (footers, checkpoints) never change what open builds: the
/// index `store` (opened from `dir`) holds equals the one a full scan of
/// the log alone builds. Damaged or stale images must have been ignored.
#[cfg(feature = "dangerous-test-hooks")]
pub fn index_matches_a_full_scan(store: &Store, dir: &Path) -> Result<(), String> {
    let logs_only = tempfile::tempdir().map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let is_file = entry.file_type().map_err(|e| e.to_string())?.is_file();
        if is_file && entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), logs_only.path().join(entry.file_name()))
                .map_err(|e| e.to_string())?;
        }
    }
    let scanned = Store::open_read_only(StoreConfig::new(logs_only.path()))
        .map_err(|e| format!("scan-only open failed: {e}"))?;
    store
        .index_matches(&scanned)
        .map_err(|e| format!("index restored from derived files differs from a scan: {e}"))
}

/// [`reopen_and_check`], plus `extra` on the reopened store before anything
/// is appended to it (and, with fault hooks, the index is compared with a
/// full scan of the log).
pub fn reopen_and_check_with(
    dir: &Path,
    config: impl Fn(&Path) -> StoreConfig,
    ledger: &Ledger,
    relaxed_may_be_lost: bool,
    extra: &dyn Fn(&Store) -> Result<(), String>,
) -> Result<u64, String> {
    let store = Store::open(config(dir)).map_err(|e| format!("reopen failed: {e}"))?;
    let count = check_store(&store, ledger, relaxed_may_be_lost)?;
    #[cfg(feature = "dangerous-test-hooks")]
    index_matches_a_full_scan(&store, dir)?;
    extra(&store)?;
    store
        .append(&coord("after"), KIND, &json!({"tag": 0}))
        .map_err(|e| format!("append after reopen failed: {e}"))?;
    store
        .close()
        .map_err(|e| format!("close after reopen failed: {e}"))?;
    Ok(count)
}
