//! Coordinates: where an event lives (`entity`, `scope`).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest entity or scope name accepted, in bytes.
pub const COORDINATE_PART_MAX_BYTES: usize = 1024;

/// Why a coordinate was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordinateError {
    /// The named part (`"entity"` or `"scope"`) was empty.
    #[error("coordinate {part} is empty")]
    Empty {
        /// `"entity"` or `"scope"`.
        part: &'static str,
    },
    /// The named part is longer than [`COORDINATE_PART_MAX_BYTES`].
    #[error("coordinate {part} is {len} bytes long; the limit is {max} bytes")]
    TooLong {
        /// `"entity"` or `"scope"`.
        part: &'static str,
        /// Length of the rejected part in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The named part contains NUL or another control character.
    #[error("coordinate {part} contains control character {character:?} at byte {byte_offset}")]
    ControlCharacter {
        /// `"entity"` or `"scope"`.
        part: &'static str,
        /// The offending character.
        character: char,
        /// Byte offset of the character within the part.
        byte_offset: usize,
    },
}

/// The address of an event: an `entity` (one event stream, with its own clock
/// and hash chain) and a `scope` (an isolation label).
///
/// Both parts are validated on construction *and* on deserialization: they must
/// be non-empty, at most [`COORDINATE_PART_MAX_BYTES`] bytes, and free of NUL and
/// other control characters. Cloning is cheap (the strings are shared).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Coordinate {
    entity: Arc<str>,
    scope: Arc<str>,
}

impl Coordinate {
    /// Builds a coordinate, validating both parts.
    ///
    /// ```
    /// use batpak::prelude::*;
    /// let coord = Coordinate::new("player:alice", "room:dungeon")?;
    /// assert_eq!(coord.entity(), "player:alice");
    /// assert!(Coordinate::new("", "scope").is_err());
    /// # Ok::<(), CoordinateError>(())
    /// ```
    pub fn new(entity: impl AsRef<str>, scope: impl AsRef<str>) -> Result<Self, CoordinateError> {
        let entity = entity.as_ref();
        let scope = scope.as_ref();
        validate_part("entity", entity)?;
        validate_part("scope", scope)?;
        Ok(Coordinate {
            entity: Arc::from(entity),
            scope: Arc::from(scope),
        })
    }

    /// Builds a coordinate from already shared, already validated parts.
    pub(crate) fn from_shared(entity: Arc<str>, scope: Arc<str>) -> Self {
        debug_assert!(validate_part("entity", &entity).is_ok());
        debug_assert!(validate_part("scope", &scope).is_ok());
        Coordinate { entity, scope }
    }

    /// The entity: one event stream with its own clock and hash chain.
    pub fn entity(&self) -> &str {
        &self.entity
    }

    /// The scope: an isolation label.
    pub fn scope(&self) -> &str {
        &self.scope
    }
}

/// Checks one coordinate part against the rules in [`Coordinate`].
pub(crate) fn validate_part(part: &'static str, value: &str) -> Result<(), CoordinateError> {
    if value.is_empty() {
        return Err(CoordinateError::Empty { part });
    }
    if value.len() > COORDINATE_PART_MAX_BYTES {
        return Err(CoordinateError::TooLong {
            part,
            len: value.len(),
            max: COORDINATE_PART_MAX_BYTES,
        });
    }
    if let Some((byte_offset, character)) = value.char_indices().find(|(_, c)| c.is_control()) {
        return Err(CoordinateError::ControlCharacter {
            part,
            character,
            byte_offset,
        });
    }
    Ok(())
}

impl fmt::Debug for Coordinate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Coordinate({:?}, {:?})", &*self.entity, &*self.scope)
    }
}

impl fmt::Display for Coordinate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.entity, self.scope)
    }
}

#[derive(Serialize, Deserialize)]
struct CoordinateRepr<'a> {
    #[serde(borrow)]
    entity: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    scope: std::borrow::Cow<'a, str>,
}

impl Serialize for Coordinate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        CoordinateRepr {
            entity: std::borrow::Cow::Borrowed(&self.entity),
            scope: std::borrow::Cow::Borrowed(&self.scope),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Coordinate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = CoordinateRepr::deserialize(deserializer)?;
        Coordinate::new(repr.entity, repr.scope).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_long_and_control_parts() {
        assert_eq!(
            Coordinate::new("", "s"),
            Err(CoordinateError::Empty { part: "entity" })
        );
        assert_eq!(
            Coordinate::new("e", ""),
            Err(CoordinateError::Empty { part: "scope" })
        );
        let long = "x".repeat(COORDINATE_PART_MAX_BYTES + 1);
        assert!(matches!(
            Coordinate::new(&long, "s"),
            Err(CoordinateError::TooLong {
                part: "entity",
                len: 1025,
                ..
            })
        ));
        assert!(Coordinate::new("x".repeat(COORDINATE_PART_MAX_BYTES), "s").is_ok());
        assert!(matches!(
            Coordinate::new("a\0b", "s"),
            Err(CoordinateError::ControlCharacter { byte_offset: 1, .. })
        ));
        assert!(matches!(
            Coordinate::new("e", "tab\there"),
            Err(CoordinateError::ControlCharacter { part: "scope", .. })
        ));
        assert!(Coordinate::new("plåyer:ålice", "rööm").is_ok());
    }

    #[test]
    fn deserialization_validates() {
        let good: Coordinate = serde_json::from_str(r#"{"entity":"a","scope":"b"}"#).unwrap();
        assert_eq!(good.entity(), "a");
        let bad = serde_json::from_str::<Coordinate>(r#"{"entity":"a\u0000","scope":"b"}"#);
        assert!(bad.is_err());
        let round: Coordinate =
            serde_json::from_str(&serde_json::to_string(&good).unwrap()).unwrap();
        assert_eq!(round, good);
    }
}
