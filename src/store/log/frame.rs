//! The on-disk record format: segment headers and event frames.
//!
//! Every integer is little-endian. A frame is
//!
//! ```text
//! u32 body_length | u32 crc32(body_length bytes ‖ body) | body
//! ```
//!
//! and a body is a fixed 60-byte part followed by variable parts whose
//! presence and lengths the fixed part announces (see `docs/reference/ARCHITECTURE.md`).
//! Decoding checks the checksum first and then every length, so a damaged
//! frame is always an error and never data.

use crate::event::{EventHash, EventId, EventKind};

/// Magic bytes at the start of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"BATPAKSG";
/// Version of the segment and frame format. Version 2 changed the
/// hash-chain link (see [`chain_hash`]); frames are laid out as in 1.
pub(crate) const FORMAT_VERSION: u16 = 2;
/// Size of the segment header.
pub(crate) const SEGMENT_HEADER_BYTES: usize = 48;
/// Segment header flag: sequences in this segment may have gaps (compacted).
pub(crate) const SEGMENT_FLAG_COMPACTED: u32 = 1;

/// Length word plus checksum word.
pub(crate) const FRAME_PREFIX_BYTES: usize = 8;
/// The fixed part of a frame body.
pub(crate) const BODY_FIXED_BYTES: usize = 60;
/// Largest body a frame may declare: the biggest payload plus every optional part.
pub(crate) const BODY_MAX_BYTES: usize = BODY_FIXED_BYTES
    + 16
    + 16
    + 255
    + 2 * crate::coordinate::COORDINATE_PART_MAX_BYTES
    + crate::store::PAYLOAD_MAX_BYTES_LIMIT as usize
    + 32;

/// Body flag: a correlation id other than the event's own id follows.
pub(crate) const HAS_CORRELATION: u8 = 0x01;
/// Body flag: a causation id follows.
pub(crate) const HAS_CAUSATION: u8 = 0x02;
/// Body flag: the body ends with a 32-byte hash-chain link.
pub(crate) const HAS_HASH: u8 = 0x04;
/// Body flag: the payload was redacted; the payload bytes are its blake3
/// digest (empty for events written without hash chains).
pub(crate) const REDACTED: u8 = 0x08;
/// Body flag: a stub compaction left for a removed event. Not an event any
/// more: it keeps the sequence, clock, chain link and idempotency key, with
/// the payload redacted. Only valid in compacted segments.
pub(crate) const STUB: u8 = 0x10;
/// Offset of the record-flags byte in an encoded frame (prefix included).
const RECORD_FLAGS_AT: usize = FRAME_PREFIX_BYTES + 58;
const KNOWN_FLAGS: u8 = HAS_CORRELATION | HAS_CAUSATION | HAS_HASH | REDACTED | STUB;

/// The header at the start of every segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) flags: u32,
    pub(crate) segment_id: u64,
    pub(crate) first_sequence: u64,
    pub(crate) created_us: i64,
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut out = [0u8; SEGMENT_HEADER_BYTES];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[10..12].copy_from_slice(&(SEGMENT_HEADER_BYTES as u16).to_le_bytes());
        out[12..16].copy_from_slice(&self.flags.to_le_bytes());
        out[16..24].copy_from_slice(&self.segment_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.first_sequence.to_le_bytes());
        out[32..40].copy_from_slice(&self.created_us.to_le_bytes());
        let crc = crc32fast::hash(&out[0..40]);
        out[40..44].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<SegmentHeader, String> {
        if bytes.len() < SEGMENT_HEADER_BYTES {
            return Err(format!(
                "segment header is {} bytes, expected {SEGMENT_HEADER_BYTES}",
                bytes.len()
            ));
        }
        if bytes[0..8] != SEGMENT_MAGIC {
            return Err("not a batpak segment (bad magic)".into());
        }
        let version = u16_at(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(format!("unsupported segment format version {version}"));
        }
        if usize::from(u16_at(bytes, 10)) != SEGMENT_HEADER_BYTES {
            return Err("unexpected segment header length".into());
        }
        let stored = u32_at(bytes, 40);
        let computed = crc32fast::hash(&bytes[0..40]);
        if stored != computed {
            return Err(format!(
                "segment header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ));
        }
        if bytes[44..48] != [0; 4] {
            return Err("segment header reserved bytes are not zero".into());
        }
        Ok(SegmentHeader {
            flags: u32_at(bytes, 12),
            segment_id: u64_at(bytes, 16),
            first_sequence: u64_at(bytes, 24),
            created_us: i64::from_le_bytes(bytes[32..40].try_into().unwrap_or([0; 8])),
        })
    }
}

/// Everything needed to encode one event frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameFields<'a> {
    pub(crate) sequence: u64,
    pub(crate) clock: u64,
    pub(crate) timestamp_us: i64,
    pub(crate) event_id: EventId,
    pub(crate) batch_remaining: u32,
    pub(crate) kind: EventKind,
    pub(crate) flags: u16,
    pub(crate) schema_version: u16,
    /// `None` when the correlation id is the event's own id.
    pub(crate) correlation_id: Option<EventId>,
    pub(crate) causation_id: Option<EventId>,
    pub(crate) idempotency_key: Option<&'a [u8]>,
    pub(crate) entity: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) payload: &'a [u8],
}

