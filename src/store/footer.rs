//! Index images: the on-disk form of segment footers and index checkpoints,
//! and how one is loaded into the in-memory index.
//!
//! An image describes the index records of a prefix of one segment: every
//! frame from the segment header up to a byte `watermark`. A *footer* is the
//! image of a whole sealed segment (written once, when it is sealed); a
//! *checkpoint* is the image of a prefix of the active segment (rewritten
//! periodically and at close). Both live beside the log in the `checkpoints`
//! directory (`NNNNNNNNNN.footer`, `NNNNNNNNNN.checkpoint`) rather than
//! inside segment files, so sealed segments stay immutable and the frame
//! scanner never meets a foreign record.
//!
//! Images are derived data: versioned, checksummed (CRC32 over header and
//! body), tied to one segment file by its id, creation time and first
//! sequence, and spot-checked against the log before use (the frame of the
//! last record must be where the image says, with the same sequence and id).
//! Anything that fails a check is ignored, reported, and rebuilt by scanning.
//!
//! Layout (little-endian), header 96 bytes:
//!
//! ```text
//!  0 magic "BATPAKIX"        8 version u16         10 kind u16 (1 footer, 2 checkpoint)
//! 12 segment flags u32      16 segment id u32      20 entity count u32
//! 24 segment created_us i64 32 segment first sequence u64
//! 40 watermark u64          48 event count u64     56 next sequence u64
//! 64 scope count u32        68 correlation count   72 causation count   76 key count
//! 80 body length u64        88 body crc32 u32      92 header crc32 u32 (bytes 0..92)
//! ```
//!
//! Body, in order: entity names (`u16 len, bytes`), per entity its last hash
//! in this image (`u8 present, 32 bytes`), scope names (`u16 len, bytes`),
//! records (52 bytes each: sequence u64, offset u32, timestamp i64, id 16,
//! entity u32, scope u32, clock u32, kind u16, flags u16; entity and scope are
//! positions in this image's own tables), correlations (`u32 record, id 16`),
//! causations (`u32 record, id 16`), idempotency keys
//! (`u32 record, u32 unit length, u8 key length, key`).

use std::collections::HashMap;

use super::{Entry, Index, NewEntry};
use crate::store::log::frame::{u16_at, u32_at, u64_at};
use crate::{EventHash, EventId};

/// Magic bytes of an index image.
pub(crate) const IMAGE_MAGIC: [u8; 8] = *b"BATPAKIX";
/// Version of the image format.
pub(crate) const IMAGE_VERSION: u16 = 1;
/// Size of the image header.
pub(crate) const IMAGE_HEADER_BYTES: usize = 96;
/// Size of one record.
pub(crate) const RECORD_BYTES: usize = 52;
/// Image kind: the whole of a sealed segment.
pub(crate) const KIND_FOOTER: u16 = 1;
/// Image kind: a prefix of the active segment.
pub(crate) const KIND_CHECKPOINT: u16 = 2;

/// Which segment file an image describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentIdentity {
    pub(crate) id: u32,
    pub(crate) flags: u32,
    pub(crate) created_us: i64,
    pub(crate) first_sequence: u64,
}

/// Builds an image from scanned frames, record by record.
#[derive(Debug)]
pub(crate) struct ImageBuilder {
    segment: SegmentIdentity,
    entity_ids: HashMap<Box<str>, u32>,
    entities: Vec<(Box<str>, Option<EventHash>)>,
    scope_ids: HashMap<Box<str>, u32>,
    scopes: Vec<Box<str>>,
    records: Vec<u8>,
    count: u32,
    next_sequence: u64,
    correlations: Vec<(u32, EventId)>,
    causations: Vec<(u32, EventId)>,
    keys: Vec<(u32, u32, Box<[u8]>)>,
    /// Bytes of the segment covered so far.
    pub(crate) watermark: u64,
}

impl ImageBuilder {
    pub(crate) fn new(segment: SegmentIdentity, watermark: u64) -> Self {
        ImageBuilder {
            segment,
            entity_ids: HashMap::new(),
            entities: Vec::new(),
            scope_ids: HashMap::new(),
            scopes: Vec::new(),
            records: Vec::new(),
            count: 0,
            next_sequence: segment.first_sequence,
            correlations: Vec::new(),
            causations: Vec::new(),
            keys: Vec::new(),
            watermark,
        }
    }

