//! The read path: frames by sequence, and lazy iterators over the index.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::codec::decode_payload;
use super::engine::Inner;
use super::log::frame::decode_indexed_frame;
use super::log::segment::{ReadAhead, ReadFrameError};
use crate::{EventHeader, Region, StoreError, StoredEvent};

/// How many sequences an iterator fetches from the index at a time.
const FETCH_CHUNK: usize = 256;
/// How many index entries one fetch may examine before releasing the index.
const SCAN_BUDGET: usize = 64 * 1024;

impl Inner {
    /// Reads and checks the visible event at `sequence`, decoding its payload as `T`.
    pub(crate) fn read_event<T: DeserializeOwned>(
        &self,
        sequence: u64,
    ) -> Result<Option<StoredEvent<T>>, StoreError> {
        self.read_event_with(sequence, decode_payload::<T>, None)
    }

    /// Reads and checks the visible event at `sequence`, turning its payload
    /// bytes into `P` with `decode`.
    pub(crate) fn read_event_with<P>(
        &self,
        sequence: u64,
        decode: fn(&[u8]) -> Result<P, StoreError>,
        ahead: Option<&mut ReadAhead>,
    ) -> Result<Option<StoredEvent<P>>, StoreError> {
        // The segment reader is taken with the entry, under the index lock:
        // compaction swaps both at once, so they always belong together.
        let (entry, coordinate, event_id, reader) = {
            let index = self.index.read();
            let Some(entry) = index.entry(sequence) else {
                return Ok(None);
            };
            let reader = self.segments.read().get(&entry.segment).cloned();
            (
                entry,
                index.coordinate(&entry),
                index.event_id_at(sequence),
                reader,
            )
        };
        self.ensure_flushed(entry.segment, u64::from(entry.offset))?;
        let Some(reader) = reader else {
            return Err(StoreError::corrupt(
                self.segment_path(entry.segment),
                u64::from(entry.offset),
                format!("segment {} of event {sequence} is missing", entry.segment),
            ));
        };
        let corrupt = |reason: String| {
            StoreError::corrupt(reader.path.clone(), u64::from(entry.offset), reason)
        };
        // Read ahead only where nothing past the written bound can change
        // under the reader: not beside another process's writer.
        let ahead = ahead
            .filter(|_| !self.read_only)
            .map(|ahead| (ahead, self.written_bound(entry.segment)));
        let decoded = reader.with_frame_ahead(u64::from(entry.offset), ahead, |bytes| {
            let view = decode_indexed_frame(bytes).map_err(|e| corrupt(e.to_string()))?;
            // What is read back must be what the index was built from.
            if view.sequence != sequence
                || Some(view.event_id) != event_id
                || view.entity != coordinate.entity()
                || view.scope != coordinate.scope()
            {
                return Err(corrupt(format!(
                    "frame does not match the index entry for sequence {sequence}"
                )));
            }
            let redacted = view.is_redacted();
            let payload = if redacted {
                decode(b"null").map_err(|_| StoreError::Redacted {
                    sequence,
                    event_id: view.event_id,
                })?
            } else {
                decode(view.payload)?
            };
            Ok(StoredEvent {
                header: EventHeader {
                    event_id: view.event_id,
                    correlation_id: view.correlation(),
                    causation_id: view.causation_id,
                    timestamp_us: view.timestamp_us,
                    sequence: view.sequence,
                    clock: view.clock,
                    kind: view.kind,
                    flags: view.flags,
                    schema_version: view.schema_version,
                },
                coordinate: coordinate.clone(),
                payload,
                hash: view.hash,
                redacted,
            })
        });
        match decoded {
            Ok(result) => result.map(Some),
            Err(ReadFrameError::Io(source)) => {
                Err(StoreError::io("read", reader.path.clone(), source))
            }
            Err(ReadFrameError::Frame(error)) => Err(corrupt(error.to_string())),
        }
    }
}

/// An iterator over stored events in sequence order, fetched lazily from the
/// index in small chunks (the index is never held while reading the disk).
///
/// It sees the events that are visible when each chunk is fetched, so an
/// iterator created before an append may or may not yield that event; it
/// never yields an event twice or out of order. After an error it ends.
pub struct EventIter {
    inner: Arc<Inner>,
    region: Region,
    after: Option<u64>,
    buffered: VecDeque<u64>,
    exhausted: bool,
    /// Frames of the active segment, read ahead in order.
    ahead: ReadAhead,
}

impl EventIter {
    pub(crate) fn new(inner: Arc<Inner>, region: Region) -> Self {
        EventIter {
            inner,
            region,
            after: None,
            buffered: VecDeque::new(),
            exhausted: false,
            ahead: ReadAhead::default(),
        }
    }

    /// Starts after `sequence` (exclusive).
    pub fn after(mut self, sequence: u64) -> Self {
        self.after = Some(sequence);
        self.buffered.clear();
        self
    }

    /// Decodes payloads as `T` instead of `serde_json::Value`.
    pub fn decode<T: DeserializeOwned>(self) -> TypedEventIter<T> {
        TypedEventIter {
            base: self,
            decode: decode_payload::<T>,
        }
    }

    /// Yields payloads as their stored JSON bytes, unparsed: the fastest way
    /// to replay a log when most payloads are not needed (checksums are still
    /// checked on every frame).
    pub fn raw(self) -> TypedEventIter<RawPayload> {
        TypedEventIter {
            base: self,
            decode: |bytes| Ok(RawPayload(bytes.into())),
        }
    }

    fn next_sequence(&mut self) -> Option<u64> {
        while self.buffered.is_empty() && !self.exhausted {
            let (sequences, resume) =
                self.inner
                    .index
                    .read()
                    .select(&self.region, self.after, FETCH_CHUNK, SCAN_BUDGET);
            if let Some(&last) = sequences.last() {
                self.after = Some(last);
            }
            match resume {
                Some(resume) => self.after = Some(self.after.map_or(resume, |a| a.max(resume))),
                None => self.exhausted = true,
            }
            self.buffered.extend(sequences);
        }
        self.buffered.pop_front()
    }

    fn next_with<P>(
        &mut self,
        decode: fn(&[u8]) -> Result<P, StoreError>,
    ) -> Option<Result<StoredEvent<P>, StoreError>> {
        loop {
            let sequence = self.next_sequence()?;
            match self
                .inner
                .read_event_with(sequence, decode, Some(&mut self.ahead))
            {
                Ok(Some(event)) => return Some(Ok(event)),
                // Gone since it was selected (cut back after a failure): skip.
                Ok(None) => continue,
                Err(error) => {
                    self.exhausted = true;
                    self.buffered.clear();
                    return Some(Err(error));
                }
            }
        }
    }
}

impl Iterator for EventIter {
    type Item = Result<StoredEvent, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with(decode_payload::<serde_json::Value>)
    }
}

impl std::fmt::Debug for EventIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventIter")
            .field("region", &self.region)
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

/// An [`EventIter`] that decodes payloads into `T` (see [`EventIter::decode`]
/// and [`EventIter::raw`]).
pub struct TypedEventIter<T> {
    base: EventIter,
    decode: fn(&[u8]) -> Result<T, StoreError>,
}

impl<T> std::fmt::Debug for TypedEventIter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedEventIter")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl<T> Iterator for TypedEventIter<T> {
    type Item = Result<StoredEvent<T>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.base.next_with(self.decode)
    }
}

/// A payload as stored: compact JSON bytes, not parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPayload(pub Box<[u8]>);

impl RawPayload {
    /// The JSON bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Parses the payload into `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, StoreError> {
        decode_payload(&self.0)
    }
}
