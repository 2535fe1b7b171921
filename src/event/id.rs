//! Event ids: UUID v7, ordered by time of creation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of an event: a UUID v7.
///
/// `Display` is the hyphenated UUID. Ids order by time of creation; within one
/// store they are strictly increasing in `sequence` order, because the writer
/// mints them in commit order from a monotonic generator.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    /// Wraps a UUID.
    pub const fn from_uuid(uuid: Uuid) -> EventId {
        EventId(uuid)
    }

    /// Rebuilds an id from its 16 raw bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> EventId {
        EventId(Uuid::from_bytes(bytes))
    }

    /// The UUID.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The 16 raw bytes (big-endian, so byte order is time order).
    pub const fn to_bytes(self) -> [u8; 16] {
        *self.0.as_bytes()
    }

    /// Milliseconds since the Unix epoch encoded in the id.
    pub fn timestamp_ms(&self) -> u64 {
        let b = self.0.as_bytes();
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0.hyphenated())
    }
}

impl FromStr for EventId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(EventId)
    }
}

impl From<Uuid> for EventId {
    fn from(uuid: Uuid) -> Self {
        EventId(uuid)
    }
}

/// Mints UUID v7 ids that are strictly increasing, even when the wall clock
/// stands still or steps backwards.
#[derive(Debug)]
pub(crate) struct IdGenerator {
    last: u128,
}

const RANDOM_BITS: u32 = 74;
const RANDOM_MASK: u128 = (1u128 << RANDOM_BITS) - 1;

impl IdGenerator {
    /// A generator whose ids will all be greater than `after`.
    pub(crate) fn after(after: Option<EventId>) -> Self {
        IdGenerator {
            last: after.map(|id| id.0.as_u128()).unwrap_or(0),
        }
    }

    pub(crate) fn next(&mut self, now_ms: u64) -> EventId {
        let last_ms = (self.last >> 80) as u64;
        let last_random = unpack_random(self.last);
        let (ms, random) = if now_ms > last_ms {
            // Fresh millisecond: random tail, top bit clear to leave room to count.
            (now_ms, fastrand::u128(..) & (RANDOM_MASK >> 1))
        } else if last_random < RANDOM_MASK {
            (
                last_ms,
                last_random
                    + 1
                    + (fastrand::u64(..1 << 16) as u128).min(RANDOM_MASK - last_random - 1),
            )
        } else {
            (last_ms + 1, 0)
        };
        let value = pack(ms, random);
        debug_assert!(value > self.last);
        self.last = value;
        EventId(Uuid::from_u128(value))
    }
}

fn unpack_random(value: u128) -> u128 {
    let rand_a = (value >> 64) & 0x0FFF;
    let rand_b = value & ((1u128 << 62) - 1);
    (rand_a << 62) | rand_b
}

fn pack(ms: u64, random: u128) -> u128 {
    let ms = (ms as u128) & ((1u128 << 48) - 1);
    let rand_a = (random >> 62) & 0x0FFF;
    let rand_b = random & ((1u128 << 62) - 1);
    (ms << 80) | (0x7u128 << 76) | (rand_a << 64) | (0b10u128 << 62) | rand_b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_and_strictly_increasing_even_if_clock_goes_back() {
        let mut generator = IdGenerator::after(None);
        let mut previous = generator.next(1_000);
        for now in [1_000, 1_000, 999, 5, 2_000, 2_000, 1_500] {
            let id = generator.next(now);
            assert!(id > previous, "{id} should follow {previous}");
            assert_eq!(id.as_uuid().get_version_num(), 7);
            assert_eq!(id.as_uuid().get_variant(), uuid::Variant::RFC4122);
            previous = id;
        }
        assert_eq!(previous.timestamp_ms(), 2_000);
    }

    #[test]
    fn display_is_hyphenated_and_parses_back() {
        let mut generator = IdGenerator::after(None);
        let id = generator.next(1_700_000_000_000);
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text.parse::<EventId>().unwrap(), id);
    }

    #[test]
    fn generator_continues_after_a_given_id() {
        let mut first = IdGenerator::after(None);
        let high = first.next(u64::from(u32::MAX) * 1000);
        let mut second = IdGenerator::after(Some(high));
        assert!(second.next(10) > high);
    }
}