impl FrameFields<'_> {
    /// Encoded frame size (prefix included) with or without a hash.
    pub(crate) fn encoded_len(&self, with_hash: bool) -> usize {
        FRAME_PREFIX_BYTES
            + BODY_FIXED_BYTES
            + if self.correlation_id.is_some() { 16 } else { 0 }
            + if self.causation_id.is_some() { 16 } else { 0 }
            + self.idempotency_key.map_or(0, <[u8]>::len)
            + self.entity.len()
            + self.scope.len()
            + self.payload.len()
            + if with_hash { 32 } else { 0 }
    }
}

/// Appends one encoded frame to `out`, with the given hash-chain link.
/// Callers validate lengths first; the `debug_assert`s restate the contract.
pub(crate) fn encode_frame(fields: &FrameFields<'_>, hash: Option<&EventHash>, out: &mut Vec<u8>) {
    let total = fields.encoded_len(hash.is_some());
    let body_len = total - FRAME_PREFIX_BYTES;
    debug_assert!(body_len <= BODY_MAX_BYTES);
    debug_assert!(fields.entity.len() <= usize::from(u16::MAX));
    debug_assert!(fields.idempotency_key.is_none_or(|k| k.len() <= 255));
    let start = out.len();
    out.reserve(total);
    let mut record_flags = 0u8;
    if fields.correlation_id.is_some() {
        record_flags |= HAS_CORRELATION;
    }
    if fields.causation_id.is_some() {
        record_flags |= HAS_CAUSATION;
    }
    if hash.is_some() {
        record_flags |= HAS_HASH;
    }
    // The prefix and the fixed part of the body at constant offsets, in one
    // piece (the checksum is filled in last).
    let mut head = [0u8; FRAME_PREFIX_BYTES + BODY_FIXED_BYTES];
    head[0..4].copy_from_slice(&(body_len as u32).to_le_bytes());
    head[8..16].copy_from_slice(&fields.sequence.to_le_bytes());
    head[16..24].copy_from_slice(&fields.clock.to_le_bytes());
    head[24..32].copy_from_slice(&fields.timestamp_us.to_le_bytes());
    head[32..48].copy_from_slice(&fields.event_id.to_bytes());
    head[48..52].copy_from_slice(&(fields.payload.len() as u32).to_le_bytes());
    head[52..56].copy_from_slice(&fields.batch_remaining.to_le_bytes());
    head[56..58].copy_from_slice(&fields.kind.bits().to_le_bytes());
    head[58..60].copy_from_slice(&fields.flags.to_le_bytes());
    head[60..62].copy_from_slice(&(fields.entity.len() as u16).to_le_bytes());
    head[62..64].copy_from_slice(&(fields.scope.len() as u16).to_le_bytes());
    head[64..66].copy_from_slice(&fields.schema_version.to_le_bytes());
    head[66] = record_flags;
    head[67] = fields.idempotency_key.map_or(0, |k| k.len() as u8);
    out.extend_from_slice(&head);
    if let Some(id) = fields.correlation_id {
        out.extend_from_slice(&id.to_bytes());
    }
    if let Some(id) = fields.causation_id {
        out.extend_from_slice(&id.to_bytes());
    }
    if let Some(key) = fields.idempotency_key {
        out.extend_from_slice(key);
    }
    out.extend_from_slice(fields.entity.as_bytes());
    out.extend_from_slice(fields.scope.as_bytes());
    out.extend_from_slice(fields.payload);
    if let Some(hash) = hash {
        out.extend_from_slice(hash.as_bytes());
    }
    debug_assert_eq!(out.len() - start, total);
    let crc = frame_crc(&out[start..start + 4], &out[start + FRAME_PREFIX_BYTES..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Adds record flags (`REDACTED`, `STUB`) to the one encoded frame in
/// `frame` and recomputes its checksum. Compaction encodes the frame with the
/// payload already replaced by its digest, then marks it.
pub(crate) fn mark_frame(frame: &mut [u8], flags: u8) {
    debug_assert!(frame.len() >= FRAME_PREFIX_BYTES + BODY_FIXED_BYTES);
    frame[RECORD_FLAGS_AT] |= flags;
    let crc = frame_crc(&frame[0..4], &frame[FRAME_PREFIX_BYTES..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

fn frame_crc(length_word: &[u8], body: &[u8]) -> u32 {
    let mut hasher = fresh_crc();
    hasher.update(length_word);
    hasher.update(body);
    hasher.finalize()
}

/// A CRC32 hasher in its initial state. `Hasher::new` looks up the CPU's
/// features on every call (about 45 instructions, paid by every frame
/// encoded or decoded); cloning one made once does not.
#[inline]
fn fresh_crc() -> crc32fast::Hasher {
    static FRESH: std::sync::OnceLock<crc32fast::Hasher> = std::sync::OnceLock::new();
    FRESH.get_or_init(crc32fast::Hasher::new).clone()
}

/// A decoded frame borrowing from the bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameView<'a> {
    pub(crate) sequence: u64,
    pub(crate) clock: u64,
    pub(crate) timestamp_us: i64,
    pub(crate) event_id: EventId,
    pub(crate) batch_remaining: u32,
    pub(crate) kind: EventKind,
    pub(crate) flags: u16,
    pub(crate) schema_version: u16,
    pub(crate) record_flags: u8,
    pub(crate) correlation_id: Option<EventId>,
    pub(crate) causation_id: Option<EventId>,
    pub(crate) idempotency_key: Option<&'a [u8]>,
    pub(crate) entity: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) payload: &'a [u8],
    pub(crate) hash: Option<EventHash>,
    /// Bytes the whole frame occupies, prefix included.
    pub(crate) frame_len: usize,
}

impl FrameView<'_> {
    /// The correlation id, defaulting to the event's own id.
    pub(crate) fn correlation(&self) -> EventId {
        self.correlation_id.unwrap_or(self.event_id)
    }

    /// True for a stub of a removed event.
    pub(crate) fn is_stub(&self) -> bool {
        self.record_flags & STUB != 0
    }

    /// True if the payload was redacted (stubs are redacted too).
    pub(crate) fn is_redacted(&self) -> bool {
        self.record_flags & REDACTED != 0
    }

    /// Recomputes this frame's hash-chain link from `previous`: what the
    /// stored link must equal. A redacted payload is its own digest.
    #[cfg(feature = "blake3")]
    pub(crate) fn recompute_link(&self, previous: Option<&EventHash>) -> EventHash {
        let digest = if self.record_flags & REDACTED != 0 {
            // A redacted payload that is not a digest cannot match any link.
            let mut digest = [0u8; 32];
            if self.payload.len() == 32 {
                digest.copy_from_slice(self.payload);
            }
            digest
        } else {
            payload_digest(self.payload)
        };
        chain_hash(previous, &self.fields(), &digest)
    }

    #[cfg_attr(not(any(test, feature = "blake3")), allow(dead_code))]
    pub(crate) fn fields(&self) -> FrameFields<'_> {
        FrameFields {
            sequence: self.sequence,
            clock: self.clock,
            timestamp_us: self.timestamp_us,
            event_id: self.event_id,
            batch_remaining: self.batch_remaining,
            kind: self.kind,
            flags: self.flags,
            schema_version: self.schema_version,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            idempotency_key: self.idempotency_key,
            entity: self.entity,
            scope: self.scope,
            payload: self.payload,
        }
    }
}

/// Why bytes did not decode as a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Fewer bytes than the frame needs: a torn write, or the end of the data.
    Truncated { needed: usize, available: usize },
    /// A zero length word: unwritten (zero-filled) space.
    Zero,
    /// The length word is outside the possible range.
    BadLength(u32),
    /// The checksum does not match.
    BadChecksum { stored: u32, computed: u32 },
    /// The checksum matched but the layout is inconsistent.
    BadLayout(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated { needed, available } => {
                write!(
                    f,
                    "truncated frame: needs {needed} bytes, {available} present"
                )
            }
            FrameError::Zero => write!(f, "zero-filled space where a frame was expected"),
            FrameError::BadLength(len) => write!(f, "impossible frame length {len}"),
            FrameError::BadChecksum { stored, computed } => write!(
                f,
                "frame checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            FrameError::BadLayout(reason) => write!(f, "malformed frame: {reason}"),
        }
    }
}

/// Reads the body length a frame at the start of `bytes` declares.
pub(crate) fn declared_frame_len(bytes: &[u8]) -> Result<usize, FrameError> {
    if bytes.len() < FRAME_PREFIX_BYTES {
        return Err(FrameError::Truncated {
            needed: FRAME_PREFIX_BYTES,
            available: bytes.len(),
        });
    }
    let body_len = u32_at(bytes, 0);
    if body_len == 0 {
        return Err(FrameError::Zero);
    }
    let body = body_len as usize;
    if !(BODY_FIXED_BYTES..=BODY_MAX_BYTES).contains(&body) {
        return Err(FrameError::BadLength(body_len));
    }
    Ok(FRAME_PREFIX_BYTES + body)
}

/// Decodes and checks the frame at the start of `bytes`.
pub(crate) fn decode_frame(bytes: &[u8]) -> Result<FrameView<'_>, FrameError> {
    decode_frame_checked(bytes, true)
}

