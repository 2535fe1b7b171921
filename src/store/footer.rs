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
//! Images of another version (version 1 stored 52-byte records) are ignored
//! the same way and rewritten at the next checkpoint or close.
//!
//! Layout (little-endian), header 96 bytes:
//!
//! ```text
//!  0 magic "BATPAKIX"        8 version u16 (2)     10 kind u16 (1 footer, 2 checkpoint)
//! 12 segment flags u32      16 segment id u32      20 entity count u32
//! 24 segment created_us i64 32 segment first sequence u64
//! 40 watermark u64          48 event count u64     56 next sequence u64
//! 64 scope count u32        68 correlation count   72 causation count   76 key count
//! 80 body length u64        88 body crc32 u32      92 header crc32 u32 (bytes 0..92)
//! ```
//!
//! Version 2 stores records column by column, each field in its smallest
//! usual form, with exception lists for the unusual values (about 11 bytes
//! per event for the typical store, against 52 in version 1). Body, in order:
//!
//! ```text
//! counts      u32 × 7: kinds, sequence jumps, clock jumps, flagged records,
//!             offset escapes, timestamp escapes, id escapes
//! entities    per entity: u16 length, name
//!             per entity: u8 hash present, 32-byte last hash in this image,
//!                         u32 clock before its first record here, u32 records here
//! scopes      per scope: u16 length, name
//! kinds       u16 each
//! columns     (N = event count; width w(n) = 0 bytes if n ≤ 1, 1 if ≤ 256,
//!              2 if ≤ 65,536, else 4)
//!             entity position   w(entities) × N
//!             scope position    w(scopes) × N
//!             kind position     w(kinds) × N
//!             offset delta      u16 × N (from the previous record; 0 = escaped)
//!             timestamp delta   u16 × N (µs after the previous record; 0xFFFF = escaped)
//!             id delta          u32 × N (id − previous id as 128-bit integers; 0 = escaped)
//! exceptions  sequence jumps    (u32 record, u64 sequence): where a sequence is not previous + 1
//!             clock jumps       (u32 record, u32 clock): where a clock is not the entity's previous + 1
//!             flagged records   (u32 record, u16 flags): every record with flags ≠ 0
//!             offset escapes    (u32 record, u32 offset)
//!             timestamp escapes (u32 record, i64 timestamp)
//!             id escapes        (u32 record, 16-byte id)
//! causal      correlations (u32 record, id 16), causations (u32 record, id 16),
//!             idempotency keys (u32 record, u32 unit length, u8 key length, key)
//! ```
//!
//! The first sequence expected is the segment's first sequence; the deltas
//! of the first record count from zero (so its timestamp and id are escaped;
//! its offset usually is not). Every exception list is in ascending record order and each escape
//! marker must meet its entry, so a decoder walks the columns and the lists
//! together in one pass.

use std::collections::HashMap;

use super::{Entry, Index, NewEntry};
use crate::store::log::frame::{u16_at, u32_at, u64_at};
use crate::{EventHash, EventId};

/// Magic bytes of an index image.
pub(crate) const IMAGE_MAGIC: [u8; 8] = *b"BATPAKIX";
/// Version of the image format.
pub(crate) const IMAGE_VERSION: u16 = 2;
/// Size of the image header.
pub(crate) const IMAGE_HEADER_BYTES: usize = 96;
/// Image kind: the whole of a sealed segment.
pub(crate) const KIND_FOOTER: u16 = 1;
/// Image kind: a prefix of the active segment.
pub(crate) const KIND_CHECKPOINT: u16 = 2;

/// Size of the counts block at the start of the body.
const COUNTS_BYTES: usize = 7 * 4;
/// Per entity after its name: hash marker and hash, base clock, record count.
const ENTITY_STATE_BYTES: usize = 1 + 32 + 4 + 4;
/// Fixed column bytes per record: offset, timestamp and id deltas.
const FIXED_COLUMN_BYTES: usize = 2 + 2 + 4;
/// Marker of an escaped offset delta.
const OFFSET_ESCAPED: u16 = 0;
/// Marker of an escaped timestamp delta.
const TIMESTAMP_ESCAPED: u16 = u16::MAX;
/// Marker of an escaped id delta.
const ID_ESCAPED: u32 = 0;
/// Entry sizes of the exception and causal lists.
const SEQUENCE_JUMP_BYTES: usize = 4 + 8;
const CLOCK_JUMP_BYTES: usize = 4 + 4;
const FLAGGED_BYTES: usize = 4 + 2;
const OFFSET_ESCAPE_BYTES: usize = 4 + 4;
const TIMESTAMP_ESCAPE_BYTES: usize = 4 + 8;
const ID_ENTRY_BYTES: usize = 4 + 16;

/// Bytes of one position in a table of `count` entries.
fn width(count: usize) -> usize {
    match count {
        0..=1 => 0,
        2..=256 => 1,
        257..=65_536 => 2,
        _ => 4,
    }
}

fn put_position(out: &mut Vec<u8>, width: usize, position: u32) {
    match width {
        0 => {}
        1 => out.push(position as u8),
        2 => out.extend_from_slice(&(position as u16).to_le_bytes()),
        _ => out.extend_from_slice(&position.to_le_bytes()),
    }
}

#[inline(always)]
fn position_at(column: &[u8], width: usize, record: usize) -> u32 {
    match width {
        0 => 0,
        1 => u32::from(column[record]),
        2 => u32::from(u16_at(column, record * 2)),
        _ => u32_at(column, record * 4),
    }
}

fn id_value(id: EventId) -> u128 {
    u128::from_be_bytes(id.to_bytes())
}

fn id_from_value(value: u128) -> EventId {
    EventId::from_bytes(value.to_be_bytes())
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    u64_at(bytes, at) as i64
}

/// Which segment file an image describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentIdentity {
    pub(crate) id: u32,
    pub(crate) flags: u32,
    pub(crate) created_us: i64,
    pub(crate) first_sequence: u64,
}

/// One record as the builder keeps it until encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BuiltRecord {
    sequence: u64,
    timestamp_us: i64,
    event_id: EventId,
    offset: u32,
    entity: u32,
    scope: u32,
    clock: u32,
    kind: u16,
    flags: u16,
}

/// Builds an image from scanned frames, record by record.
#[derive(Debug)]
pub(crate) struct ImageBuilder {
    segment: SegmentIdentity,
    entity_ids: HashMap<Box<str>, u32, super::FastHash>,
    entities: Vec<(Box<str>, Option<EventHash>)>,
    scope_ids: HashMap<Box<str>, u32, super::FastHash>,
    scopes: Vec<Box<str>>,
    records: Vec<BuiltRecord>,
    next_sequence: u64,
    correlations: Vec<(u32, EventId)>,
    causations: Vec<(u32, EventId)>,
    keys: Vec<(u32, u32, Box<[u8]>)>,
    /// An image loaded at open, kept encoded (with its number of records)
    /// until the first push needs its records: open does not pay for
    /// decoding the active segment's checkpoint a second time.
    loaded: Option<(Vec<u8>, u32)>,
    /// Bytes of the segment covered so far.
    pub(crate) watermark: u64,
}

impl ImageBuilder {
    pub(crate) fn new(segment: SegmentIdentity, watermark: u64) -> Self {
        ImageBuilder {
            segment,
            entity_ids: HashMap::default(),
            entities: Vec::new(),
            scope_ids: HashMap::default(),
            scopes: Vec::new(),
            records: Vec::new(),
            next_sequence: segment.first_sequence,
            correlations: Vec::new(),
            causations: Vec::new(),
            keys: Vec::new(),
            loaded: None,
            watermark,
        }
    }