    pub(crate) fn segment(&self) -> SegmentIdentity {
        self.segment
    }

    pub(crate) fn events(&self) -> u32 {
        self.count
    }

    pub(crate) fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Continues from a loaded image (the checkpoint of the active segment),
    /// so later checkpoints only scan what was appended since.
    pub(crate) fn from_view(view: &ImageView<'_>) -> Self {
        let mut builder = ImageBuilder::new(view.segment, view.watermark);
        for (position, (name, hash)) in view.entities.iter().enumerate() {
            builder.entities.push(((*name).into(), *hash));
            builder.entity_ids.insert((*name).into(), position as u32);
        }
        for (position, name) in view.scopes.iter().enumerate() {
            builder.scopes.push((*name).into());
            builder.scope_ids.insert((*name).into(), position as u32);
        }
        builder.records = view.records.to_vec();
        builder.count = view.events as u32;
        builder.next_sequence = view.next_sequence;
        builder.correlations = ImageView::sparse(view.correlations).collect();
        builder.causations = ImageView::sparse(view.causations).collect();
        builder.keys = view
            .keys
            .iter()
            .map(|(position, unit, key)| (*position, *unit, (*key).into()))
            .collect();
        builder
    }

    /// Adds one record. Fails only if a limit of the format is exceeded.
    pub(crate) fn push(&mut self, record: &NewEntry<'_>) -> Result<(), String> {
        let clock = u32::try_from(record.clock)
            .map_err(|_| format!("clock {} exceeds the index limit", record.clock))?;
        let entity = match self.entity_ids.get(record.entity) {
            Some(&id) => id,
            None => {
                let id = self.entities.len() as u32;
                self.entities.push((record.entity.into(), None));
                self.entity_ids.insert(record.entity.into(), id);
                id
            }
        };
        let scope = match self.scope_ids.get(record.scope) {
            Some(&id) => id,
            None => {
                let id = self.scopes.len() as u32;
                self.scopes.push(record.scope.into());
                self.scope_ids.insert(record.scope.into(), id);
                id
            }
        };
        let position = self.count;
        self.count = self
            .count
            .checked_add(1)
            .ok_or_else(|| "too many records for one image".to_string())?;
        self.entities[entity as usize].1 = record.hash;
        let out = &mut self.records;
        out.extend_from_slice(&record.sequence.to_le_bytes());
        out.extend_from_slice(&record.offset.to_le_bytes());
        out.extend_from_slice(&record.timestamp_us.to_le_bytes());
        out.extend_from_slice(&record.event_id.to_bytes());
        out.extend_from_slice(&entity.to_le_bytes());
        out.extend_from_slice(&scope.to_le_bytes());
        out.extend_from_slice(&clock.to_le_bytes());
        out.extend_from_slice(&record.kind.bits().to_le_bytes());
        out.extend_from_slice(&record.flags.to_le_bytes());
        if let Some(id) = record.correlation_id {
            if id != record.event_id {
                self.correlations.push((position, id));
            }
        }
        if let Some(id) = record.causation_id {
            self.causations.push((position, id));
        }
        if let Some((key, unit)) = record.idempotency {
            self.keys.push((position, unit, key.into()));
        }
        self.next_sequence = record.sequence + 1;
        Ok(())
    }

