//! The in-memory index: compact per-event columns, per-entity sequence
//! lists, and small sparse maps for ids, idempotency keys and causal links.
//!
//! Rebuilt from the log on open; the log is the only truth. Per event it
//! holds a 32-byte [`Entry`] and a 16-byte id (ids are minted in sequence
//! order, so lookups by id are a binary search), plus 8 bytes in its entity's
//! sequence list: 56 bytes per event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use super::log::frame::FrameView;
use crate::region::EntityFilter;

// Index images (segment footers and checkpoints): their format and how they
// load into the index. Kept in its own file, owned by the operations work.
#[path = "footer.rs"]
pub(crate) mod footer;
use crate::{Coordinate, EventHash, EventId, EventKind, Region};

/// A fast, randomly seeded hasher for the write path's name lookups.
type FastHash = foldhash::fast::RandomState;

/// What the index keeps per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) segment: u32,
    pub(crate) offset: u32,
    pub(crate) timestamp_us: i64,
    pub(crate) entity: u32,
    pub(crate) scope: u32,
    pub(crate) clock: u32,
    pub(crate) kind: u16,
    pub(crate) flags: u16,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 32);

/// Growth of the per-event columns from which the new room is faulted in by
/// another thread ([`Index::prefault_spare_columns`]).
const GROWTH_PREFAULT_MIN_EVENTS: usize = 4096;

/// Bit set in [`Entry::segment`] of an event compaction removed. Segment ids
/// stay below it (rotation refuses ids that would reach it).
pub(crate) const DROPPED: u32 = 1 << 31;
/// [`Entry::segment`] of a sequence with nothing left in the log (no stub).
pub(crate) const VANISHED: u32 = u32::MAX;

impl Entry {
    /// True if compaction removed this event (a stub or nothing remains).
    pub(crate) fn is_dropped(&self) -> bool {
        self.segment & DROPPED != 0
    }

    /// A sequence that left no frame behind.
    fn vanished() -> Entry {
        Entry {
            segment: VANISHED,
            offset: 0,
            timestamp_us: 0,
            entity: u32::MAX,
            scope: 0,
            clock: 0,
            kind: 0,
            flags: 0,
        }
    }
}

/// What compaction did with one event of a rewritten segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rewritten {
    /// Still readable, now at this offset (kept or redacted).
    Kept(u32),
    /// Removed; a stub at this offset keeps its link, clock and key.
    Stub(u32),
    /// Removed without a trace.
    Vanished,
}

/// One entity's stream.
#[derive(Debug)]
pub(crate) struct EntityState {
    pub(crate) name: Arc<str>,
    /// Sequences of its events, ascending (= clock order).
    pub(crate) sequences: Vec<u64>,
    /// Clock of its latest event, visible or not.
    pub(crate) clock: u64,
    /// Hash-chain link of its latest event.
    pub(crate) last_hash: Option<EventHash>,
    /// Clock of its latest removed event (0 = none): the clock readers see
    /// when every later event was removed too.
    pub(crate) floor_clock: u64,
}

/// Everything the index learns from one frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewEntry<'a> {
    pub(crate) sequence: u64,
    pub(crate) segment: u32,
    pub(crate) offset: u32,
    pub(crate) timestamp_us: i64,
    pub(crate) event_id: EventId,
    pub(crate) entity: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) clock: u64,
    pub(crate) kind: EventKind,
    pub(crate) flags: u16,
    pub(crate) correlation_id: Option<EventId>,
    pub(crate) causation_id: Option<EventId>,
    /// The batch's (or single event's) idempotency key and unit length.
    pub(crate) idempotency: Option<(&'a [u8], u32)>,
    pub(crate) hash: Option<EventHash>,
    /// A stub compaction left in place of a removed event: not readable,
    /// but it carries the entity's clock, chain link and idempotency key.
    pub(crate) stub: bool,
}

