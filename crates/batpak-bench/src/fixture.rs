//! The standard data of every workload: ~150-byte JSON payloads, entities
//! `entity-{i % 1000}`, one scope, four custom kinds.

use batpak::{Coordinate, EventKind};
use serde::Serialize;

use crate::error::BenchResult;

/// Number of distinct entities (`entity-0` .. `entity-999`).
pub const ENTITY_COUNT: usize = 1000;
/// The one scope every event lives in.
pub const SCOPE: &str = "bench";
/// The custom kinds the workloads use.
pub const KINDS: [EventKind; 4] = [
    EventKind::custom(0x1, 1),
    EventKind::custom(0x1, 2),
    EventKind::custom(0x1, 3),
    EventKind::custom(0x2, 1),
];

const NOTES: [&str; 4] = [
    "payment received for order; customer asked for gift wrapping and a delivery slot in the morning (ticket 42)",
    "refund issued after the parcel came back damaged; the courier confirmed the claim number today (ticket 42)",
    "subscription renewed automatically for another month with the loyalty discount still applied (ticket 42)",
    "address corrected by support before dispatch; the warehouse has been told to hold the shipment (ticket 42)",
];

/// The payload every workload writes: serialized to about 150 bytes of compact JSON.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Payload<'a> {
    /// A user name.
    pub user: &'a str,
    /// A number that changes from event to event.
    pub amount: u64,
    /// Free text that brings the payload to its size.
    pub note: &'a str,
}

/// Pre-built names and coordinates, so workloads time the engine and not the fixture.
pub struct Fixture {
    coordinates: Vec<Coordinate>,
    entities: Vec<String>,
    users: Vec<String>,
}

impl Fixture {
    /// Builds the 1,000 coordinates and user names.
    pub fn new() -> BenchResult<Fixture> {
        let entities: Vec<String> = (0..ENTITY_COUNT).map(|i| format!("entity-{i}")).collect();
        let coordinates = entities
            .iter()
            .map(|entity| Coordinate::new(entity, SCOPE))
            .collect::<Result<Vec<_>, _>>()?;
        let users = (0..ENTITY_COUNT).map(|i| format!("user-{i}")).collect();
        Ok(Fixture {
            coordinates,
            entities,
            users,
        })
    }

    /// The coordinate of event `i`.
    pub fn coordinate(&self, i: usize) -> &Coordinate {
        &self.coordinates[i % ENTITY_COUNT]
    }

    /// The entity name of event `i`.
    pub fn entity(&self, i: usize) -> &str {
        &self.entities[i % ENTITY_COUNT]
    }

    /// Entity number `index` (`entity-{index}`).
    pub fn entity_name(&self, index: usize) -> &str {
        &self.entities[index % ENTITY_COUNT]
    }

    /// The kind of event `i`: a fixed pseudo-random mix of the four kinds.
    pub fn kind(i: usize) -> batpak::EventKind {
        let mixed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 62;
        KINDS[mixed as usize % KINDS.len()]
    }

    /// The payload of event `i`.
    pub fn payload(&self, i: usize) -> Payload<'_> {
        Payload {
            user: &self.users[(i / 3) % ENTITY_COUNT],
            amount: (i as u64).wrapping_mul(7919) % 1_000_000,
            note: NOTES[i % NOTES.len()],
        }
    }
}

/// Microseconds since the Unix epoch (the SQLite peer's `ts` column).
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_about_150_bytes() {
        let fixture = Fixture::new().expect("fixture");
        for i in [0, 1, 2, 3, 999, 123_456] {
            let bytes = serde_json::to_vec(&fixture.payload(i)).expect("json");
            assert!(
                (140..=160).contains(&bytes.len()),
                "payload {i} is {} bytes",
                bytes.len()
            );
        }
    }

    #[test]
    fn entities_cycle_through_one_thousand_names() {
        let fixture = Fixture::new().expect("fixture");
        assert_eq!(fixture.entity(0), "entity-0");
        assert_eq!(fixture.entity(1001), "entity-1");
        assert_eq!(fixture.coordinate(1999).entity(), "entity-999");
    }

    #[test]
    fn every_kind_is_used() {
        let mut seen = [false; 4];
        for i in 0..1000 {
            let kind = Fixture::kind(i);
            let position = KINDS.iter().position(|k| *k == kind).expect("known kind");
            seen[position] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