    /// Encodes the image.
    pub(crate) fn encode(&self, kind: u16) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.records.len() + self.entities.len() * 64 + 64);
        for (name, _) in &self.entities {
            body.extend_from_slice(&(name.len() as u16).to_le_bytes());
            body.extend_from_slice(name.as_bytes());
        }
        for (_, hash) in &self.entities {
            match hash {
                Some(hash) => {
                    body.push(1);
                    body.extend_from_slice(hash.as_bytes());
                }
                None => body.extend_from_slice(&[0u8; 33]),
            }
        }
        for name in &self.scopes {
            body.extend_from_slice(&(name.len() as u16).to_le_bytes());
            body.extend_from_slice(name.as_bytes());
        }
        body.extend_from_slice(&self.records);
        for list in [&self.correlations, &self.causations] {
            for (position, id) in list {
                body.extend_from_slice(&position.to_le_bytes());
                body.extend_from_slice(&id.to_bytes());
            }
        }
        for (position, unit, key) in &self.keys {
            body.extend_from_slice(&position.to_le_bytes());
            body.extend_from_slice(&unit.to_le_bytes());
            body.push(key.len() as u8);
            body.extend_from_slice(key);
        }
        let mut out = Vec::with_capacity(IMAGE_HEADER_BYTES + body.len());
        out.extend_from_slice(&IMAGE_MAGIC);
        out.extend_from_slice(&IMAGE_VERSION.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&self.segment.flags.to_le_bytes());
        out.extend_from_slice(&self.segment.id.to_le_bytes());
        out.extend_from_slice(&(self.entities.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.segment.created_us.to_le_bytes());
        out.extend_from_slice(&self.segment.first_sequence.to_le_bytes());
        out.extend_from_slice(&self.watermark.to_le_bytes());
        out.extend_from_slice(&u64::from(self.count).to_le_bytes());
        out.extend_from_slice(&self.next_sequence.to_le_bytes());
        out.extend_from_slice(&(self.scopes.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.correlations.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.causations.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.keys.len() as u32).to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        let header_crc = crc32fast::hash(&out[0..92]);
        out.extend_from_slice(&header_crc.to_le_bytes());
        debug_assert_eq!(out.len(), IMAGE_HEADER_BYTES);
        out.extend_from_slice(&body);
        out
    }
}

/// A checked image borrowing the bytes it was read from.
#[derive(Debug)]
pub(crate) struct ImageView<'a> {
    pub(crate) kind: u16,
    pub(crate) segment: SegmentIdentity,
    pub(crate) watermark: u64,
    pub(crate) events: u64,
    pub(crate) next_sequence: u64,
    entities: Vec<(&'a str, Option<EventHash>)>,
    scopes: Vec<&'a str>,
    records: &'a [u8],
    correlations: &'a [u8],
    causations: &'a [u8],
    keys: Vec<(u32, u32, &'a [u8])>,
}

/// One decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordView {
    pub(crate) sequence: u64,
    pub(crate) offset: u32,
    pub(crate) timestamp_us: i64,
    pub(crate) event_id: EventId,
    pub(crate) entity: u32,
    pub(crate) scope: u32,
    pub(crate) clock: u32,
    pub(crate) kind: u16,
    pub(crate) flags: u16,
}