    pub(crate) fn segment(&self) -> SegmentIdentity {
        self.segment
    }

    pub(crate) fn events(&self) -> u32 {
        match &self.loaded {
            Some((_, events)) => *events,
            None => self.records.len() as u32,
        }
    }

    /// Continues from a loaded and checked image (the checkpoint of the
    /// active segment), keeping its bytes; they are decoded when the first
    /// record is pushed.
    pub(crate) fn from_loaded(view: &ImageView<'_>, bytes: &[u8]) -> Self {
        let mut builder = ImageBuilder::new(view.segment, view.watermark);
        builder.next_sequence = view.next_sequence;
        builder.loaded = Some((bytes.to_vec(), view.events as u32));
        builder
    }

    /// Decodes a kept image into records, so that more can be pushed.
    fn materialize(&mut self) -> Result<(), String> {
        if let Some((bytes, _)) = self.loaded.take() {
            let view = decode_image(&bytes)?;
            let watermark = self.watermark;
            *self = ImageBuilder::from_view(&view)?;
            self.watermark = watermark;
        }
        Ok(())
    }

    pub(crate) fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Continues from a loaded image (the checkpoint of the active segment),
    /// so later checkpoints only scan what was appended since.
    pub(crate) fn from_view(view: &ImageView<'_>) -> Result<Self, String> {
        let mut builder = ImageBuilder::new(view.segment, view.watermark);
        for (position, entity) in view.entities.iter().enumerate() {
            builder.entities.push((entity.name.into(), entity.hash));
            builder
                .entity_ids
                .insert(entity.name.into(), position as u32);
        }
        for (position, name) in view.scopes.iter().enumerate() {
            builder.scopes.push((*name).into());
            builder.scope_ids.insert((*name).into(), position as u32);
        }
        builder.records.reserve_exact(view.events as usize);
        let mut cursor = view.cursor();
        for _ in 0..view.events {
            let record = cursor.next_record()?;
            builder.records.push(BuiltRecord {
                sequence: record.sequence,
                timestamp_us: record.timestamp_us,
                event_id: record.event_id,
                offset: record.offset,
                entity: record.entity,
                scope: record.scope,
                clock: record.clock,
                kind: record.kind,
                flags: record.flags,
            });
        }
        builder.next_sequence = view.next_sequence;
        builder.correlations = ImageView::id_list(view.correlations).collect();
        builder.causations = ImageView::id_list(view.causations).collect();
        builder.keys = view
            .keys
            .iter()
            .map(|(position, unit, key)| (*position, *unit, (*key).into()))
            .collect();
        Ok(builder)
    }