impl<'a> NewEntry<'a> {
    /// What the index learns from a scanned frame at `offset` of `segment`,
    /// the frame being one of a unit (single event or batch) of `unit_len`.
    pub(crate) fn from_frame(
        view: &FrameView<'a>,
        segment: u32,
        offset: u32,
        unit_len: u32,
    ) -> Self {
        NewEntry {
            sequence: view.sequence,
            segment,
            offset,
            timestamp_us: view.timestamp_us,
            event_id: view.event_id,
            entity: view.entity,
            scope: view.scope,
            clock: view.clock,
            kind: view.kind,
            flags: view.flags,
            correlation_id: view.correlation_id,
            causation_id: view.causation_id,
            idempotency: view.idempotency_key.map(|k| (k, unit_len)),
            hash: view.hash,
            stub: view.is_stub(),
        }
    }
}

/// An idempotency key's unit: first sequence and number of events.
pub(crate) type IdempotentUnit = (u64, u32);

#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Sequences below this are all removed and have no place in the
    /// columns: `entries[i]` and `ids[i]` are those of sequence `base + i`.
    /// Compaction's removed prefix (retention) gives its memory back.
    base: u64,
    /// Stubs below `base`, for replaying the receipts of removed keyed units.
    stubs_below: BTreeMap<u64, Entry>,
    /// The largest id below `base` (ids only grow).
    last_trimmed_id: Option<EventId>,
    entries: Vec<Entry>,
    ids: Vec<EventId>,
    /// Ids that arrived out of order (never, unless a log was written by
    /// hand): by id, and by sequence (the column holds a sorted stand-in).
    ids_out_of_order: HashMap<EventId, u64>,
    ids_replaced: HashMap<u64, EventId>,
    /// Sequences below this are visible to readers.
    visible: u64,
    entities: Vec<EntityState>,
    /// Name order, for prefix queries.
    entity_by_name: BTreeMap<Arc<str>, u32>,
    /// The same map hashed, for the exact lookups of the write path.
    entity_lookup: HashMap<Arc<str>, u32, FastHash>,
    scopes: Vec<Arc<str>>,
    scope_by_name: HashMap<Arc<str>, u32, FastHash>,
    /// The scope the write path interned last: stores use one scope or a
    /// few, so this usually saves hashing the name. Only a hint, checked
    /// against `scopes` (whose names are unique) before use.
    last_scope: u32,
    idempotency: HashMap<Box<[u8]>, IdempotentUnit>,
    /// correlation id -> events that named it explicitly.
    correlated: HashMap<EventId, Vec<u64>>,
    /// Events whose correlation id is not their own.
    explicit_correlation: HashSet<u64>,
    /// causation id -> events it caused.
    caused: HashMap<EventId, Vec<u64>>,
    /// Sequences compaction removed (stubs and vanished ones).
    dropped: u64,
}