/// Reads only the header, to learn the segment and watermark cheaply.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<(u16, SegmentIdentity, u64, u64), String> {
    if bytes.len() < IMAGE_HEADER_BYTES {
        return Err(format!(
            "image is {} bytes, shorter than its header",
            bytes.len()
        ));
    }
    if bytes[0..8] != IMAGE_MAGIC {
        return Err("not a batpak index image (bad magic)".into());
    }
    let version = u16_at(bytes, 8);
    if version != IMAGE_VERSION {
        return Err(format!("unsupported index image version {version}"));
    }
    let stored = u32_at(bytes, 92);
    let computed = crc32fast::hash(&bytes[0..92]);
    if stored != computed {
        return Err(format!(
            "image header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    let kind = u16_at(bytes, 10);
    if kind != KIND_FOOTER && kind != KIND_CHECKPOINT {
        return Err(format!("unknown image kind {kind}"));
    }
    let segment = SegmentIdentity {
        flags: u32_at(bytes, 12),
        id: u32_at(bytes, 16),
        created_us: i64::from_le_bytes(bytes[24..32].try_into().unwrap_or([0; 8])),
        first_sequence: u64_at(bytes, 32),
    };
    Ok((kind, segment, u64_at(bytes, 40), u64_at(bytes, 48)))
}

/// Checks an image completely (checksums and every length) without allocating
/// more than its tables of names need.
pub(crate) fn decode_image(bytes: &[u8]) -> Result<ImageView<'_>, String> {
    let (kind, segment, watermark, events) = decode_header(bytes)?;
    let entity_count = u32_at(bytes, 20) as usize;
    let next_sequence = u64_at(bytes, 56);
    let scope_count = u32_at(bytes, 64) as usize;
    let correlation_count = u32_at(bytes, 68) as usize;
    let causation_count = u32_at(bytes, 72) as usize;
    let key_count = u32_at(bytes, 76) as usize;
    let body_len = u64_at(bytes, 80);
    let body = &bytes[IMAGE_HEADER_BYTES..];
    if body.len() as u64 != body_len {
        return Err(format!(
            "image body is {} bytes, header says {body_len}",
            body.len()
        ));
    }
    let stored = u32_at(bytes, 88);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(format!(
            "image body checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    // Every count is checked against the bytes present before anything is
    // allocated for it: the smallest possible entry of each table is known.
    let events_usize = usize::try_from(events).map_err(|_| "event count too large".to_string())?;
    let minimum = entity_count
        .saturating_mul(2 + 33)
        .saturating_add(scope_count.saturating_mul(2))
        .saturating_add(events_usize.saturating_mul(RECORD_BYTES))
        .saturating_add((correlation_count + causation_count).saturating_mul(20))
        .saturating_add(key_count.saturating_mul(9));
    if minimum > body.len() {
        return Err("image tables are larger than the image".into());
    }
    let mut reader = BodyReader { body, at: 0 };
    let entity_names = reader.names(entity_count)?;
    let mut entities = Vec::with_capacity(entity_count);
    for name in entity_names {
        let slot = reader.take(33)?;
        let hash = match slot[0] {
            0 => None,
            1 => {
                let mut out = [0u8; 32];
                out.copy_from_slice(&slot[1..33]);
                Some(EventHash(out))
            }
            _ => return Err("image holds a bad hash marker".into()),
        };
        entities.push((name, hash));
    }
    let scopes = reader.names(scope_count)?;
    let records = reader.take(events_usize * RECORD_BYTES)?;
    let correlations = reader.take(correlation_count * 20)?;
    let causations = reader.take(causation_count * 20)?;
    let mut keys = Vec::with_capacity(key_count);
    for _ in 0..key_count {
        let fixed = reader.take(9)?;
        let position = u32_at(fixed, 0);
        let unit = u32_at(fixed, 4);
        let key = reader.take(usize::from(fixed[8]))?;
        keys.push((position, unit, key));
    }
    let at = reader.at;
    if at != body.len() {
        return Err("image body has trailing bytes".into());
    }
    let view = ImageView {
        kind,
        segment,
        watermark,
        events,
        next_sequence,
        entities,
        scopes,
        records,
        correlations,
        causations,
        keys,
    };
    view.check_references()?;
    Ok(view)
}

impl ImageView<'_> {
    pub(crate) fn record(&self, position: usize) -> RecordView {
        let r = &self.records[position * RECORD_BYTES..(position + 1) * RECORD_BYTES];
        RecordView {
            sequence: u64_at(r, 0),
            offset: u32_at(r, 8),
            timestamp_us: i64::from_le_bytes(r[12..20].try_into().unwrap_or([0; 8])),
            event_id: id_at(r, 20),
            entity: u32_at(r, 36),
            scope: u32_at(r, 40),
            clock: u32_at(r, 44),
            kind: u16_at(r, 48),
            flags: u16_at(r, 50),
        }
    }

    /// Sequence, entity, scope and clock of a record: what the checks need.
    fn record_key(&self, position: usize) -> (u64, u32, u32, u32) {
        let r = &self.records[position * RECORD_BYTES..(position + 1) * RECORD_BYTES];
        (u64_at(r, 0), u32_at(r, 36), u32_at(r, 40), u32_at(r, 44))
    }

    pub(crate) fn last_record(&self) -> Option<RecordView> {
        (self.events > 0).then(|| self.record(self.events as usize - 1))
    }

    fn sparse(list: &[u8]) -> impl Iterator<Item = (u32, EventId)> + '_ {
        list.chunks_exact(20).map(|c| (u32_at(c, 0), id_at(c, 4)))
    }

    /// Internal consistency: references in range, sequences ascending,
    /// sparse lists in record order.
    fn check_references(&self) -> Result<(), String> {
        let events = self.events as usize;
        let mut previous: Option<u64> = None;
        for position in 0..events {
            let (sequence, entity, scope, clock) = self.record_key(position);
            if entity as usize >= self.entities.len() || scope as usize >= self.scopes.len() {
                return Err(format!(
                    "record {position} names an unknown entity or scope"
                ));
            }
            if previous.is_some_and(|p| sequence <= p) {
                return Err(format!("record {position} breaks sequence order"));
            }
            if clock == 0 {
                return Err(format!("record {position} has clock zero"));
            }
            previous = Some(sequence);
        }
        if previous.map_or(self.segment.first_sequence, |p| p + 1) != self.next_sequence {
            return Err("image next sequence disagrees with its records".into());
        }
        for list in [self.correlations, self.causations] {
            let mut last = None;
            for (position, _) in Self::sparse(list) {
                if position as usize >= events || last.is_some_and(|l| position <= l) {
                    return Err("image sparse list out of range or order".into());
                }
                last = Some(position);
            }
        }
        let mut last = None;
        for (position, unit, key) in &self.keys {
            if *position as usize >= events
                || last.is_some_and(|l| *position <= l)
                || *unit == 0
                || key.is_empty()
            {
                return Err("image idempotency list out of range or order".into());
            }
            last = Some(*position);
        }
        Ok(())
    }
}

struct BodyReader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> BodyReader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(len)
            .ok_or_else(|| "image length overflow".to_string())?;
        let part = self
            .body
            .get(self.at..end)
            .ok_or_else(|| "image body ends inside a table".to_string())?;
        self.at = end;
        Ok(part)
    }

    fn names(&mut self, count: usize) -> Result<Vec<&'a str>, String> {
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let len = usize::from(u16_at(self.take(2)?, 0));
            let name = std::str::from_utf8(self.take(len)?)
                .map_err(|_| "image holds a name that is not UTF-8".to_string())?;
            out.push(name);
        }
        Ok(out)
    }
}

