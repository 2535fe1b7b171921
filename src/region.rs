//! Regions: which events a query, subscription or cursor selects.

use std::ops::{Bound, RangeBounds};

use crate::{EventId, EventKind};

/// Which kinds a [`Region`] selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KindFilter {
    /// Every kind.
    #[default]
    Any,
    /// Exactly this kind.
    Exact(EventKind),
    /// Every kind of this 4-bit category.
    Category(u8),
}

impl KindFilter {
    /// True if `kind` passes the filter.
    pub fn matches(&self, kind: EventKind) -> bool {
        match *self {
            KindFilter::Any => true,
            KindFilter::Exact(exact) => kind == exact,
            KindFilter::Category(category) => kind.category() == category,
        }
    }
}

/// Which entities a [`Region`] selects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EntityFilter {
    /// Every entity.
    #[default]
    Any,
    /// Exactly this entity.
    Exact(String),
    /// Every entity whose name starts with this prefix.
    Prefix(String),
}

/// An inclusive range `[start, end]` over `u64` or `i64` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span<T> {
    /// Smallest selected value.
    pub start: T,
    /// Largest selected value.
    pub end: T,
}

fn to_span_u64(range: impl RangeBounds<u64>) -> Span<u64> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e,
        Bound::Excluded(&e) => {
            if e == 0 {
                // An empty range: make start > end.
                return Span { start: 1, end: 0 };
            }
            e - 1
        }
        Bound::Unbounded => u64::MAX,
    };
    Span { start, end }
}

fn to_span_i64(range: impl RangeBounds<i64>) -> Span<i64> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => i64::MIN,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e,
        Bound::Excluded(&e) => {
            if e == i64::MIN {
                return Span { start: 0, end: -1 };
            }
            e - 1
        }
        Bound::Unbounded => i64::MAX,
    };
    Span { start, end }
}

impl<T: PartialOrd> Span<T> {
    /// True if `value` lies in the span.
    pub fn contains(&self, value: &T) -> bool {
        *value >= self.start && *value <= self.end
    }
}

/// A selection of events: by entity (exact or prefix), scope, kind, clock
/// range, time range, sequence range, correlation and causation. Every
/// criterion that is set must match; an unset criterion matches everything.
///
/// ```
/// use batpak::prelude::*;
/// let region = Region::entity_prefix("player:")
///     .with_scope("room:dungeon")
///     .with_kind(KindFilter::Category(0xF))
///     .with_sequence_range(100..);
/// assert!(region.matches_kind(EventKind::custom(0xF, 1)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Region {
    pub(crate) entity: EntityFilter,
    pub(crate) scope: Option<String>,
    pub(crate) kind: KindFilter,
    pub(crate) clock: Option<Span<u64>>,
    pub(crate) time_us: Option<Span<i64>>,
    pub(crate) sequence: Option<Span<u64>>,
    pub(crate) correlation_id: Option<EventId>,
    pub(crate) causation_id: Option<EventId>,
}

impl Region {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// One entity's events.
    pub fn entity(entity: impl Into<String>) -> Self {
        Region {
            entity: EntityFilter::Exact(entity.into()),
            ..Self::default()
        }
    }

    /// Events of every entity whose name starts with `prefix`.
    pub fn entity_prefix(prefix: impl Into<String>) -> Self {
        Region {
            entity: EntityFilter::Prefix(prefix.into()),
            ..Self::default()
        }
    }

    /// Events of one scope (exact match: only events of that scope).
    pub fn scope(scope: impl Into<String>) -> Self {
        Region::all().with_scope(scope)
    }

    /// Restricts to one scope (exact match).
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Restricts to an entity filter.
    pub fn with_entity(mut self, entity: EntityFilter) -> Self {
        self.entity = entity;
        self
    }

    /// Restricts by kind.
    pub fn with_kind(mut self, kind: KindFilter) -> Self {
        self.kind = kind;
        self
    }

    /// Restricts to per-entity clocks in `range`.
    pub fn with_clock_range(mut self, range: impl RangeBounds<u64>) -> Self {
        self.clock = Some(to_span_u64(range));
        self
    }

    /// Restricts to timestamps (µs since the Unix epoch) in `range`.
    pub fn with_time_range_us(mut self, range: impl RangeBounds<i64>) -> Self {
        self.time_us = Some(to_span_i64(range));
        self
    }

    /// Restricts to global sequences in `range`.
    pub fn with_sequence_range(mut self, range: impl RangeBounds<u64>) -> Self {
        self.sequence = Some(to_span_u64(range));
        self
    }

    /// Restricts to events whose correlation id is `id`.
    pub fn with_correlation(mut self, id: EventId) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Restricts to events directly caused by `id`.
    pub fn with_causation(mut self, id: EventId) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// The entity filter.
    pub fn entity_filter(&self) -> &EntityFilter {
        &self.entity
    }

    /// The scope filter.
    pub fn scope_filter(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The kind filter.
    pub fn kind_filter(&self) -> KindFilter {
        self.kind
    }

    /// The sequence span, if any.
    pub fn sequence_span(&self) -> Option<Span<u64>> {
        self.sequence
    }

    /// True if `kind` passes the kind filter.
    pub fn matches_kind(&self, kind: EventKind) -> bool {
        self.kind.matches(kind)
    }

    /// True if `entity` passes the entity filter.
    pub fn matches_entity(&self, entity: &str) -> bool {
        match &self.entity {
            EntityFilter::Any => true,
            EntityFilter::Exact(exact) => entity == exact,
            EntityFilter::Prefix(prefix) => entity.starts_with(prefix.as_str()),
        }
    }

    /// True if an event with these attributes is selected.
    pub fn matches(&self, event: &crate::StoredEvent<impl Sized>) -> bool {
        let h = &event.header;
        self.matches_entity(event.coordinate.entity())
            && self
                .scope
                .as_deref()
                .is_none_or(|s| s == event.coordinate.scope())
            && self.kind.matches(h.kind)
            && self.clock.is_none_or(|c| c.contains(&h.clock))
            && self.time_us.is_none_or(|t| t.contains(&h.timestamp_us))
            && self.sequence.is_none_or(|s| s.contains(&h.sequence))
            && self.correlation_id.is_none_or(|c| c == h.correlation_id)
            && self.causation_id.is_none_or(|c| Some(c) == h.causation_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_from_ranges() {
        assert_eq!(to_span_u64(3..7), Span { start: 3, end: 6 });
        assert_eq!(to_span_u64(3..=7), Span { start: 3, end: 7 });
        assert_eq!(
            to_span_u64(..),
            Span {
                start: 0,
                end: u64::MAX
            }
        );
        assert!(!to_span_u64(0..0).contains(&0));
        assert_eq!(
            to_span_i64(-5..),
            Span {
                start: -5,
                end: i64::MAX
            }
        );
    }

    #[test]
    fn kind_filters() {
        let k = EventKind::custom(3, 9);
        assert!(KindFilter::Any.matches(k));
        assert!(KindFilter::Exact(k).matches(k));
        assert!(!KindFilter::Exact(EventKind::custom(3, 8)).matches(k));
        assert!(KindFilter::Category(3).matches(k));
        assert!(!KindFilter::Category(4).matches(k));
    }
}