impl Index {
    /// The next sequence to be assigned.
    pub(crate) fn next_sequence(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// Position of `sequence` in the columns, if it has one.
    fn slot(&self, sequence: u64) -> Option<usize> {
        let slot = usize::try_from(sequence.checked_sub(self.base)?).ok()?;
        (slot < self.entries.len()).then_some(slot)
    }

    /// Gives back the memory of a removed prefix: leading entries that are
    /// all removed leave the columns (stubs among them are kept aside).
    pub(crate) fn trim_removed_prefix(&mut self) {
        let count = self.entries.iter().take_while(|e| e.is_dropped()).count();
        if count == 0 {
            return;
        }
        for (at, entry) in self.entries[..count].iter().enumerate() {
            if entry.segment != VANISHED {
                self.stubs_below.insert(self.base + at as u64, *entry);
            }
        }
        self.last_trimmed_id = self.ids[..count]
            .iter()
            .max()
            .copied()
            .max(self.last_trimmed_id);
        self.entries.drain(..count);
        self.ids.drain(..count);
        self.base += count as u64;
        let base = self.base;
        self.ids_out_of_order.retain(|_, s| *s >= base);
        self.ids_replaced.retain(|s, _| *s >= base);
        for list in self.correlated.values_mut().chain(self.caused.values_mut()) {
            list.retain(|s| *s >= base);
        }
        self.correlated.retain(|_, l| !l.is_empty());
        self.caused.retain(|_, l| !l.is_empty());
        self.explicit_correlation.retain(|s| *s >= base);
        let keep = self.entries.len() + self.entries.len() / 8;
        if self.entries.capacity() > keep + 1024 {
            self.entries.shrink_to(keep);
            self.ids.shrink_to(keep);
        }
    }

    pub(crate) fn visible(&self) -> u64 {
        self.visible
    }

    pub(crate) fn set_visible(&mut self, visible: u64) {
        debug_assert!(visible <= self.next_sequence());
        self.visible = visible.min(self.next_sequence());
    }

    pub(crate) fn last_id(&self) -> Option<EventId> {
        self.ids.last().copied().or(self.last_trimmed_id)
    }

    pub(crate) fn entity_id(&self, name: &str) -> Option<u32> {
        self.entity_lookup.get(name).copied()
    }

    /// Clock and last link of an entity, counting events not yet visible.
    pub(crate) fn entity_head(&self, name: &str) -> (u64, Option<EventHash>) {
        let (_, clock, hash) = self.entity_head_and_id(name);
        (clock, hash)
    }

    /// [`Index::entity_head`] with the entity's id (`None` if it is new),
    /// which the write path hands back to [`Index::push_known`].
    pub(crate) fn entity_head_and_id(&self, name: &str) -> (Option<u32>, u64, Option<EventHash>) {
        match self.entity_id(name) {
            Some(id) => {
                let entity = &self.entities[id as usize];
                (Some(id), entity.clock, entity.last_hash)
            }
            None => (None, 0, None),
        }
    }

    /// The entity's clock as readers see it.
    pub(crate) fn visible_clock(&self, name: &str) -> u64 {
        let Some(id) = self.entity_id(name) else {
            return 0;
        };
        let entity = &self.entities[id as usize];
        let visible = entity.sequences.partition_point(|&s| s < self.visible);
        let last = match visible.checked_sub(1) {
            Some(last) => self
                .slot(entity.sequences[last])
                .map_or(0, |slot| u64::from(self.entries[slot].clock)),
            None => 0,
        };
        // Removed events are all durable and visible: their clocks count.
        last.max(entity.floor_clock)
    }

    /// Number of sequences compaction removed.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Marks every sequence from the next one up to `sequence` as removed
    /// without a trace: the gaps compacted segments leave. The scanner has
    /// checked that gaps are allowed where they occur.
    pub(crate) fn skip_to(&mut self, sequence: u64) {
        let missing = sequence.saturating_sub(self.next_sequence());
        if missing == 0 {
            return;
        }
        self.dropped += missing;
        if self.entries.is_empty() {
            // Nothing kept so far: the gap needs no place in the columns.
            self.base = sequence;
            return;
        }
        let filler = self
            .ids
            .last()
            .copied()
            .unwrap_or(EventId::from_bytes([0; 16]));
        for _ in 0..missing {
            self.grow_columns();
            self.entries.push(Entry::vanished());
            // Keeps the id column sorted; `sequence_of` never answers for a
            // removed sequence.
            self.ids.push(filler);
        }
    }

    /// Grows the per-event columns when they are full. Growth by 4Ki events
    /// or more has another thread fault in the new room (see
    /// [`footer::Prefault`]): on a virtual machine a page fault costs about
    /// 3 µs, and appending 100k events into fresh columns took some 1,100
    /// of them on the appending thread.
    fn grow_columns(&mut self) {
        // Grow the per-event columns by an eighth once they are large, not by
        // doubling: doubling would leave up to half of a large index unused
        // (and over the 64-bytes-per-event budget). Below that, in steps of
        // up to 64Ki entries (3 MiB): every reallocation copies the columns
        // into fresh memory, and growing a 100k-event index an eighth at a
        // time from 1,024 entries copied 40 MB and stalled appends for tens
        // of milliseconds in all.
        if self.entries.len() == self.entries.capacity() {
            let len = self.entries.len();
            let more = (len / 8).max(len.min(1 << 16)).max(1024);
            self.entries.reserve_exact(more);
            self.ids.reserve_exact(more);
            if more >= GROWTH_PREFAULT_MIN_EVENTS {
                self.prefault_spare_columns();
            }
        }
    }

    pub(crate) fn idempotent_unit(&self, key: &[u8]) -> Option<IdempotentUnit> {
        self.idempotency.get(key).copied()
    }

    /// The id of entity `name`, registering it (with no events) if new.
    pub(crate) fn intern_entity(&mut self, name: &str) -> Result<u32, String> {
        if let Some(&id) = self.entity_lookup.get(name) {
            return Ok(id);
        }
        let name: Arc<str> = Arc::from(name);
        let id = u32::try_from(self.entities.len()).map_err(|_| "too many entities".to_string())?;
        self.entities.push(EntityState {
            name: name.clone(),
            sequences: Vec::new(),
            clock: 0,
            last_hash: None,
            floor_clock: 0,
        });
        self.entity_by_name.insert(name.clone(), id);
        self.entity_lookup.insert(name, id);
        Ok(id)
    }

    /// The id of scope `name`, registering it if new.
    pub(crate) fn intern_scope(&mut self, name: &str) -> Result<u32, String> {
        if self
            .scopes
            .get(self.last_scope as usize)
            .is_some_and(|last| **last == *name)
        {
            return Ok(self.last_scope);
        }
        if let Some(&id) = self.scope_by_name.get(name) {
            self.last_scope = id;
            return Ok(id);
        }
        let name: Arc<str> = Arc::from(name);
        let id = u32::try_from(self.scopes.len()).map_err(|_| "too many scopes".to_string())?;
        self.scopes.push(name.clone());
        self.scope_by_name.insert(name, id);
        self.last_scope = id;
        Ok(id)
    }

    /// Adds one event. The caller has checked clocks and sequences.
    pub(crate) fn push(&mut self, new: NewEntry<'_>) -> Result<(), String> {
        self.push_known(new, None)
    }

    /// [`Index::push`] given the entity's id if the caller already looked
    /// it up under the same lock (saving a second hash of the name).
    pub(crate) fn push_known(
        &mut self,
        new: NewEntry<'_>,
        known: Option<u32>,
    ) -> Result<(), String> {
        if new.sequence != self.next_sequence() {
            return Err(format!(
                "sequence {} out of order (expected {})",
                new.sequence,
                self.next_sequence()
            ));
        }
        let clock = u32::try_from(new.clock)
            .map_err(|_| format!("entity clock {} exceeds the index limit", new.clock))?;
        let entity = match known {
            Some(id) => {
                debug_assert_eq!(&*self.entities[id as usize].name, new.entity);
                id
            }
            None => self.intern_entity(new.entity)?,
        };
        let state = &mut self.entities[entity as usize];
        // A stub may follow removed events of its entity (a chain anchor);
        // an event always follows its predecessor or a stub of it.
        let clock_ok = if new.stub {
            new.clock > state.clock
        } else {
            new.clock == state.clock + 1
        };
        if !clock_ok {
            return Err(format!(
                "entity {} jumps from clock {} to {}",
                new.entity, state.clock, new.clock
            ));
        }
        let scope = self.intern_scope(new.scope)?;
        let state = &mut self.entities[entity as usize];
        if new.stub {
            state.floor_clock = new.clock;
            self.dropped += 1;
        } else {
            state.sequences.push(new.sequence);
        }
        state.clock = new.clock;
        state.last_hash = new.hash;
        self.grow_columns();
        self.entries.push(Entry {
            segment: if new.stub {
                new.segment | DROPPED
            } else {
                new.segment
            },
            offset: new.offset,
            timestamp_us: new.timestamp_us,
            entity,
            scope,
            clock,
            kind: new.kind.bits(),
            flags: new.flags,
        });
        match self.ids.last() {
            Some(last) if *last >= new.event_id => {
                self.ids_out_of_order.insert(new.event_id, new.sequence);
                self.ids_replaced.insert(new.sequence, new.event_id);
                // Keep the column sorted by repeating the largest id; a binary
                // search finds the first occurrence, which is the real one.
                let last = *last;
                self.ids.push(last);
            }
            _ => self.ids.push(new.event_id),
        }
        if let Some((key, count)) = new.idempotency {
            self.idempotency.insert(key.into(), (new.sequence, count));
        }
        if new.stub {
            return Ok(());
        }
        if let Some(correlation) = new.correlation_id {
            if correlation != new.event_id {
                self.correlated
                    .entry(correlation)
                    .or_default()
                    .push(new.sequence);
                self.explicit_correlation.insert(new.sequence);
            }
        }
        if let Some(cause) = new.causation_id {
            self.caused.entry(cause).or_default().push(new.sequence);
        }
        Ok(())
    }

    /// Forgets every event from `sequence` on (after a failed write or sync).
    pub(crate) fn truncate(&mut self, sequence: u64) {
        if sequence >= self.next_sequence() {
            return;
        }
        // Only unsynced events are ever cut, never a removed prefix.
        let sequence = sequence.max(self.base);
        while self.next_sequence() > sequence {
            let Some(entry) = self.entries.pop() else {
                break;
            };
            self.ids.pop();
            if entry.is_dropped() {
                // Never happens in practice: compaction only rewrites sealed,
                // durable segments, and truncation only cuts unsynced events.
                self.dropped -= 1;
                if entry.segment == VANISHED {
                    continue;
                }
            }
            let state = &mut self.entities[entry.entity as usize];
            if !entry.is_dropped() {
                state.sequences.pop();
            }
            state.clock = u64::from(entry.clock) - 1;
            // The store refuses writes after a rollback, so the link is only
            // kept for completeness; the entity's earlier link is on disk.
            state.last_hash = None;
        }
        self.ids_out_of_order.retain(|_, s| *s < sequence);
        self.ids_replaced.retain(|s, _| *s < sequence);
        self.idempotency.retain(|_, (s, _)| *s < sequence);
        for list in self.correlated.values_mut().chain(self.caused.values_mut()) {
            list.retain(|s| *s < sequence);
        }
        self.correlated.retain(|_, l| !l.is_empty());
        self.caused.retain(|_, l| !l.is_empty());
        self.explicit_correlation.retain(|s| *s < sequence);
        self.visible = self.visible.min(sequence);
    }

    /// The visible, readable entry at `sequence` (not one compaction removed).
    pub(crate) fn entry(&self, sequence: u64) -> Option<Entry> {
        if sequence >= self.visible {
            return None;
        }
        self.slot(sequence)
            .map(|slot| self.entries[slot])
            .filter(|e| !e.is_dropped())
    }

    /// The entry at `sequence`, visible or not, removed or not (writer use).
    pub(crate) fn entry_any(&self, sequence: u64) -> Option<Entry> {
        if sequence < self.base {
            return Some(
                self.stubs_below
                    .get(&sequence)
                    .copied()
                    .unwrap_or_else(Entry::vanished),
            );
        }
        self.slot(sequence).map(|slot| self.entries[slot])
    }

    pub(crate) fn event_id_at(&self, sequence: u64) -> Option<EventId> {
        if let Some(&id) = self.ids_replaced.get(&sequence) {
            return Some(id);
        }
        self.slot(sequence).map(|slot| self.ids[slot])
    }

    /// Sequence of a visible event, by id.
    pub(crate) fn sequence_of(&self, id: EventId) -> Option<u64> {
        let readable = |sequence: u64| self.entry(sequence).is_some();
        if let Some(&sequence) = self.ids_out_of_order.get(&id) {
            return readable(sequence).then_some(sequence);
        }
        let at = self.ids.partition_point(|probe| *probe < id);
        let sequence = self.base + at as u64;
        let found = self.ids.get(at).is_some_and(|probe| *probe == id)
            && !self.ids_replaced.contains_key(&sequence);
        (found && readable(sequence)).then_some(sequence)
    }

    /// Applies the rewrite of sealed segment `segment` by compaction: new
    /// offsets for what stays, removal for the rest. `changes` lists every
    /// event the segment held, in sequence order.
    pub(crate) fn apply_rewrite(&mut self, segment: u32, changes: &[(u64, Rewritten)]) {
        let mut removed: HashMap<u32, Vec<u64>> = HashMap::new();
        for &(sequence, change) in changes {
            if sequence < self.base {
                // Already out of the columns: only its stub may change.
                match change {
                    Rewritten::Stub(offset) => {
                        if let Some(stub) = self.stubs_below.get_mut(&sequence) {
                            stub.segment = segment | DROPPED;
                            stub.offset = offset;
                        }
                    }
                    _ => {
                        self.stubs_below.remove(&sequence);
                    }
                }
                continue;
            }
            let Some(slot) = self.slot(sequence) else {
                continue;
            };
            let entry = &mut self.entries[slot];
            let was_dropped = entry.is_dropped();
            match change {
                Rewritten::Kept(offset) => {
                    debug_assert!(!was_dropped, "compaction never revives an event");
                    entry.segment = segment;
                    entry.offset = offset;
                }
                Rewritten::Stub(offset) => {
                    entry.segment = segment | DROPPED;
                    entry.offset = offset;
                    if !was_dropped {
                        let state = &mut self.entities[entry.entity as usize];
                        state.floor_clock = state.floor_clock.max(u64::from(entry.clock));
                        removed.entry(entry.entity).or_default().push(sequence);
                    }
                }
                Rewritten::Vanished => {
                    if !was_dropped {
                        removed.entry(entry.entity).or_default().push(sequence);
                    }
                    *entry = Entry::vanished();
                }
            }
            if !was_dropped && !matches!(change, Rewritten::Kept(_)) {
                self.dropped += 1;
            }
        }
        for (entity, gone) in removed {
            // Both lists ascend: one merge pass.
            let list = &mut self.entities[entity as usize].sequences;
            let mut next = gone.iter().peekable();
            list.retain(|s| {
                while next.peek().is_some_and(|g| **g < *s) {
                    next.next();
                }
                next.peek() != Some(&s)
            });
            if list.capacity() > 2 * list.len() + 16 {
                list.shrink_to_fit();
            }
        }
    }

    /// The coordinate of an entry.
    pub(crate) fn coordinate(&self, entry: &Entry) -> Coordinate {
        Coordinate::from_shared(
            self.entities[entry.entity as usize].name.clone(),
            self.scopes[entry.scope as usize].clone(),
        )
    }

    pub(crate) fn entity_count(&self) -> usize {
        self.entities.len()
    }

    /// Entities whose names start with `prefix`, in name order.
    pub(crate) fn entities_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = &'a EntityState> + 'a {
        self.entity_by_name
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(name, _)| name.starts_with(prefix))
            .map(|(_, &id)| &self.entities[id as usize])
    }