fn id_at(bytes: &[u8], at: usize) -> EventId {
    let mut out = [0u8; 16];
    out.copy_from_slice(&bytes[at..at + 16]);
    EventId::from_bytes(out)
}

impl Index {
    /// Reserves room for `events` more events in the per-event columns, so
    /// loading images does not grow them by doubling (copies, and up to
    /// twice the memory).
    pub(crate) fn reserve_events(&mut self, events: usize) {
        self.entries.reserve_exact(events);
        self.ids.reserve_exact(events);
    }

    /// Loads a checked image of segment `segment` into the index, exactly as
    /// scanning its frames would. Checks first, changes nothing on error.
    pub(crate) fn apply_image(&mut self, image: &ImageView<'_>) -> Result<(), String> {
        let segment = image.segment.id;
        let events = image.events as usize;
        // Check the image continues the index: sequences and clocks.
        let mut clocks: Vec<u64> = image
            .entities
            .iter()
            .map(|(name, _)| self.entity_head(name).0)
            .collect();
        let compacted = image.segment.flags & crate::store::log::frame::SEGMENT_FLAG_COMPACTED != 0;
        for (position, expected) in (0..events).zip(self.next_sequence()..) {
            let (sequence, entity, _, record_clock) = image.record_key(position);
            if sequence != expected {
                return Err(format!(
                    "image record {position} has sequence {sequence}, the index expects {expected}{}",
                    if compacted {
                        " (compacted segments are scanned)"
                    } else {
                        ""
                    }
                ));
            }
            let clock = &mut clocks[entity as usize];
            if u64::from(record_clock) != *clock + 1 {
                return Err(format!(
                    "image record {position} jumps entity {} from clock {clock} to {record_clock}",
                    image.entities[entity as usize].0
                ));
            }
            *clock += 1;
        }
        // Resolve the image's tables to index ids, in first-appearance
        // order, as pushing frame by frame would assign them.
        let mut entity_ids = Vec::with_capacity(image.entities.len());
        for (name, _) in &image.entities {
            let id = match self.entity_id(name) {
                Some(id) => id,
                None => {
                    let name: std::sync::Arc<str> = std::sync::Arc::from(*name);
                    let id = u32::try_from(self.entities.len())
                        .map_err(|_| "too many entities".to_string())?;
                    self.entities.push(super::EntityState {
                        name: name.clone(),
                        sequences: Vec::new(),
                        clock: 0,
                        last_hash: None,
                        floor_clock: 0,
                    });
                    self.entity_by_name.insert(name.clone(), id);
                    self.entity_lookup.insert(name, id);
                    id
                }
            };
            entity_ids.push(id);
        }
        let mut scope_ids = Vec::with_capacity(image.scopes.len());
        for name in &image.scopes {
            let id = match self.scope_by_name.get(*name) {
                Some(&id) => id,
                None => {
                    let name: std::sync::Arc<str> = std::sync::Arc::from(*name);
                    let id = u32::try_from(self.scopes.len())
                        .map_err(|_| "too many scopes".to_string())?;
                    self.scopes.push(name.clone());
                    self.scope_by_name.insert(name, id);
                    id
                }
            };
            scope_ids.push(id);
        }
        for position in 0..events {
            let record = image.record(position);
            let entity = entity_ids[record.entity as usize];
            let state = &mut self.entities[entity as usize];
            state.sequences.push(record.sequence);
            state.clock = u64::from(record.clock);
            self.entries.push(Entry {
                segment,
                offset: record.offset,
                timestamp_us: record.timestamp_us,
                entity,
                scope: scope_ids[record.scope as usize],
                clock: record.clock,
                kind: record.kind,
                flags: record.flags,
            });
            match self.ids.last() {
                Some(last) if *last >= record.event_id => {
                    self.ids_out_of_order
                        .insert(record.event_id, record.sequence);
                    self.ids_replaced.insert(record.sequence, record.event_id);
                    let last = *last;
                    self.ids.push(last);
                }
                _ => self.ids.push(record.event_id),
            }
        }
        for (local, (_, hash)) in image.entities.iter().enumerate() {
            self.entities[entity_ids[local] as usize].last_hash = *hash;
        }
        let sequence_at = |position: u32| image.record(position as usize).sequence;
        for (position, correlation) in ImageView::sparse(image.correlations) {
            let sequence = sequence_at(position);
            self.correlated
                .entry(correlation)
                .or_default()
                .push(sequence);
            self.explicit_correlation.insert(sequence);
        }
        for (position, cause) in ImageView::sparse(image.causations) {
            self.caused
                .entry(cause)
                .or_default()
                .push(sequence_at(position));
        }
        for (position, unit, key) in &image.keys {
            self.idempotency
                .insert((*key).into(), (sequence_at(*position), *unit));
        }
        Ok(())
    }