    /// Adds one record. Fails only if a limit of the format is exceeded.
    pub(crate) fn push(&mut self, record: &NewEntry<'_>) -> Result<(), String> {
        self.materialize()?;
        let clock = u32::try_from(record.clock)
            .map_err(|_| format!("clock {} exceeds the index limit", record.clock))?;
        if clock == 0 {
            return Err("a record with clock zero".into());
        }
        if self.records.len() >= u32::MAX as usize {
            return Err("too many records for one image".into());
        }
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
        let position = self.records.len() as u32;
        self.entities[entity as usize].1 = record.hash;
        self.records.push(BuiltRecord {
            sequence: record.sequence,
            timestamp_us: record.timestamp_us,
            event_id: record.event_id,
            offset: record.offset,
            entity,
            scope,
            clock,
            kind: record.kind.bits(),
            flags: record.flags,
        });
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
        if let Some((bytes, _)) = &self.loaded {
            // Nothing was pushed since loading: the same image, with this
            // kind and watermark (header fields only).
            let mut out = bytes.clone();
            out[10..12].copy_from_slice(&kind.to_le_bytes());
            out[40..48].copy_from_slice(&self.watermark.to_le_bytes());
            let header_crc = crc32fast::hash(&out[0..92]);
            out[92..96].copy_from_slice(&header_crc.to_le_bytes());
            return out;
        }
        let events = self.records.len();
        // Kinds, per-entity base clocks and counts, and every exception.
        let mut kind_ids: HashMap<u16, u32, super::FastHash> = HashMap::default();
        let mut kinds: Vec<u16> = Vec::new();
        let mut entity_state: Vec<(Option<u32>, u32, u32)> =
            vec![(None, 0, 0); self.entities.len()];
        let mut sequence_jumps: Vec<(u32, u64)> = Vec::new();
        let mut clock_jumps: Vec<(u32, u32)> = Vec::new();
        let mut flagged: Vec<(u32, u16)> = Vec::new();
        let mut offset_escapes: Vec<(u32, u32)> = Vec::new();
        let mut timestamp_escapes: Vec<(u32, i64)> = Vec::new();
        let mut id_escapes: Vec<(u32, EventId)> = Vec::new();
        let mut kind_column: Vec<u32> = Vec::with_capacity(events);
        let mut fixed = Vec::with_capacity(events * FIXED_COLUMN_BYTES);
        let (mut offsets, mut timestamps, mut ids) = (
            Vec::with_capacity(events * 2),
            Vec::with_capacity(events * 2),
            Vec::with_capacity(events * 4),
        );
        let mut previous_sequence = self.segment.first_sequence.wrapping_sub(1);
        let (mut previous_offset, mut previous_timestamp, mut previous_id) = (0u32, 0i64, 0u128);
        for (position, record) in self.records.iter().enumerate() {
            let position = position as u32;
            let next_kind = kinds.len() as u32;
            let kind_id = *kind_ids.entry(record.kind).or_insert(next_kind);
            if kind_id == next_kind {
                kinds.push(record.kind);
            }
            kind_column.push(kind_id);
            if record.sequence != previous_sequence.wrapping_add(1) {
                sequence_jumps.push((position, record.sequence));
            }
            previous_sequence = record.sequence;
            let state = &mut entity_state[record.entity as usize];
            match state.0 {
                None => state.0 = Some(record.clock - 1),
                Some(_) if record.clock != state.1.wrapping_add(1) => {
                    clock_jumps.push((position, record.clock));
                }
                Some(_) => {}
            }
            state.1 = record.clock;
            state.2 += 1;
            if record.flags != 0 {
                flagged.push((position, record.flags));
            }
            let offset_delta = record.offset.wrapping_sub(previous_offset);
            if record.offset > previous_offset && offset_delta <= u32::from(u16::MAX) {
                offsets.extend_from_slice(&(offset_delta as u16).to_le_bytes());
            } else {
                offsets.extend_from_slice(&OFFSET_ESCAPED.to_le_bytes());
                offset_escapes.push((position, record.offset));
            }
            previous_offset = record.offset;
            let timestamp_delta = record.timestamp_us.wrapping_sub(previous_timestamp);
            if (0..i64::from(TIMESTAMP_ESCAPED)).contains(&timestamp_delta)
                && record.timestamp_us >= previous_timestamp
            {
                timestamps.extend_from_slice(&(timestamp_delta as u16).to_le_bytes());
            } else {
                timestamps.extend_from_slice(&TIMESTAMP_ESCAPED.to_le_bytes());
                timestamp_escapes.push((position, record.timestamp_us));
            }
            previous_timestamp = record.timestamp_us;
            let id = id_value(record.event_id);
            let id_delta = id.wrapping_sub(previous_id);
            if id > previous_id && id_delta <= u128::from(u32::MAX) {
                ids.extend_from_slice(&(id_delta as u32).to_le_bytes());
            } else {
                ids.extend_from_slice(&ID_ESCAPED.to_le_bytes());
                id_escapes.push((position, record.event_id));
            }
            previous_id = id;
        }
        fixed.extend_from_slice(&offsets);
        fixed.extend_from_slice(&timestamps);
        fixed.extend_from_slice(&ids);

        let (entity_width, scope_width, kind_width) = (
            width(self.entities.len()),
            width(self.scopes.len()),
            width(kinds.len()),
        );
        let mut body = Vec::with_capacity(
            COUNTS_BYTES
                + self.entities.len() * (ENTITY_STATE_BYTES + 16)
                + events * (entity_width + scope_width + kind_width + FIXED_COLUMN_BYTES)
                + 64,
        );
        for count in [
            kinds.len(),
            sequence_jumps.len(),
            clock_jumps.len(),
            flagged.len(),
            offset_escapes.len(),
            timestamp_escapes.len(),
            id_escapes.len(),
        ] {
            body.extend_from_slice(&(count as u32).to_le_bytes());
        }
        for (name, _) in &self.entities {
            body.extend_from_slice(&(name.len() as u16).to_le_bytes());
            body.extend_from_slice(name.as_bytes());
        }
        for ((_, hash), (base, _, count)) in self.entities.iter().zip(&entity_state) {
            match hash {
                Some(hash) => {
                    body.push(1);
                    body.extend_from_slice(hash.as_bytes());
                }
                None => body.extend_from_slice(&[0u8; 33]),
            }
            body.extend_from_slice(&base.unwrap_or(0).to_le_bytes());
            body.extend_from_slice(&count.to_le_bytes());
        }
        for name in &self.scopes {
            body.extend_from_slice(&(name.len() as u16).to_le_bytes());
            body.extend_from_slice(name.as_bytes());
        }
        for kind in &kinds {
            body.extend_from_slice(&kind.to_le_bytes());
        }
        for record in &self.records {
            put_position(&mut body, entity_width, record.entity);
        }
        for record in &self.records {
            put_position(&mut body, scope_width, record.scope);
        }
        for kind in &kind_column {
            put_position(&mut body, kind_width, *kind);
        }
        body.extend_from_slice(&fixed);
        for (position, sequence) in &sequence_jumps {
            body.extend_from_slice(&position.to_le_bytes());
            body.extend_from_slice(&sequence.to_le_bytes());
        }
        for (position, clock) in &clock_jumps {
            body.extend_from_slice(&position.to_le_bytes());
            body.extend_from_slice(&clock.to_le_bytes());
        }
        for (position, flags) in &flagged {
            body.extend_from_slice(&position.to_le_bytes());
            body.extend_from_slice(&flags.to_le_bytes());
        }
        for (position, offset) in &offset_escapes {
            body.extend_from_slice(&position.to_le_bytes());
            body.extend_from_slice(&offset.to_le_bytes());
        }
        for (position, timestamp) in &timestamp_escapes {
            body.extend_from_slice(&position.to_le_bytes());
            body.extend_from_slice(&timestamp.to_le_bytes());
        }
        for list in [&id_escapes, &self.correlations, &self.causations] {
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
        out.extend_from_slice(&(events as u64).to_le_bytes());
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

/// One entity of an image: name, last link, clock before its first record
/// in the image, and its number of records there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntityView<'a> {
    name: &'a str,
    hash: Option<EventHash>,
    base_clock: u32,
    records: u32,
}

/// A checked image borrowing the bytes it was read from.
#[derive(Debug)]
pub(crate) struct ImageView<'a> {
    pub(crate) kind: u16,
    pub(crate) segment: SegmentIdentity,
    pub(crate) watermark: u64,
    pub(crate) events: u64,
    pub(crate) next_sequence: u64,
    entities: Vec<EntityView<'a>>,
    scopes: Vec<&'a str>,
    kinds: Vec<u16>,
    entity_column: &'a [u8],
    scope_column: &'a [u8],
    kind_column: &'a [u8],
    offsets: &'a [u8],
    timestamps: &'a [u8],
    ids: &'a [u8],
    sequence_jumps: &'a [u8],
    clock_jumps: &'a [u8],
    flagged: &'a [u8],
    offset_escapes: &'a [u8],
    timestamp_escapes: &'a [u8],
    id_escapes: &'a [u8],
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
        return Err(format!(
            "unsupported index image version {version} (this build reads version {IMAGE_VERSION}; the image is rebuilt)"
        ));
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
        created_us: i64_at(bytes, 24),
        first_sequence: u64_at(bytes, 32),
    };
    Ok((kind, segment, u64_at(bytes, 40), u64_at(bytes, 48)))
}

/// Checks an image completely (checksums, every length, every reference and
/// every exception list, by decoding each record once) without allocating
/// more than its tables of names need.
pub(crate) fn decode_image(bytes: &[u8]) -> Result<ImageView<'_>, String> {
    let view = parse_image(bytes)?;
    view.check_records()?;
    Ok(view)
}

/// Checks an image's header, checksums, tables and sparse lists, but not
/// its records: [`Index::apply_image`] checks those while loading them (one
/// pass instead of two), and takes nothing from an image that fails.
pub(crate) fn parse_image(bytes: &[u8]) -> Result<ImageView<'_>, String> {
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
    if body.len() < COUNTS_BYTES {
        return Err("image body is shorter than its counts".into());
    }
    let count_at = |i: usize| u32_at(body, i * 4) as usize;
    let kind_count = count_at(0);
    let lists = [
        (count_at(1), SEQUENCE_JUMP_BYTES),
        (count_at(2), CLOCK_JUMP_BYTES),
        (count_at(3), FLAGGED_BYTES),
        (count_at(4), OFFSET_ESCAPE_BYTES),
        (count_at(5), TIMESTAMP_ESCAPE_BYTES),
        (count_at(6), ID_ENTRY_BYTES),
        (correlation_count, ID_ENTRY_BYTES),
        (causation_count, ID_ENTRY_BYTES),
    ];
    // Every count is checked against the bytes present before anything is
    // allocated for it: the smallest possible entry of each table is known.
    let events_usize = usize::try_from(events).map_err(|_| "event count too large".to_string())?;
    if events_usize > u32::MAX as usize {
        return Err("image holds more records than the format allows".into());
    }
    let (entity_width, scope_width, kind_width) =
        (width(entity_count), width(scope_count), width(kind_count));
    let per_record = entity_width + scope_width + kind_width + FIXED_COLUMN_BYTES;
    let minimum = lists
        .iter()
        .fold(COUNTS_BYTES, |sum, (count, size)| {
            sum.saturating_add(count.saturating_mul(*size))
        })
        .saturating_add(entity_count.saturating_mul(2 + ENTITY_STATE_BYTES))
        .saturating_add(scope_count.saturating_mul(2))
        .saturating_add(kind_count.saturating_mul(2))
        .saturating_add(events_usize.saturating_mul(per_record))
        .saturating_add(key_count.saturating_mul(9));
    if minimum > body.len() {
        return Err("image tables are larger than the image".into());
    }
    let mut reader = BodyReader {
        body,
        at: COUNTS_BYTES,
    };
    let entity_names = reader.names(entity_count)?;
    let mut entities = Vec::with_capacity(entity_count);
    for name in entity_names {
        let slot = reader.take(ENTITY_STATE_BYTES)?;
        let hash = match slot[0] {
            0 if slot[1..33] == [0u8; 32] => None,
            1 => {
                let mut out = [0u8; 32];
                out.copy_from_slice(&slot[1..33]);
                Some(EventHash(out))
            }
            _ => return Err("image holds a bad hash marker".into()),
        };
        entities.push(EntityView {
            name,
            hash,
            base_clock: u32_at(slot, 33),
            records: u32_at(slot, 37),
        });
    }
    let scopes = reader.names(scope_count)?;
    let kinds: Vec<u16> = reader
        .take(kind_count * 2)?
        .chunks_exact(2)
        .map(|c| u16_at(c, 0))
        .collect();
    let entity_column = reader.take(events_usize * entity_width)?;
    let scope_column = reader.take(events_usize * scope_width)?;
    let kind_column = reader.take(events_usize * kind_width)?;
    let offsets = reader.take(events_usize * 2)?;
    let timestamps = reader.take(events_usize * 2)?;
    let ids = reader.take(events_usize * 4)?;
    let mut list = |i: usize| reader.take(lists[i].0 * lists[i].1);
    let sequence_jumps = list(0)?;
    let clock_jumps = list(1)?;
    let flagged = list(2)?;
    let offset_escapes = list(3)?;
    let timestamp_escapes = list(4)?;
    let id_escapes = list(5)?;
    let correlations = list(6)?;
    let causations = list(7)?;
    let mut keys = Vec::with_capacity(key_count);
    for _ in 0..key_count {
        let fixed = reader.take(9)?;
        let position = u32_at(fixed, 0);
        let unit = u32_at(fixed, 4);
        let key = reader.take(usize::from(fixed[8]))?;
        keys.push((position, unit, key));
    }
    if reader.at != body.len() {
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
        kinds,
        entity_column,
        scope_column,
        kind_column,
        offsets,
        timestamps,
        ids,
        sequence_jumps,
        clock_jumps,
        flagged,
        offset_escapes,
        timestamp_escapes,
        id_escapes,
        correlations,
        causations,
        keys,
    };
    view.check_tables()?;
    Ok(view)
}