/// Decodes and checks a frame the index already vouches for: the checksum and
/// layout are checked as always, but the coordinate's character rules are
/// not re-run, because the caller compares it with the index's validated
/// coordinate instead.
pub(crate) fn decode_indexed_frame(bytes: &[u8]) -> Result<FrameView<'_>, FrameError> {
    decode_frame_checked(bytes, false)
}

fn decode_frame_checked(
    bytes: &[u8],
    validate_coordinate: bool,
) -> Result<FrameView<'_>, FrameError> {
    let frame_len = declared_frame_len(bytes)?;
    if bytes.len() < frame_len {
        return Err(FrameError::Truncated {
            needed: frame_len,
            available: bytes.len(),
        });
    }
    let stored = u32_at(bytes, 4);
    let body = &bytes[FRAME_PREFIX_BYTES..frame_len];
    let computed = frame_crc(&bytes[0..4], body);
    if stored != computed {
        return Err(FrameError::BadChecksum { stored, computed });
    }
    decode_body(body, frame_len, validate_coordinate)
}

fn decode_body(
    body: &[u8],
    frame_len: usize,
    validate_coordinate: bool,
) -> Result<FrameView<'_>, FrameError> {
    let layout = |reason: &str| FrameError::BadLayout(reason.to_string());
    let payload_len = u32_at(body, 40) as usize;
    let entity_len = usize::from(u16_at(body, 52));
    let scope_len = usize::from(u16_at(body, 54));
    let record_flags = body[58];
    let key_len = usize::from(body[59]);
    if record_flags & !KNOWN_FLAGS != 0 {
        return Err(layout("unknown record flags"));
    }
    if record_flags & STUB != 0 && record_flags & REDACTED == 0 {
        return Err(layout("a stub must be redacted"));
    }
    let has_hash = record_flags & HAS_HASH != 0;
    let expected = BODY_FIXED_BYTES
        + if record_flags & HAS_CORRELATION != 0 {
            16
        } else {
            0
        }
        + if record_flags & HAS_CAUSATION != 0 {
            16
        } else {
            0
        }
        + key_len
        + entity_len
        + scope_len
        + payload_len
        + if has_hash { 32 } else { 0 };
    if expected != body.len() {
        return Err(layout(
            "declared part lengths do not add up to the frame length",
        ));
    }
    let mut at = BODY_FIXED_BYTES;
    let mut take = |len: usize| {
        let part = &body[at..at + len];
        at += len;
        part
    };
    let correlation_id = (record_flags & HAS_CORRELATION != 0).then(|| id_from(take(16)));
    let causation_id = (record_flags & HAS_CAUSATION != 0).then(|| id_from(take(16)));
    let idempotency_key = (key_len > 0).then(|| take(key_len));
    let entity =
        std::str::from_utf8(take(entity_len)).map_err(|_| layout("entity is not UTF-8"))?;
    let scope = std::str::from_utf8(take(scope_len)).map_err(|_| layout("scope is not UTF-8"))?;
    let payload = take(payload_len);
    let hash = has_hash.then(|| {
        let mut out = [0u8; 32];
        out.copy_from_slice(take(32));
        EventHash(out)
    });
    if validate_coordinate
        && (crate::coordinate::validate_part("entity", entity).is_err()
            || crate::coordinate::validate_part("scope", scope).is_err())
    {
        return Err(layout("coordinate is not valid"));
    }
    let clock = u64_at(body, 8);
    if clock == 0 {
        return Err(layout("clock is zero"));
    }
    Ok(FrameView {
        sequence: u64_at(body, 0),
        clock,
        timestamp_us: i64::from_le_bytes(body[16..24].try_into().unwrap_or([0; 8])),
        event_id: id_from(&body[24..40]),
        batch_remaining: u32_at(body, 44),
        kind: EventKind::from_bits(u16_at(body, 48)),
        flags: u16_at(body, 50),
        schema_version: u16_at(body, 56),
        record_flags,
        correlation_id,
        causation_id,
        idempotency_key,
        entity,
        scope,
        payload,
        hash,
        frame_len,
    })
}