    /// True if two indexes hold exactly the same state (tests: an index
    /// restored from images must equal one rebuilt by scanning).
    #[cfg(any(test, feature = "dangerous-test-hooks"))]
    pub(crate) fn same_as(&self, other: &Index) -> Result<(), String> {
        fn check<T: PartialEq + std::fmt::Debug>(what: &str, a: T, b: T) -> Result<(), String> {
            if a == b {
                Ok(())
            } else {
                let text = format!("{what} differs: {a:?} vs {b:?}");
                Err(text.chars().take(2000).collect())
            }
        }
        fn check_list<T: PartialEq + std::fmt::Debug>(
            what: &str,
            a: &[T],
            b: &[T],
        ) -> Result<(), String> {
            check(&format!("{what} length"), a.len(), b.len())?;
            match a.iter().zip(b).position(|(x, y)| x != y) {
                Some(at) => Err(format!("{what}[{at}] differs: {:?} vs {:?}", a[at], b[at])),
                None => Ok(()),
            }
        }
        check_list("entries", &self.entries, &other.entries)?;
        check_list("ids", &self.ids, &other.ids)?;
        check(
            "ids out of order",
            &self.ids_out_of_order,
            &other.ids_out_of_order,
        )?;
        check("ids replaced", &self.ids_replaced, &other.ids_replaced)?;
        check("visible", self.visible, other.visible)?;
        check("entity count", self.entities.len(), other.entities.len())?;
        for (a, b) in self.entities.iter().zip(&other.entities) {
            check("entity name", &a.name, &b.name)?;
            check_list("entity sequences", &a.sequences, &b.sequences)?;
            check("entity clock", a.clock, b.clock)?;
            check("entity last hash", a.last_hash, b.last_hash)?;
        }
        check("entity names", &self.entity_by_name, &other.entity_by_name)?;
        check("entity lookup", &self.entity_lookup, &other.entity_lookup)?;
        check("scopes", &self.scopes, &other.scopes)?;
        check("scope names", &self.scope_by_name, &other.scope_by_name)?;
        check("idempotency", &self.idempotency, &other.idempotency)?;
        check("correlated", &self.correlated, &other.correlated)?;
        check(
            "explicit correlation",
            &self.explicit_correlation,
            &other.explicit_correlation,
        )?;
        check("caused", &self.caused, &other.caused)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind;

    fn identity() -> SegmentIdentity {
        SegmentIdentity {
            id: 3,
            flags: 0,
            created_us: 77,
            first_sequence: 0,
        }
    }

    fn records() -> Vec<(u64, &'static str, u64, u8)> {
        vec![
            (0, "a", 1, 1),
            (1, "b", 1, 2),
            (2, "a", 2, 3),
            (3, "c", 1, 9),
            (4, "a", 3, 5),
        ]
    }

    fn record((sequence, entity, clock, id): (u64, &'static str, u64, u8)) -> NewEntry<'static> {
        NewEntry {
            sequence,
            segment: 0,
            offset: 48 + sequence as u32 * 10,
            timestamp_us: sequence as i64 * 7,
            event_id: EventId::from_bytes([id; 16]),
            entity,
            scope: if sequence % 2 == 0 { "s" } else { "t" },
            clock,
            kind: EventKind::custom(1, sequence as u16),
            flags: sequence as u16,
            correlation_id: (sequence == 2).then(|| EventId::from_bytes([1; 16])),
            causation_id: (sequence >= 3).then(|| EventId::from_bytes([2; 16])),
            idempotency: (sequence == 1).then_some((&b"key"[..], 1)),
            hash: Some(EventHash([sequence as u8; 32])),
            stub: false,
        }
    }

    fn scanned() -> Index {
        let mut index = Index::default();
        for r in records() {
            let r = record(r);
            index
                .push(NewEntry {
                    sequence: r.sequence,
                    segment: 3,
                    offset: r.offset,
                    timestamp_us: r.timestamp_us,
                    event_id: r.event_id,
                    entity: r.entity,
                    scope: r.scope,
                    clock: r.clock,
                    kind: r.kind,
                    flags: r.flags,
                    correlation_id: r.correlation_id,
                    causation_id: r.causation_id,
                    idempotency: r.idempotency,
                    hash: r.hash,
                    stub: false,
                })
                .unwrap();
        }
        index
    }

    fn image_bytes() -> Vec<u8> {
        let mut builder = ImageBuilder::new(identity(), 98);
        for r in records() {
            builder.push(&record(r)).unwrap();
        }
        builder.encode(KIND_FOOTER)
    }

    #[test]
    fn an_applied_image_equals_a_scan() {
        let bytes = image_bytes();
        let view = decode_image(&bytes).unwrap();
        assert_eq!(view.events, 5);
        assert_eq!(view.watermark, 98);
        assert_eq!(view.next_sequence, 5);
        let mut restored = Index::default();
        restored.apply_image(&view).unwrap();
        restored.same_as(&scanned()).unwrap();
    }

    #[test]
    fn every_damaged_byte_is_rejected_and_never_panics() {
        let bytes = image_bytes();
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x41;
            assert!(decode_image(&damaged).is_err(), "byte {at}");
        }
        for cut in 0..bytes.len() {
            assert!(decode_image(&bytes[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn an_image_that_does_not_continue_the_index_changes_nothing() {
        let bytes = image_bytes();
        let view = decode_image(&bytes).unwrap();
        let mut index = scanned();
        assert!(index.apply_image(&view).is_err());
        index.same_as(&scanned()).unwrap();
    }
}