impl<'a> ImageView<'a> {
    /// Sequence, frame offset and id of the last record, from the columns
    /// alone (for the spot check against the log before loading): the last
    /// escaped value plus the deltas after it. `None` for an empty image or
    /// columns that cannot be summed (such an image fails loading anyway).
    pub(crate) fn last_frame(&self) -> Option<(u64, u32, EventId)> {
        let events = usize::try_from(self.events).ok()?.checked_sub(1)?;
        let last_entry = |list: &'a [u8], size: usize| {
            let start = list.len().checked_sub(size)?;
            let entry = &list[start..];
            Some((u32_at(entry, 0) as usize, &entry[4..]))
        };
        let sequence = match last_entry(self.sequence_jumps, SEQUENCE_JUMP_BYTES) {
            Some((at, value)) => u64_at(value, 0).checked_add((events.checked_sub(at)?) as u64)?,
            None => self.segment.first_sequence.checked_add(events as u64)?,
        };
        // Deltas count from the last escaped value, or from zero.
        let (from, mut offset) = match last_entry(self.offset_escapes, OFFSET_ESCAPE_BYTES) {
            Some((at, value)) => (at.checked_add(1)?, u64::from(u32_at(value, 0))),
            None => (0, 0),
        };
        for record in from..=events {
            let delta = self.offsets.get(record * 2..record * 2 + 2)?;
            offset += u64::from(u16_at(delta, 0));
        }
        let (from, mut id) = match last_entry(self.id_escapes, ID_ENTRY_BYTES) {
            Some((at, value)) => (at.checked_add(1)?, id_value(id_at(value, 0))),
            None => (0, 0),
        };
        for record in from..=events {
            let delta = self.ids.get(record * 4..record * 4 + 4)?;
            id = id.checked_add(u128::from(u32_at(delta, 0)))?;
        }
        Some((sequence, u32::try_from(offset).ok()?, id_from_value(id)))
    }

    fn id_list(list: &[u8]) -> impl Iterator<Item = (u32, EventId)> + '_ {
        list.chunks_exact(ID_ENTRY_BYTES)
            .map(|c| (u32_at(c, 0), id_at(c, 4)))
    }

    /// A cursor over the records, in order.
    fn cursor(&self) -> RecordCursor<'_, 'a> {
        RecordCursor {
            view: self,
            position: 0,
            sequence: self.segment.first_sequence.wrapping_sub(1),
            offset: 0,
            timestamp_us: 0,
            id: 0,
            widths: [
                width(self.entities.len()),
                width(self.scopes.len()),
                width(self.kinds.len()),
            ],
            clocks: self.entities.iter().map(|e| e.base_clock).collect(),
            sequence_jumps: ExceptionList::new(self.sequence_jumps, SEQUENCE_JUMP_BYTES),
            clock_jumps: ExceptionList::new(self.clock_jumps, CLOCK_JUMP_BYTES),
            flagged: ExceptionList::new(self.flagged, FLAGGED_BYTES),
            offset_escapes: ExceptionList::new(self.offset_escapes, OFFSET_ESCAPE_BYTES),
            timestamp_escapes: ExceptionList::new(self.timestamp_escapes, TIMESTAMP_ESCAPE_BYTES),
            id_escapes: ExceptionList::new(self.id_escapes, ID_ENTRY_BYTES),
        }
    }

    /// The records' consistency, by decoding every record once: references
    /// in range, sequences ascending, clocks ascending per entity and never
    /// zero, every exception list consumed in order, per-entity counts and
    /// the next sequence as the header and tables say.
    fn check_records(&self) -> Result<(), String> {
        let mut cursor = self.cursor();
        let mut counts = vec![0u32; self.entities.len()];
        for _ in 0..self.events {
            let record = cursor.next_record()?;
            counts[record.entity as usize] += 1;
        }
        cursor.finish()?;
        if counts
            .iter()
            .zip(&self.entities)
            .any(|(count, entity)| *count != entity.records)
        {
            return Err("image entity table disagrees with its records".into());
        }
        Ok(())
    }

    /// What can be checked without decoding the records: the entity table's
    /// counts add up, and the sparse lists are in range and in record order.
    fn check_tables(&self) -> Result<(), String> {
        let events = self.events as usize;
        let counted: u64 = self.entities.iter().map(|e| u64::from(e.records)).sum();
        if counted != self.events || self.entities.iter().any(|e| e.records == 0) {
            return Err("image entity table disagrees with its event count".into());
        }
        for list in [self.correlations, self.causations] {
            let mut previous = None;
            for (position, _) in Self::id_list(list) {
                if position as usize >= events || previous.is_some_and(|p| position <= p) {
                    return Err("image sparse list out of range or order".into());
                }
                previous = Some(position);
            }
        }
        let mut previous = None;
        for (position, unit, key) in &self.keys {
            if *position as usize >= events
                || previous.is_some_and(|p| *position <= p)
                || *unit == 0
                || key.is_empty()
            {
                return Err("image idempotency list out of range or order".into());
            }
            previous = Some(*position);
        }
        Ok(())
    }
}

/// A list of (u32 record position, value) entries walked alongside the
/// columns: the next entry's position, or `u32::MAX` when exhausted.
struct ExceptionList<'a> {
    bytes: &'a [u8],
    size: usize,
    at: usize,
    next: u64,
}