fn id_from(bytes: &[u8]) -> EventId {
    let mut out = [0u8; 16];
    out.copy_from_slice(bytes);
    EventId::from_bytes(out)
}

/// The format version of a segment whose header is intact (magic and
/// checksum check out) but of another version: such a segment is refused,
/// never repaired. A damaged header is not this: it is damage.
pub(crate) fn other_format_version(bytes: &[u8]) -> Option<u16> {
    if bytes.len() < SEGMENT_HEADER_BYTES || bytes[0..8] != SEGMENT_MAGIC {
        return None;
    }
    if u32_at(bytes, 40) != crc32fast::hash(&bytes[0..40]) {
        return None;
    }
    let version = u16_at(bytes, 8);
    (version != FORMAT_VERSION).then_some(version)
}

pub(crate) fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut out = [0u8; 8];
    out.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(out)
}

/// The hash-chain link of an event: blake3 keyed with the previous link of
/// its entity (for its first event, a key derived from the domain tag) over
/// the header fields, the coordinate and the blake3 digest of the payload.
/// Hashing the payload's digest rather than the payload lets a redacted
/// event keep a verifiable chain. Keying with the previous link rather than
/// hashing it, and writing absent causal ids as one flag byte, keeps a
/// typical input within two blake3 blocks (format version 2; version 1
/// hashed a tag and the previous link in front and needed three).
#[cfg(feature = "blake3")]
pub(crate) fn chain_hash(
    previous: Option<&EventHash>,
    fields: &FrameFields<'_>,
    payload_digest: &[u8; 32],
) -> EventHash {
    // One contiguous input and one call: blake3's per-call overhead dominates
    // for inputs this small, so this is several times faster than feeding
    // the parts to a `Hasher` one by one. The fixed part sits at constant
    // offsets, so it is assembled with plain stores.
    const FIXED: usize = 8 + 8 + 8 + 16 + 2 + 2 + 2 + 1;
    let entity = fields.entity.as_bytes();
    let scope = fields.scope.as_bytes();
    let ids = 16
        * (usize::from(fields.correlation_id.is_some())
            + usize::from(fields.causation_id.is_some()));
    let len = FIXED + ids + 2 + entity.len() + 2 + scope.len() + 32;
    // Typical inputs (short names, no causal ids) fit the small buffer,
    // which is cleared with a few stores rather than a call to `memset`.
    const LARGE: usize = FIXED + 32 + 2 + 128 + 2 + 128 + 32;
    let mut small: [u8; 128];
    let mut large: [u8; LARGE];
    let mut heap = Vec::new();
    let buffer: &mut [u8] = if len <= 128 {
        small = [0u8; 128];
        &mut small[..len]
    } else if len <= LARGE {
        large = [0u8; LARGE];
        &mut large[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    let fixed: &mut [u8; FIXED] = (&mut buffer[..FIXED]).try_into().expect("fixed part");
    fixed[0..8].copy_from_slice(&fields.sequence.to_le_bytes());
    fixed[8..16].copy_from_slice(&fields.clock.to_le_bytes());
    fixed[16..24].copy_from_slice(&fields.timestamp_us.to_le_bytes());
    fixed[24..40].copy_from_slice(&fields.event_id.to_bytes());
    fixed[40..42].copy_from_slice(&fields.kind.bits().to_le_bytes());
    fixed[42..44].copy_from_slice(&fields.flags.to_le_bytes());
    fixed[44..46].copy_from_slice(&fields.schema_version.to_le_bytes());
    fixed[46] =
        u8::from(fields.correlation_id.is_some()) | u8::from(fields.causation_id.is_some()) << 1;
    let mut rest = &mut buffer[FIXED..];
    for id in [fields.correlation_id, fields.causation_id]
        .into_iter()
        .flatten()
    {
        rest[..16].copy_from_slice(&id.to_bytes());
        rest = &mut rest[16..];
    }
    for part in [entity, scope] {
        rest[..2].copy_from_slice(&(part.len() as u16).to_le_bytes());
        rest[2..2 + part.len()].copy_from_slice(part);
        rest = &mut rest[2 + part.len()..];
    }
    rest.copy_from_slice(payload_digest);
    let key: &[u8; 32] = match previous {
        Some(link) => link.as_bytes(),
        None => genesis_key(),
    };
    EventHash(*blake3::keyed_hash(key, buffer).as_bytes())
}

/// The key of an entity's first link.
#[cfg(feature = "blake3")]
fn genesis_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(|| blake3::derive_key(GENESIS_CONTEXT, b""))
}

/// The domain tag the first link's key is derived from.
#[cfg(feature = "blake3")]
const GENESIS_CONTEXT: &str = "batpak 2026 event chain v2 genesis";

/// blake3 digest of a payload.
#[cfg(feature = "blake3")]
pub(crate) fn payload_digest(payload: &[u8]) -> [u8; 32] {
    *blake3::hash(payload).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(payload: &'a [u8], key: Option<&'a [u8]>) -> FrameFields<'a> {
        FrameFields {
            sequence: 42,
            clock: 7,
            timestamp_us: 1_700_000_000_000_000,
            event_id: EventId::from_bytes([9; 16]),
            batch_remaining: 3,
            kind: EventKind::custom(0xF, 0x123),
            flags: 0xBEEF,
            schema_version: 2,
            correlation_id: Some(EventId::from_bytes([1; 16])),
            causation_id: Some(EventId::from_bytes([2; 16])),
            idempotency_key: key,
            entity: "player:alice",
            scope: "room:dungeon",
            payload,
        }
    }

    fn encode(fields: &FrameFields<'_>, hash: Option<EventHash>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(fields, hash.as_ref(), &mut out);
        out
    }

    #[test]
    fn round_trips_every_field() {
        let payload = br#"{"x":10}"#;
        let fields = sample(payload, Some(b"retry-key"));
        let hash = EventHash([5; 32]);
        let bytes = encode(&fields, Some(hash));
        assert_eq!(bytes.len(), fields.encoded_len(true));
        let view = decode_frame(&bytes).unwrap();
        assert_eq!(view.sequence, 42);
        assert_eq!(view.clock, 7);
        assert_eq!(view.timestamp_us, 1_700_000_000_000_000);
        assert_eq!(view.event_id, EventId::from_bytes([9; 16]));
        assert_eq!(view.batch_remaining, 3);
        assert_eq!(view.kind, EventKind::custom(0xF, 0x123));
        assert_eq!(view.flags, 0xBEEF);
        assert_eq!(view.schema_version, 2);
        assert_eq!(view.correlation_id, Some(EventId::from_bytes([1; 16])));
        assert_eq!(view.causation_id, Some(EventId::from_bytes([2; 16])));
        assert_eq!(view.idempotency_key, Some(&b"retry-key"[..]));
        assert_eq!(view.entity, "player:alice");
        assert_eq!(view.scope, "room:dungeon");
        assert_eq!(view.payload, payload);
        assert_eq!(view.hash, Some(hash));
        assert_eq!(view.frame_len, bytes.len());
        // Re-encoding the view gives the same bytes.
        assert_eq!(encode(&view.fields(), view.hash), bytes);
    }

    #[test]
    fn minimal_frame_round_trips() {
        let mut fields = sample(b"1", None);
        fields.correlation_id = None;
        fields.causation_id = None;
        let bytes = encode(&fields, None);
        assert_eq!(
            bytes.len(),
            FRAME_PREFIX_BYTES + BODY_FIXED_BYTES + 12 + 12 + 1
        );
        let view = decode_frame(&bytes).unwrap();
        assert_eq!(view.correlation(), view.event_id);
        assert_eq!(view.hash, None);
        assert_eq!(view.idempotency_key, None);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode(&sample(b"[1,2,3]", Some(b"k")), Some(EventHash([1; 32])));
        for cut in 0..bytes.len() {
            let err = decode_frame(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, FrameError::Truncated { .. }),
                "cut at {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = encode(
            &sample(b"{\"a\":1}", Some(b"key")),
            Some(EventHash([3; 32])),
        );
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                assert!(
                    decode_frame(&damaged).is_err(),
                    "flip of bit {bit} at byte {at} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn bad_checksum_and_lengths_are_reported() {
        let mut bytes = encode(&sample(b"1", None), None);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        assert!(matches!(
            decode_frame(&bytes),
            Err(FrameError::BadChecksum { .. })
        ));
        assert_eq!(decode_frame(&[0u8; 64]), Err(FrameError::Zero));
        let mut huge = vec![0u8; 16];
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_frame(&huge), Err(FrameError::BadLength(u32::MAX)));
    }

    #[test]
    fn layout_lies_are_caught_even_with_a_valid_checksum() {
        let mut bytes = encode(&sample(b"1", None), None);
        // Claim a longer entity, then fix the checksum as an attacker would.
        bytes[FRAME_PREFIX_BYTES + 52] += 1;
        let crc = frame_crc(&bytes[0..4], &bytes[FRAME_PREFIX_BYTES..]);
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode_frame(&bytes),
            Err(FrameError::BadLayout(_))
        ));
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let header = SegmentHeader {
            flags: 0,
            segment_id: 3,
            first_sequence: 1000,
            created_us: 123,
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        for at in 0..SEGMENT_HEADER_BYTES {
            let mut damaged = bytes;
            damaged[at] ^= 0x10;
            assert!(SegmentHeader::decode(&damaged).is_err(), "byte {at}");
        }
        assert!(SegmentHeader::decode(&bytes[..10]).is_err());
    }

    #[cfg(feature = "blake3")]
    #[test]
    fn chain_hash_covers_every_header_field_and_the_previous_link() {
        let payload = b"{}";
        let base = sample(payload, None);
        let digest = payload_digest(payload);
        let h = chain_hash(None, &base, &digest);
        assert_eq!(h, chain_hash(None, &base, &digest));
        let variants: [fn(&mut FrameFields<'_>); 11] = [
            |f| f.sequence += 1,
            |f| f.clock += 1,
            |f| f.timestamp_us += 1,
            |f| f.event_id = EventId::from_bytes([8; 16]),
            |f| f.correlation_id = None,
            |f| f.causation_id = None,
            |f| f.kind = EventKind::custom(0xF, 0x124),
            |f| f.flags ^= 1,
            |f| f.schema_version += 1,
            |f| f.entity = "player:alicf",
            |f| f.scope = "room:dungeoo",
        ];
        for (i, change) in variants.iter().enumerate() {
            let mut changed = base;
            change(&mut changed);
            assert_ne!(chain_hash(None, &changed, &digest), h, "variant {i}");
        }
        assert_ne!(chain_hash(None, &base, &payload_digest(b"{ }")), h);
        assert_ne!(chain_hash(Some(&h), &base, &digest), h);
    }

    /// The link is exactly the documented byte layout (ARCHITECTURE.md, "Hash
    /// chain"), fed here piece by piece: stores written by any build verify
    /// under any other, whichever buffer the input is assembled in.
    #[cfg(feature = "blake3")]
    #[test]
    fn chain_hash_is_the_documented_layout() {
        fn documented(
            previous: Option<&EventHash>,
            f: &FrameFields<'_>,
            digest: &[u8; 32],
        ) -> EventHash {
            let genesis = blake3::derive_key("batpak 2026 event chain v2 genesis", b"");
            let mut h = blake3::Hasher::new_keyed(previous.map_or(&genesis, |p| p.as_bytes()));
            h.update(&f.sequence.to_le_bytes());
            h.update(&f.clock.to_le_bytes());
            h.update(&f.timestamp_us.to_le_bytes());
            h.update(&f.event_id.to_bytes());
            h.update(&f.kind.bits().to_le_bytes());
            h.update(&f.flags.to_le_bytes());
            h.update(&f.schema_version.to_le_bytes());
            h.update(&[
                u8::from(f.correlation_id.is_some()) | u8::from(f.causation_id.is_some()) << 1
            ]);
            if let Some(id) = f.correlation_id {
                h.update(&id.to_bytes());
            }
            if let Some(id) = f.causation_id {
                h.update(&id.to_bytes());
            }
            h.update(&(f.entity.len() as u16).to_le_bytes());
            h.update(f.entity.as_bytes());
            h.update(&(f.scope.len() as u16).to_le_bytes());
            h.update(f.scope.as_bytes());
            h.update(digest);
            EventHash(*h.finalize().as_bytes())
        }
        let payload = b"{\"x\":1}";
        let digest = payload_digest(payload);
        // Entity names that put the input on each side of both stack
        // buffers' sizes (128 and 371 bytes), with and without causal ids.
        let names: Vec<String> = [0, 1, 17, 30, 31, 32, 62, 63, 64, 100, 200, 260, 300]
            .into_iter()
            .map(|len| "e".repeat(len))
            .collect();
        let mut cases = Vec::new();
        for name in &names {
            let mut with_ids = sample(payload, None);
            with_ids.entity = name;
            let mut plain = with_ids;
            plain.correlation_id = None;
            plain.causation_id = None;
            cases.extend([with_ids, plain]);
        }
        for fields in cases {
            let previous = chain_hash(None, &fields, &digest);
            assert_eq!(
                chain_hash(None, &fields, &digest),
                documented(None, &fields, &digest)
            );
            assert_eq!(
                chain_hash(Some(&previous), &fields, &digest),
                documented(Some(&previous), &fields, &digest)
            );
        }
    }
}