    /// Number of visible events of an entity and the sequence of its last one.
    pub(crate) fn visible_extent(&self, entity: &EntityState) -> (usize, Option<u64>) {
        let visible = entity.sequences.partition_point(|&s| s < self.visible);
        (visible, visible.checked_sub(1).map(|i| entity.sequences[i]))
    }

    /// Approximate heap bytes held.
    pub(crate) fn memory_bytes(&self) -> u64 {
        let per_entity: usize = self
            .entities
            .iter()
            .map(|e| e.sequences.capacity() * 8 + e.name.len() + 64)
            .sum();
        (self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.ids.capacity() * 16
            + per_entity
            + self.scopes.iter().map(|s| s.len() + 48).sum::<usize>()
            + self.idempotency.keys().map(|k| k.len() + 48).sum::<usize>()
            + self
                .correlated
                .values()
                .map(|l| l.capacity() * 8 + 48)
                .sum::<usize>()
            + self
                .caused
                .values()
                .map(|l| l.capacity() * 8 + 48)
                .sum::<usize>()
            + self.explicit_correlation.len() * 16
            + self.stubs_below.len() * 64) as u64
    }

    /// Collects up to `limit` visible sequences selected by `region`, greater
    /// than `after`. Returns them and where to continue (`None` = exhausted).
    /// Examines at most `budget` candidates, so a caller never holds the index
    /// for long; a short result with a continuation just means "call again".
    pub(crate) fn select(
        &self,
        region: &Region,
        after: Option<u64>,
        limit: usize,
        budget: usize,
    ) -> (Vec<u64>, Option<u64>) {
        let from = after.map_or(0, |a| a.saturating_add(1));
        let from = from
            .max(region.sequence.map_or(0, |s| s.start))
            .max(self.base);
        let until = region
            .sequence
            .map_or(self.visible, |s| s.end.saturating_add(1).min(self.visible));
        let mut out = Vec::new();
        if from >= until || limit == 0 {
            return (out, None);
        }
        let scope = match &region.scope {
            Some(name) => match self.scope_by_name.get(name.as_str()) {
                Some(&id) => Some(id),
                None => return (out, None),
            },
            None => None,
        };
        let accept = |sequence: u64, entry: &Entry| -> bool {
            !entry.is_dropped()
                && scope.is_none_or(|s| s == entry.scope)
                && region.kind.matches(EventKind::from_bits(entry.kind))
                && region
                    .clock
                    .is_none_or(|c| c.contains(&u64::from(entry.clock)))
                && region
                    .time_us
                    .is_none_or(|t| t.contains(&entry.timestamp_us))
                && region.causation_id.is_none_or(|c| {
                    self.caused
                        .get(&c)
                        .is_some_and(|l| l.binary_search(&sequence).is_ok())
                })
                && region
                    .correlation_id
                    .is_none_or(|c| self.correlates(sequence, c))
                && match &region.entity {
                    EntityFilter::Any => true,
                    EntityFilter::Exact(name) => {
                        *self.entities[entry.entity as usize].name == **name
                    }
                    EntityFilter::Prefix(p) => self.entities[entry.entity as usize]
                        .name
                        .starts_with(p.as_str()),
                }
        };
        // Pick the smallest candidate list the region allows.
        let candidates: Option<&[u64]> = if let EntityFilter::Exact(name) = &region.entity {
            match self.entity_id(name) {
                Some(id) => Some(&self.entities[id as usize].sequences),
                None => return (out, None),
            }
        } else if let Some(cause) = region.causation_id {
            Some(self.caused.get(&cause).map_or(&[][..], Vec::as_slice))
        } else {
            None
        };
        if let Some(list) = candidates {
            let start = list.partition_point(|&s| s < from);
            for (examined, &sequence) in list[start..].iter().enumerate() {
                if sequence >= until {
                    return (out, None);
                }
                if out.len() == limit || examined == budget {
                    return (out, Some(sequence - 1));
                }
                if accept(sequence, &self.entries[(sequence - self.base) as usize]) {
                    out.push(sequence);
                }
            }
            return (out, None);
        }
        if let Some(correlation) = region.correlation_id {
            // The root of a correlation plus every event that names it.
            let mut list: Vec<u64> = self
                .correlated
                .get(&correlation)
                .cloned()
                .unwrap_or_default();
            if let Some(root) = self.sequence_of(correlation) {
                if !self.explicit_correlation.contains(&root) {
                    list.push(root);
                }
            }
            list.sort_unstable();
            let start = list.partition_point(|&s| s < from);
            for &sequence in &list[start..] {
                if sequence >= until {
                    break;
                }
                if out.len() == limit {
                    return (out, Some(sequence - 1));
                }
                if accept(sequence, &self.entries[(sequence - self.base) as usize]) {
                    out.push(sequence);
                }
            }
            return (out, None);
        }
        let prefix_ids: Option<HashSet<u32>> = match &region.entity {
            EntityFilter::Prefix(prefix) => Some(
                self.entity_by_name
                    .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
                    .take_while(|(name, _)| name.starts_with(prefix.as_str()))
                    .map(|(_, &id)| id)
                    .collect(),
            ),
            _ => None,
        };
        if prefix_ids.as_ref().is_some_and(HashSet::is_empty) {
            return (out, None);
        }
        let mut sequence = from;
        let stop = until.min(from.saturating_add(budget as u64));
        while sequence < stop {
            if out.len() == limit {
                return (out, Some(sequence - 1));
            }
            let entry = &self.entries[(sequence - self.base) as usize];
            let entity_ok = prefix_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&entry.entity));
            if entity_ok && accept(sequence, entry) {
                out.push(sequence);
            }
            sequence += 1;
        }
        if sequence < until {
            (out, Some(sequence - 1))
        } else {
            (out, None)
        }
    }

    fn correlates(&self, sequence: u64, correlation: EventId) -> bool {
        if self.explicit_correlation.contains(&sequence) {
            self.correlated
                .get(&correlation)
                .is_some_and(|l| l.binary_search(&sequence).is_ok())
        } else {
            self.event_id_at(sequence) == Some(correlation)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_entry(sequence: u64, entity: &str, clock: u64, id: u8) -> NewEntry<'_> {
        NewEntry {
            sequence,
            segment: 0,
            offset: 48 + sequence as u32 * 100,
            timestamp_us: sequence as i64,
            event_id: EventId::from_bytes([id; 16]),
            entity,
            scope: "s",
            clock,
            kind: EventKind::custom(1, (sequence % 3) as u16),
            flags: 0,
            correlation_id: None,
            causation_id: None,
            idempotency: None,
            hash: None,
            stub: false,
        }
    }

    #[test]
    fn push_select_and_truncate() {
        let mut index = Index::default();
        index.push(new_entry(0, "a", 1, 1)).unwrap();
        index.push(new_entry(1, "b", 1, 2)).unwrap();
        index.push(new_entry(2, "a", 2, 3)).unwrap();
        assert!(
            index.push(new_entry(3, "a", 5, 4)).is_err(),
            "clock gap rejected"
        );
        index.set_visible(3);
        assert_eq!(
            index.select(&Region::entity("a"), None, 10, 100).0,
            vec![0, 2]
        );
        assert_eq!(index.select(&Region::all(), Some(0), 10, 100).0, vec![1, 2]);
        assert_eq!(
            index.select(&Region::all(), None, 2, 100),
            (vec![0, 1], Some(1))
        );
        assert_eq!(
            index.select(&Region::all(), None, 10, 2),
            (vec![0, 1], Some(1))
        );
        assert_eq!(index.sequence_of(EventId::from_bytes([3; 16])), Some(2));
        index.truncate(1);
        assert_eq!(index.next_sequence(), 1);
        assert_eq!(index.entity_head("a").0, 1);
        assert_eq!(index.entity_head("b").0, 0);
        assert_eq!(index.sequence_of(EventId::from_bytes([3; 16])), None);
    }

    #[test]
    fn invisible_events_are_not_selected() {
        let mut index = Index::default();
        index.push(new_entry(0, "a", 1, 1)).unwrap();
        index.push(new_entry(1, "a", 2, 2)).unwrap();
        index.set_visible(1);
        assert_eq!(index.select(&Region::entity("a"), None, 10, 100).0, vec![0]);
        assert_eq!(index.visible_clock("a"), 1);
        assert_eq!(index.entity_head("a").0, 2);
        assert_eq!(index.entry(1), None);
        assert_eq!(index.sequence_of(EventId::from_bytes([2; 16])), None);
    }
}
