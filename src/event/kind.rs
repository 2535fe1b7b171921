//! Event kinds: a 4-bit category and a 12-bit type in 16 bits.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an [`EventKind`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    /// The category does not fit in 4 bits.
    #[error("event kind category {category:#x} is out of range (0x0..=0xF)")]
    CategoryOutOfRange {
        /// The rejected category.
        category: u8,
    },
    /// The type id does not fit in 12 bits.
    #[error("event kind type id {type_id:#x} is out of range (0x000..=0xFFF)")]
    TypeOutOfRange {
        /// The rejected type id.
        type_id: u16,
    },
}

/// What an event is: 16 bits, a 4-bit category and a 12-bit type.
///
/// Categories [`EventKind::SYSTEM_CATEGORY`] (0x0) and
/// [`EventKind::EFFECT_CATEGORY`] (0xD) are reserved for the store; appending
/// an event of a reserved kind fails with
/// [`StoreError::ReservedKind`](crate::StoreError::ReservedKind).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventKind(u16);

impl EventKind {
    /// The reserved system category.
    pub const SYSTEM_CATEGORY: u8 = 0x0;
    /// The reserved effect category.
    pub const EFFECT_CATEGORY: u8 = 0xD;

    /// Builds a kind from a category (`0x0..=0xF`) and a type id (`0x000..=0xFFF`).
    ///
    /// Usable in `const` items, where an out-of-range argument is a compile
    /// error; at run time it panics on out-of-range arguments. Use
    /// [`EventKind::try_custom`] for values that come from outside.
    ///
    /// ```
    /// use batpak::prelude::*;
    /// const MOVED: EventKind = EventKind::custom(0xF, 1);
    /// assert_eq!(MOVED.category(), 0xF);
    /// assert_eq!(MOVED.type_id(), 1);
    /// ```
    pub const fn custom(category: u8, type_id: u16) -> EventKind {
        assert!(category <= 0xF, "EventKind category must fit in 4 bits");
        assert!(type_id <= 0xFFF, "EventKind type id must fit in 12 bits");
        EventKind(((category as u16) << 12) | type_id)
    }

    /// Fallible form of [`EventKind::custom`].
    pub const fn try_custom(category: u8, type_id: u16) -> Result<EventKind, KindError> {
        if category > 0xF {
            return Err(KindError::CategoryOutOfRange { category });
        }
        if type_id > 0xFFF {
            return Err(KindError::TypeOutOfRange { type_id });
        }
        Ok(EventKind(((category as u16) << 12) | type_id))
    }

    /// Rebuilds a kind from its 16-bit representation.
    pub const fn from_bits(bits: u16) -> EventKind {
        EventKind(bits)
    }

    /// The 16-bit representation.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// The 4-bit category.
    pub const fn category(self) -> u8 {
        (self.0 >> 12) as u8
    }

    /// The 12-bit type id.
    pub const fn type_id(self) -> u16 {
        self.0 & 0x0FFF
    }

    /// True for kinds in a category reserved for the store.
    pub const fn is_reserved(self) -> bool {
        let category = self.category();
        category == Self::SYSTEM_CATEGORY || category == Self::EFFECT_CATEGORY
    }
}

impl fmt::Debug for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EventKind({:#x}:{:#05x})",
            self.category(),
            self.type_id()
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}:{:03x}", self.category(), self.type_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: EventKind = EventKind::custom(0xF, 0xABC);

    #[test]
    fn packs_category_and_type() {
        assert_eq!(K.bits(), 0xFABC);
        assert_eq!(K.category(), 0xF);
        assert_eq!(K.type_id(), 0xABC);
        assert_eq!(EventKind::from_bits(K.bits()), K);
        assert_eq!(K.to_string(), "f:abc");
    }

    #[test]
    fn try_custom_rejects_out_of_range() {
        assert_eq!(
            EventKind::try_custom(0x10, 1),
            Err(KindError::CategoryOutOfRange { category: 0x10 })
        );
        assert_eq!(
            EventKind::try_custom(1, 0x1000),
            Err(KindError::TypeOutOfRange { type_id: 0x1000 })
        );
        assert_eq!(EventKind::try_custom(1, 2), Ok(EventKind::custom(1, 2)));
    }

    #[test]
    fn reserved_categories() {
        assert!(EventKind::custom(0x0, 5).is_reserved());
        assert!(EventKind::custom(0xD, 5).is_reserved());
        assert!(!EventKind::custom(0x1, 5).is_reserved());
    }
}