impl<'a> ExceptionList<'a> {
    fn new(bytes: &'a [u8], size: usize) -> Self {
        let mut list = ExceptionList {
            bytes,
            size,
            at: 0,
            next: u64::MAX,
        };
        list.peek();
        list
    }

    fn peek(&mut self) {
        self.next = if self.at < self.bytes.len() {
            u64::from(u32_at(self.bytes, self.at))
        } else {
            u64::MAX
        };
    }

    /// The value bytes of the entry for `position`, if the list has one
    /// there; entries before `position` were skipped (an order error).
    #[inline(always)]
    fn take(&mut self, position: u32) -> Result<Option<&'a [u8]>, &'static str> {
        let position = u64::from(position);
        if self.next > position {
            return Ok(None);
        }
        self.take_slow(position)
    }

    #[inline(never)]
    fn take_slow(&mut self, position: u64) -> Result<Option<&'a [u8]>, &'static str> {
        if self.next < position {
            return Err("exception list out of order");
        }
        let value = &self.bytes[self.at + 4..self.at + self.size];
        self.at += self.size;
        self.peek();
        Ok(Some(value))
    }

    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }
}

/// Decodes records one after the other, checking as it goes.
struct RecordCursor<'v, 'a> {
    view: &'v ImageView<'a>,
    position: u32,
    sequence: u64,
    offset: u32,
    timestamp_us: i64,
    id: u128,
    /// Widths of the entity, scope and kind columns.
    widths: [usize; 3],
    clocks: Vec<u32>,
    sequence_jumps: ExceptionList<'a>,
    clock_jumps: ExceptionList<'a>,
    flagged: ExceptionList<'a>,
    offset_escapes: ExceptionList<'a>,
    timestamp_escapes: ExceptionList<'a>,
    id_escapes: ExceptionList<'a>,
}

impl RecordCursor<'_, '_> {
    /// The next record. The caller calls it at most `events` times.
    #[inline]
    fn next_record(&mut self) -> Result<RecordView, String> {
        self.next_inner()
            .map_err(|what| format!("image record {}: {what}", self.position))
    }

    #[inline(always)]
    fn next_inner(&mut self) -> Result<RecordView, &'static str> {
        let view = self.view;
        let at = self.position as usize;
        let position = self.position;
        let bad = |what: &'static str| what;
        let entity = position_at(view.entity_column, self.widths[0], at);
        let scope = position_at(view.scope_column, self.widths[1], at);
        let kind = position_at(view.kind_column, self.widths[2], at);
        if entity as usize >= view.entities.len()
            || scope as usize >= view.scopes.len()
            || kind as usize >= view.kinds.len()
        {
            return Err(bad("names an unknown entity, scope or kind"));
        }
        let sequence = match self.sequence_jumps.take(position)? {
            Some(value) => {
                let sequence = u64_at(value, 0);
                if position > 0 && sequence <= self.sequence {
                    return Err(bad("breaks sequence order"));
                }
                sequence
            }
            None if position == 0 => view.segment.first_sequence,
            None => self
                .sequence
                .checked_add(1)
                .ok_or_else(|| bad("sequence overflows"))?,
        };
        let clock = &mut self.clocks[entity as usize];
        let next_clock = match self.clock_jumps.take(position)? {
            Some(value) => {
                let jumped = u32_at(value, 0);
                if jumped <= *clock {
                    return Err(bad("breaks its entity's clock order"));
                }
                jumped
            }
            None => clock.checked_add(1).ok_or_else(|| bad("clock overflows"))?,
        };
        *clock = next_clock;
        let flags = match self.flagged.take(position)? {
            Some(value) => u16_at(value, 0),
            None => 0,
        };
        let offset_delta = u16_at(view.offsets, at * 2);
        let escaped = self.offset_escapes.take(position)?;
        let offset = match (offset_delta, escaped) {
            (OFFSET_ESCAPED, Some(value)) => u32_at(value, 0),
            (OFFSET_ESCAPED, None) | (_, Some(_)) => {
                return Err(bad("offset escape does not match its list"));
            }
            (delta, None) => self
                .offset
                .checked_add(u32::from(delta))
                .ok_or_else(|| bad("offset overflows"))?,
        };
        let timestamp_delta = u16_at(view.timestamps, at * 2);
        let escaped = self.timestamp_escapes.take(position)?;
        let timestamp_us = match (timestamp_delta, escaped) {
            (TIMESTAMP_ESCAPED, Some(value)) => i64_at(value, 0),
            (TIMESTAMP_ESCAPED, None) | (_, Some(_)) => {
                return Err(bad("timestamp escape does not match its list"));
            }
            (delta, None) => self
                .timestamp_us
                .checked_add(i64::from(delta))
                .ok_or_else(|| bad("timestamp overflows"))?,
        };
        let id_delta = u32_at(view.ids, at * 4);
        let escaped = self.id_escapes.take(position)?;
        let id = match (id_delta, escaped) {
            (ID_ESCAPED, Some(value)) => u128::from_be_bytes(id_at(value, 0).to_bytes()),
            (ID_ESCAPED, None) | (_, Some(_)) => {
                return Err(bad("id escape does not match its list"));
            }
            (delta, None) => self
                .id
                .checked_add(u128::from(delta))
                .ok_or_else(|| bad("id overflows"))?,
        };
        self.position += 1;
        self.sequence = sequence;
        self.offset = offset;
        self.timestamp_us = timestamp_us;
        self.id = id;
        Ok(RecordView {
            sequence,
            offset,
            timestamp_us,
            event_id: id_from_value(id),
            entity,
            scope,
            clock: next_clock,
            kind: view.kinds[kind as usize],
            flags,
        })
    }

    /// After the last record: every exception entry was used and the next
    /// sequence is the one the header states.
    fn finish(&self) -> Result<(), String> {
        let next = if self.position == 0 {
            self.view.segment.first_sequence
        } else {
            self.sequence.wrapping_add(1)
        };
        if next != self.view.next_sequence {
            return Err("image next sequence disagrees with its records".into());
        }
        let lists = [
            &self.sequence_jumps,
            &self.clock_jumps,
            &self.flagged,
            &self.offset_escapes,
            &self.timestamp_escapes,
            &self.id_escapes,
        ];
        if lists.iter().all(|list| list.done()) {
            Ok(())
        } else {
            Err("image exception list names a record out of range or out of order".into())
        }
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
            // Names become coordinates on every read: they must be ones the
            // write path would have accepted, checksums or not.
            crate::coordinate::validate_part("entity or scope", name)
                .map_err(|e| format!("image holds an invalid name: {e}"))?;
            out.push(name);
        }
        Ok(out)
    }
}

/// Below this many planned events open does not start a prefault thread.
const PREFAULT_MIN_EVENTS: usize = 1 << 16;

/// An address range, as plain numbers, for [`Prefault`].
fn span<T>(spare: &mut [std::mem::MaybeUninit<T>]) -> (usize, usize) {
    (spare.as_mut_ptr() as usize, std::mem::size_of_val(spare))
}

/// A thread asking the kernel to fault in (allocate and zero) the columns
/// reserved at open, or the room appends grow them into, ahead of the
/// thread that fills them. Filling a million events' columns (48 MB) is
/// mostly page faults, and on a virtual machine whose host must first back
/// the memory it can take 100 ms or more; this way the other core takes most
/// of them while images are decoded (or while the appender goes on).
/// `MADV_POPULATE_WRITE` only maps pages, never changes what they hold, so
/// it is harmless to the loading thread writing the same range, and to
/// memory the allocator has since reused. Linux 5.14 and later; elsewhere, or
/// if the thread cannot start, nothing happens.
pub(crate) struct Prefault(Option<std::thread::JoinHandle<()>>);

