//! The one payload encoding: compact JSON, whatever the write path.

use std::cell::RefCell;
use std::io::{self, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::json::{self, JsonError};
use crate::StoreError;

/// A writer that refuses to grow past `max` bytes, so an oversized payload is
/// caught during serialization, before it is buffered whole.
struct LimitedWriter<'a> {
    buffer: &'a mut Vec<u8>,
    max: usize,
    exceeded: bool,
}

impl Write for LimitedWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_all(bytes)?;
        Ok(bytes.len())
    }

    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.buffer.len() + bytes.len() > self.max {
            self.exceeded = true;
            return Err(io::Error::other("payload limit exceeded"));
        }
        // Most of what the serializer writes is one byte of punctuation:
        // no copy call for those.
        match bytes {
            [byte] => self.buffer.push(*byte),
            _ => self.buffer.extend_from_slice(bytes),
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Serializes a payload as compact JSON, failing with
/// [`StoreError::PayloadTooLarge`] as soon as it passes `max_bytes`.
pub(crate) fn encode_payload(
    payload: &impl Serialize,
    max_bytes: u32,
) -> Result<Vec<u8>, StoreError> {
    let mut buffer = Vec::with_capacity(256);
    encode_into(payload, max_bytes, &mut buffer)?;
    Ok(buffer)
}

thread_local! {
    /// The encoding buffer of [`with_encoded`], kept between appends.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A scratch buffer that grew past this is given back after use.
const SCRATCH_KEEP_BYTES: usize = 64 * 1024;

/// [`encode_payload`] into a per-thread buffer, handed to `use_bytes`: the
/// single-append path encodes without allocating. (A payload whose
/// serialization appends to a store gets a fresh buffer.)
pub(crate) fn with_encoded<R>(
    payload: &impl Serialize,
    max_bytes: u32,
    use_bytes: impl FnOnce(&[u8]) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            buffer.clear();
            let result =
                encode_into(payload, max_bytes, &mut buffer).and_then(|()| use_bytes(&buffer));
            if buffer.capacity() > SCRATCH_KEEP_BYTES {
                *buffer = Vec::new();
            }
            result
        }
        Err(_) => use_bytes(&encode_payload(payload, max_bytes)?),
    })
}

fn encode_into(
    payload: &impl Serialize,
    max_bytes: u32,
    buffer: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let start = buffer.len();
    match json::encode(payload, buffer, start + max_bytes as usize) {
        Ok(()) => return Ok(()),
        Err(JsonError::Exceeded) => {
            return Err(StoreError::PayloadTooLarge {
                size: (buffer.len() - start) as u64 + 1,
                max: u64::from(max_bytes),
            })
        }
        // Something the fast encoder leaves to serde_json: start over.
        Err(JsonError::Fallback) => buffer.truncate(start),
    }
    let mut writer = LimitedWriter {
        buffer,
        max: start + max_bytes as usize,
        exceeded: false,
    };
    match serde_json::to_writer(&mut writer, payload) {
        Ok(()) => Ok(()),
        Err(_) if writer.exceeded => Err(StoreError::PayloadTooLarge {
            size: (writer.buffer.len() - start) as u64 + 1,
            max: u64::from(max_bytes),
        }),
        Err(source) => Err(StoreError::Serialization {
            direction: "encoding",
            source,
        }),
    }
}

/// Decodes a stored payload.
pub(crate) fn decode_payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Serialization {
        direction: "decoding",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_compact_json_and_enforces_the_limit() {
        let bytes = encode_payload(&serde_json::json!({"x": 10}), 100).unwrap();
        assert_eq!(bytes, br#"{"x":10}"#);
        let big = "y".repeat(200);
        assert!(matches!(
            encode_payload(&big, 100),
            Err(StoreError::PayloadTooLarge { max: 100, .. })
        ));
        assert!(encode_payload(&"y".repeat(98), 100).is_ok());
    }
}
