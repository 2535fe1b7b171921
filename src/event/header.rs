//! Event headers, stored events and hashes.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{EventId, EventKind};
use crate::Coordinate;

/// The metadata of one event, as stored in its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EventHeader {
    /// The event's id (UUID v7).
    pub event_id: EventId,
    /// The correlation id: the id of the conversation this event belongs to.
    /// Unless the writer set one, it is the event's own id.
    pub correlation_id: EventId,
    /// The event that caused this one, if any.
    pub causation_id: Option<EventId>,
    /// Wall-clock time of the append, microseconds since the Unix epoch.
    pub timestamp_us: i64,
    /// Global position in the log: gapless from 0, never changes.
    pub sequence: u64,
    /// The entity's version after this event: its first event has clock 1.
    pub clock: u64,
    /// What the event is.
    pub kind: EventKind,
    /// Application-defined flags, stored verbatim.
    pub flags: u16,
    /// Schema version of the payload (0 unless the writer set one; typed
    /// events record their type's version here so upcasters know what to do).
    pub schema_version: u16,
}

/// A 32-byte blake3 hash of an event, the link of its entity's hash chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventHash(pub [u8; 32]);

impl EventHash {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hexadecimal form.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }

    /// Parses the hexadecimal form.
    pub fn from_hex(text: &str) -> Option<EventHash> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(EventHash(out))
    }
}

impl fmt::Debug for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventHash({})", self.to_hex())
    }
}

impl fmt::Display for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for EventHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for EventHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        EventHash::from_hex(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// An event as reads return it.
///
/// Reads at the storage boundary yield `StoredEvent<serde_json::Value>`;
/// typed reads decode the payload into any `DeserializeOwned` type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent<P = serde_json::Value> {
    /// Where the event lives.
    pub coordinate: Coordinate,
    /// Its metadata.
    pub header: EventHeader,
    /// Its payload.
    pub payload: P,
    /// The event's link in its entity's hash chain: blake3 over the previous
    /// event's hash, this header, the coordinate and the payload. `None` when
    /// the event was written without the `blake3` feature.
    pub hash: Option<EventHash>,
    /// True if compaction redacted the payload (erasure): the payload is
    /// JSON `null` and is gone from the store; every other field, and the
    /// hash chain through this event, is intact.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

impl<P> StoredEvent<P> {
    /// The event id.
    pub fn id(&self) -> EventId {
        self.header.event_id
    }

    /// The global sequence.
    pub fn sequence(&self) -> u64 {
        self.header.sequence
    }

    /// The event kind.
    pub fn kind(&self) -> EventKind {
        self.header.kind
    }

    /// Replaces the payload, keeping everything else.
    pub fn map_payload<Q>(self, f: impl FnOnce(P) -> Q) -> StoredEvent<Q> {
        StoredEvent {
            coordinate: self.coordinate,
            header: self.header,
            payload: f(self.payload),
            hash: self.hash,
            redacted: self.redacted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_hex_round_trip() {
        let hash = EventHash([0xAB; 32]);
        assert_eq!(EventHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(EventHash::from_hex("zz"), None);
        assert_eq!(EventHash::from_hex(&"é".repeat(32)), None);
    }
}