impl Prefault {
    fn start(spans: Vec<(usize, usize)>) -> Prefault {
        #[cfg(target_os = "linux")]
        {
            let spawned = std::thread::Builder::new()
                .name("batpak-prefault".into())
                .spawn(move || {
                    populate(&spans);
                });
            Prefault(spawned.ok())
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = spans;
            Prefault(None)
        }
    }

    /// Lets the thread finish on its own: for the room appends grow into,
    /// which the appender must not wait for.
    fn detach(mut self) {
        drop(self.0.take());
    }
}

/// Faults in the whole pages of each span (`MADV_POPULATE_WRITE`), in
/// rounds of a slice of every span, so a thread filling all the spans from
/// the front at once meets populated pages soon in each of them. Returns how
/// many calls the kernel refused (an old kernel, an unmapped range); those
/// pages are simply faulted later by whoever writes them.
#[cfg(target_os = "linux")]
fn populate(spans: &[(usize, usize)]) -> usize {
    const STEP: usize = 2 << 20;
    const PAGE: usize = 4096;
    // madvise takes page-aligned ranges only (an unaligned start is
    // refused with EINVAL): the whole pages inside each span.
    let pages: Vec<(usize, usize)> = spans
        .iter()
        .map(|&(start, len)| (start.div_ceil(PAGE), (start + len) / PAGE))
        .filter(|(first, end)| end > first)
        .collect();
    let longest = pages.iter().map(|(first, end)| end - first).max();
    let rounds = (longest.unwrap_or(0) * PAGE).div_ceil(STEP);
    let mut refused = 0;
    for round in 0..rounds {
        for &(first, end) in &pages {
            let from = first + (end - first) * round / rounds;
            let to = first + (end - first) * (round + 1) / rounds;
            if to == from {
                continue;
            }
            // SAFETY: MADV_POPULATE_WRITE only populates page tables for
            // the range (see [`Prefault`]); it reads and writes no memory.
            let result = unsafe {
                libc::madvise(
                    (from * PAGE) as *mut libc::c_void,
                    (to - from) * PAGE,
                    libc::MADV_POPULATE_WRITE,
                )
            };
            if result != 0 {
                refused += 1;
            }
        }
    }
    refused
}

impl Drop for Prefault {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            let _ = handle.join();
        }
    }
}

/// The index before an image was loaded: column length, next sequence (the
/// columns may start after a removed prefix), entity and scope counts.
#[derive(Debug, Clone, Copy)]
struct Savepoint {
    columns: usize,
    next_sequence: u64,
    entities: usize,
    scopes: usize,
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
    ///
    /// For a large store the returned [`Prefault`] has another thread fault
    /// the reserved memory in while this one loads images into it; drop it
    /// (which waits for that thread) once loading is done.
    pub(crate) fn reserve_events(&mut self, events: usize) -> Prefault {
        self.entries.reserve_exact(events);
        self.ids.reserve_exact(events);
        if events < PREFAULT_MIN_EVENTS {
            return Prefault(None);
        }
        Prefault::start(vec![
            span(self.entries.spare_capacity_mut()),
            span(self.ids.spare_capacity_mut()),
        ])
    }

    /// Has another thread fault in the spare capacity of the per-event
    /// columns, which appends fill next, without waiting for it. Should the
    /// columns move before it gets there, it faults in memory that is no
    /// longer theirs, which is harmless (see [`Prefault`]).
    pub(crate) fn prefault_spare_columns(&mut self) {
        Prefault::start(vec![
            span(self.entries.spare_capacity_mut()),
            span(self.ids.spare_capacity_mut()),
        ])
        .detach();
    }

    /// Loads an image (parsed by [`parse_image`] or fully checked by
    /// [`decode_image`]) into the index, exactly as scanning its frames
    /// would. Each record is checked as it loads; on any error the index is
    /// left as it was.
    pub(crate) fn apply_image(&mut self, image: &ImageView<'_>) -> Result<(), String> {
        let events = image.events as usize;
        // Compacted segments hold stubs and gaps, which images do not
        // describe: those segments are always scanned.
        if image.segment.flags & crate::store::log::frame::SEGMENT_FLAG_COMPACTED != 0 {
            return Err(
                "images of compacted segments are not loaded; the segment is scanned".into(),
            );
        }
        // The image must continue the index: sequences and clocks.
        if events > 0 && image.segment.first_sequence != self.next_sequence() {
            return Err(format!(
                "image starts at sequence {}, the index expects {}",
                image.segment.first_sequence,
                self.next_sequence()
            ));
        }
        if !image.sequence_jumps.is_empty() {
            return Err("image sequences have gaps".into());
        }
        if !image.clock_jumps.is_empty() {
            return Err("image clocks have gaps".into());
        }
        for entity in &image.entities {
            let (clock, _) = self.entity_head(entity.name);
            if u64::from(entity.base_clock) != clock {
                return Err(format!(
                    "image continues entity {} from clock {}, the index has it at {clock}",
                    entity.name, entity.base_clock
                ));
            }
        }
        // Resolve the image's tables to index ids, in first-appearance
        // order, as pushing frame by frame would assign them (an image lists
        // its entities and scopes in first-appearance order). Records are
        // checked while they load; on a failure everything is undone.
        let saved = Savepoint {
            columns: self.entries.len(),
            next_sequence: self.next_sequence(),
            entities: self.entities.len(),
            scopes: self.scopes.len(),
        };
        let mut entity_ids = Vec::with_capacity(image.entities.len());
        for entity in &image.entities {
            let id = self.intern_entity(entity.name)?;
            entity_ids.push(id);
        }
        let mut scope_ids = Vec::with_capacity(image.scopes.len());
        for name in &image.scopes {
            let id = self.intern_scope(name)?;
            scope_ids.push(id);
        }
        // Every list grows once, to its final size (the entity table's
        // counts were checked to add up to the event count).
        self.entries.reserve(events);
        self.ids.reserve(events);
        let lengths: Vec<usize> = image
            .entities
            .iter()
            .zip(&entity_ids)
            .map(|(entity, &id)| {
                let sequences = &mut self.entities[id as usize].sequences;
                sequences.reserve_exact(entity.records as usize);
                sequences.len()
            })
            .collect();
        let loaded = self
            .load_records(image, &entity_ids, &scope_ids)
            .and_then(|()| {
                let counts_match = image.entities.iter().zip(&entity_ids).zip(&lengths).all(
                    |((entity, &id), &before)| {
                        self.entities[id as usize].sequences.len() - before
                            == entity.records as usize
                    },
                );
                if counts_match {
                    Ok(())
                } else {
                    Err("image entity table disagrees with its records".to_string())
                }
            });
        if let Err(reason) = loaded {
            self.undo_image(saved, &entity_ids, &lengths);
            return Err(reason);
        }
        for (local, entity) in image.entities.iter().enumerate() {
            let state = &mut self.entities[entity_ids[local] as usize];
            state.clock = u64::from(entity.base_clock) + u64::from(entity.records);
            state.last_hash = entity.hash;
        }
        // No sequence jumps: record `p` has sequence first + p.
        let sequence_at = |position: u32| image.segment.first_sequence + u64::from(position);
        for (position, correlation) in ImageView::id_list(image.correlations) {
            let sequence = sequence_at(position);
            self.correlated
                .entry(correlation)
                .or_default()
                .push(sequence);
            self.explicit_correlation.insert(sequence);
        }
        for (position, cause) in ImageView::id_list(image.causations) {
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

    /// Appends the image's records (one pass over its columns, every record
    /// checked as it is decoded).
    fn load_records(
        &mut self,
        image: &ImageView<'_>,
        entity_ids: &[u32],
        scope_ids: &[u32],
    ) -> Result<(), String> {
        let segment = image.segment.id;
        let mut cursor = image.cursor();
        let mut last_id = self.ids.last().map(|id| id_value(*id));
        for _ in 0..image.events {
            let record = cursor.next_record()?;
            let in_order = last_id.is_none_or(|last| cursor.id > last);
            let entity = entity_ids[record.entity as usize];
            self.entities[entity as usize]
                .sequences
                .push(record.sequence);
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
            if in_order {
                self.ids.push(record.event_id);
                last_id = Some(cursor.id);
            } else if let Some(last) = self.ids.last().copied() {
                // As `push`: keep the column sorted with a stand-in.
                self.ids_out_of_order
                    .insert(record.event_id, record.sequence);
                self.ids_replaced.insert(record.sequence, record.event_id);
                self.ids.push(last);
            }
        }
        cursor.finish()
    }

    /// Undoes a partly loaded image: `saved` is the index before it,
    /// `lengths` the image entities' sequence list lengths then.
    fn undo_image(&mut self, saved: Savepoint, entity_ids: &[u32], lengths: &[usize]) {
        let first = saved.next_sequence;
        self.entries.truncate(saved.columns);
        self.ids.truncate(saved.columns);
        self.ids_out_of_order.retain(|_, s| *s < first);
        self.ids_replaced.retain(|s, _| *s < first);
        for (&id, &length) in entity_ids.iter().zip(lengths) {
            self.entities[id as usize].sequences.truncate(length);
        }
        for entity in self.entities.drain(saved.entities..) {
            self.entity_by_name.remove(&entity.name);
            self.entity_lookup.remove(&entity.name);
        }
        for scope in self.scopes.drain(saved.scopes..) {
            self.scope_by_name.remove(&scope);
        }
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
        check("removed prefix", &self.base, &other.base)?;
        check("stubs below it", &self.stubs_below, &other.stubs_below)?;
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

    /// The prefault thread's work: every whole page of unaligned spans
    /// (as column allocations are) ends up resident, and the kernel refuses
    /// none of the calls.
    #[cfg(target_os = "linux")]
    #[test]
    fn populate_makes_unaligned_column_spans_resident() {
        const PAGE: usize = 4096;
        let mut entries: Vec<u64> = Vec::with_capacity(3 << 20);
        let mut ids: Vec<[u8; 16]> = Vec::with_capacity(1 << 20);
        let spans = [
            span(entries.spare_capacity_mut()),
            span(ids.spare_capacity_mut()),
        ];
        assert_eq!(populate(&spans), 0, "the kernel refused a populate call");
        for (start, len) in spans {
            let first = start.div_ceil(PAGE) * PAGE;
            let end = (start + len) / PAGE * PAGE;
            let mut resident = vec![0u8; (end - first) / PAGE];
            // SAFETY: the range lies inside the vector's allocation, and
            // mincore only writes one byte per page into `resident`.
            let result = unsafe {
                libc::mincore(
                    first as *mut libc::c_void,
                    end - first,
                    resident.as_mut_ptr(),
                )
            };
            assert_eq!(result, 0);
            let missing = resident.iter().filter(|r| **r & 1 == 0).count();
            assert_eq!(
                missing,
                0,
                "{missing} of {} pages not resident",
                resident.len()
            );
        }
        entries.push(1);
        ids.push([0; 16]);
    }

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
            index.push(NewEntry { segment: 3, ..r }).unwrap();
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

    /// Records that exercise every exception and the wider columns: 300
    /// entities, 300 kinds, three scopes, sequence and clock gaps, flags,
    /// large offset steps, timestamps that jump and go back, ids that jump
    /// and go back.
    fn awkward() -> (SegmentIdentity, Vec<NewEntry<'static>>) {
        let names: &'static [String] = Vec::leak((0..300).map(|i| format!("entity-{i}")).collect());
        let segment = SegmentIdentity {
            id: 9,
            flags: crate::store::log::frame::SEGMENT_FLAG_COMPACTED,
            created_us: -5,
            first_sequence: 1_000,
        };
        let mut clocks = vec![0u64; names.len()];
        let mut out = Vec::new();
        let (mut sequence, mut offset, mut timestamp) = (1_000u64, 48u32, 1_700_000_000_000_000i64);
        let mut id = 0x0190_0000_0000_7000_8000_0000_0000_0000u128;
        for i in 0..700u64 {
            let entity = (i * 7 % 300) as usize;
            clocks[entity] += if i % 97 == 50 { 5 } else { 1 };
            sequence += if i % 131 == 70 { 3 } else { 1 };
            offset += if i % 53 == 10 { 70_000 } else { 265 };
            timestamp += match i % 41 {
                7 => 10_000_000,
                19 => -3,
                _ => (i % 5) as i64,
            };
            id = match i % 37 {
                3 => id + (1u128 << 40),
                11 => id - 17,
                _ => id + 1 + u128::from(i % 1000),
            };
            out.push(NewEntry {
                sequence,
                segment: 9,
                offset,
                timestamp_us: timestamp,
                event_id: EventId::from_bytes(id.to_be_bytes()),
                entity: &names[entity],
                scope: ["x", "y", "z"][(i % 3) as usize],
                clock: clocks[entity],
                kind: EventKind::custom(1 + (i % 2) as u8, (i % 150) as u16),
                flags: if i % 29 == 0 { 0x0102 } else { 0 },
                correlation_id: (i % 13 == 0).then(|| EventId::from_bytes([4; 16])),
                causation_id: (i % 17 == 0).then(|| EventId::from_bytes([5; 16])),
                idempotency: (i % 19 == 0).then_some((&b"k"[..], 2)),
                hash: (i % 2 == 0).then_some(EventHash([i as u8; 32])),
                stub: false,
            });
        }
        (segment, out)
    }

    fn built(segment: SegmentIdentity, records: &[NewEntry<'_>]) -> ImageBuilder {
        let mut builder = ImageBuilder::new(segment, 1 << 20);
        for r in records {
            builder.push(r).unwrap();
        }
        builder
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

    /// Found by the `checkpoint_loading` fuzzer: an image with intact
    /// checksums naming a scope the write path would refuse was loaded, and
    /// the first read built an invalid coordinate from it.
    #[test]
    fn an_image_naming_an_invalid_entity_or_scope_is_refused() {
        for (entity, scope) in [
            ("e", ""),
            ("e", "bad\u{7}scope"),
            ("", "s"),
            ("bad\nname", "s"),
        ] {
            let mut builder = ImageBuilder::new(identity(), 98);
            let mut entry = record((0, "e", 1, 1));
            entry.entity = entity;
            entry.scope = scope;
            builder.push(&entry).unwrap();
            let bytes = builder.encode(KIND_FOOTER);
            assert!(
                decode_image(&bytes).is_err(),
                "entity {entity:?}, scope {scope:?} accepted"
            );
        }
    }

    #[test]
    fn every_record_survives_the_dense_encoding() {
        let (segment, records) = awkward();
        let builder = built(segment, &records);
        let bytes = builder.encode(KIND_CHECKPOINT);
        let view = decode_image(&bytes).unwrap();
        let restored = ImageBuilder::from_view(&view).unwrap();
        assert_eq!(restored.records, builder.records);
        assert_eq!(restored.entities, builder.entities);
        assert_eq!(restored.scopes, builder.scopes);
        assert_eq!(restored.correlations, builder.correlations);
        assert_eq!(restored.causations, builder.causations);
        assert_eq!(restored.keys, builder.keys);
        assert_eq!(restored.encode(KIND_CHECKPOINT), bytes);
        let last = records.last().unwrap();
        assert_eq!(
            view.last_frame(),
            Some((last.sequence, last.offset, last.event_id))
        );
        // Gaps are kept but never loaded: such segments are scanned.
        assert!(Index::default().apply_image(&view).is_err());
    }

    #[test]
    fn a_loaded_builder_encodes_and_continues_like_a_decoded_one() {
        let (segment, records) = awkward();
        let bytes = built(segment, &records[..500]).encode(KIND_CHECKPOINT);
        let view = decode_image(&bytes).unwrap();
        let mut lazy = ImageBuilder::from_loaded(&view, &bytes);
        assert_eq!(lazy.events(), 500);
        assert_eq!(lazy.encode(KIND_CHECKPOINT), bytes);
        let mut decoded = ImageBuilder::from_view(&view).unwrap();
        lazy.watermark += 1;
        decoded.watermark += 1;
        assert_eq!(lazy.encode(KIND_FOOTER), decoded.encode(KIND_FOOTER));
        for r in &records[500..] {
            lazy.push(r).unwrap();
            decoded.push(r).unwrap();
        }
        assert_eq!(lazy.events(), 700);
        assert_eq!(lazy.encode(KIND_FOOTER), decoded.encode(KIND_FOOTER));
        let mut whole = built(segment, &records);
        whole.watermark += 1;
        assert_eq!(lazy.encode(KIND_FOOTER), whole.encode(KIND_FOOTER));
    }

    #[test]
    fn a_dense_image_without_gaps_applies_like_a_scan() {
        let (segment, _) = awkward();
        let records = dense();
        let segment = SegmentIdentity {
            flags: 0,
            first_sequence: 0,
            ..segment
        };
        let bytes = built(segment, &records).encode(KIND_FOOTER);
        let mut restored = Index::default();
        restored
            .apply_image(&decode_image(&bytes).unwrap())
            .unwrap();
        let mut scanned = Index::default();
        for r in &records {
            scanned.push(*r).unwrap();
        }
        restored.same_as(&scanned).unwrap();
    }

    #[test]
    fn every_damaged_byte_is_rejected_and_never_panics() {
        let (segment, records) = awkward();
        for bytes in [
            image_bytes(),
            built(segment, &records[..60]).encode(KIND_FOOTER),
        ] {
            for at in 0..bytes.len() {
                let mut damaged = bytes.clone();
                damaged[at] ^= 0x41;
                assert!(decode_image(&damaged).is_err(), "byte {at}");
            }
            for cut in 0..bytes.len() {
                assert!(decode_image(&bytes[..cut]).is_err(), "cut {cut}");
            }
        }
    }

    /// With the checksums recomputed, damage reaches the structural checks:
    /// they may accept a still-consistent image but must never panic, and an
    /// accepted one must load or be refused cleanly.
    #[test]
    fn structural_damage_behind_valid_checksums_never_panics() {
        let (segment, records) = awkward();
        let bytes = built(segment, &records[..40]).encode(KIND_FOOTER);
        for at in IMAGE_HEADER_BYTES..bytes.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut damaged = bytes.clone();
                damaged[at] ^= flip;
                let crc = crc32fast::hash(&damaged[IMAGE_HEADER_BYTES..]);
                damaged[88..92].copy_from_slice(&crc.to_le_bytes());
                let crc = crc32fast::hash(&damaged[0..92]);
                damaged[92..96].copy_from_slice(&crc.to_le_bytes());
                if let Ok(view) = decode_image(&damaged) {
                    let _ = ImageBuilder::from_view(&view).unwrap();
                }
                if let Ok(view) = parse_image(&damaged) {
                    let _ = view.last_frame();
                    let mut index = Index::default();
                    if index.apply_image(&view).is_err() {
                        index.same_as(&Index::default()).unwrap();
                    }
                }
            }
        }
    }

    /// Records numbered without gaps, as an uncompacted segment has them.
    fn dense() -> Vec<NewEntry<'static>> {
        let (_, records) = awkward();
        let mut clocks: HashMap<&str, u64> = HashMap::new();
        records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let clock = clocks.entry(r.entity).or_default();
                *clock += 1;
                NewEntry {
                    sequence: i as u64,
                    clock: *clock,
                    ..*r
                }
            })
            .collect()
    }

    /// An image whose records fail while loading (damage behind recomputed
    /// checksums) leaves an index that already holds events untouched,
    /// including entities and scopes the image introduced.
    #[test]
    fn an_image_failing_halfway_through_loading_is_undone() {
        let records = dense();
        let base = || {
            let mut index = Index::default();
            for r in &records[..200] {
                index.push(*r).unwrap();
            }
            index
        };
        let segment = SegmentIdentity {
            id: 1,
            flags: 0,
            created_us: 5,
            first_sequence: 200,
        };
        let bytes = built(segment, &records[200..260]).encode(KIND_FOOTER);
        let mut whole = base();
        whole.apply_image(&parse_image(&bytes).unwrap()).unwrap();
        let mut failures = 0;
        for at in IMAGE_HEADER_BYTES..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            let crc = crc32fast::hash(&damaged[IMAGE_HEADER_BYTES..]);
            damaged[88..92].copy_from_slice(&crc.to_le_bytes());
            let crc = crc32fast::hash(&damaged[0..92]);
            damaged[92..96].copy_from_slice(&crc.to_le_bytes());
            let Ok(view) = parse_image(&damaged) else {
                continue;
            };
            let mut index = base();
            if index.apply_image(&view).is_err() {
                failures += 1;
                index.same_as(&base()).unwrap();
            }
        }
        assert!(failures > 0, "some damage must fail while loading");
    }

    #[test]
    fn the_last_frame_is_found_without_offset_or_id_escapes() {
        let mut builder = ImageBuilder::new(identity(), 1 << 20);
        for i in 0..10u64 {
            builder
                .push(&NewEntry {
                    offset: 48 + i as u32 * 265,
                    event_id: EventId::from_bytes((5 + u128::from(i) * 3).to_be_bytes()),
                    ..record((i, "a", i + 1, 0))
                })
                .unwrap();
        }
        let bytes = builder.encode(KIND_FOOTER);
        let view = parse_image(&bytes).unwrap();
        assert!(view.offset_escapes.is_empty() && view.id_escapes.is_empty());
        assert_eq!(
            view.last_frame(),
            Some((9, 48 + 9 * 265, EventId::from_bytes(32u128.to_be_bytes())))
        );
    }

    #[test]
    fn a_version_1_image_is_refused() {
        let mut bytes = image_bytes();
        bytes[8..10].copy_from_slice(&1u16.to_le_bytes());
        let crc = crc32fast::hash(&bytes[0..92]);
        bytes[92..96].copy_from_slice(&crc.to_le_bytes());
        let error = decode_image(&bytes).unwrap_err();
        assert!(error.contains("version 1"), "{error}");
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
