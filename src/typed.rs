//! Typed events: a Rust type bound to its [`EventKind`] and schema version,
//! with upcasters that turn older payloads into the current shape on read.
//!
//! A type becomes an event with `#[derive(EventPayload)]` (or a hand-written
//! impl of [`EventPayload`]). Appending it needs no kind argument and records
//! the type's [`EventPayload::SCHEMA_VERSION`] in the event header; typed reads
//! check the kind, upcast payloads written at an older version one step at a
//! time, and refuse payloads written by a newer program
//! ([`TypedError::NewerVersion`]) rather than guess.
//!
//! Every write path (typed or untyped, single or batch) stores the same
//! compact JSON, so a value reads back the same whichever path wrote it.
//!
//! ```
//! use batpak::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize, EventPayload)]
//! #[batpak(category = 0x1, type_id = 7)]
//! struct Deposited { cents: u64 }
//!
//! # let dir = tempfile::tempdir()?;
//! let store = Store::open(StoreConfig::new(dir.path()))?;
//! let account = Coordinate::new("account:1", "bank")?;
//! let receipt = store.append_typed(&account, &Deposited { cents: 500 })?;
//! let event = store.get_as::<Deposited>(receipt.event_id)?.expect("just written");
//! assert_eq!(event.payload, Deposited { cents: 500 });
//! # store.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::EventIter;
use crate::{
    AppendOptions, AppendReceipt, Batch, BatchItem, Coordinate, EventId, EventKind, KindFilter,
    Region, Store, StoreError, StoredEvent,
};

/// The JSON value upcasters work on (re-exported so derived code and
/// upcasters need no direct `serde_json` dependency).
pub use serde_json::Value;

/// A Rust type stored as events of one [`EventKind`].
///
/// Derive it with `#[derive(EventPayload)]` and
/// `#[batpak(category = C, type_id = T, version = V, upcast = path)]`;
/// `version` defaults to 0 and `upcast` to "no older versions supported".
pub trait EventPayload: Serialize + DeserializeOwned {
    /// The kind every event of this type is stored with. Must not be in a
    /// reserved category (the derive rejects those at compile time; the store
    /// rejects them at append time).
    const KIND: EventKind;

    /// The schema version new events of this type are written with.
    const SCHEMA_VERSION: u16 = 0;

    /// Turns a payload written at schema version `from_version` into the
    /// payload of version `from_version + 1`.
    ///
    /// Reads call it repeatedly, from the stored version up to
    /// [`EventPayload::SCHEMA_VERSION`], so each version bump adds one step
    /// and older steps never change. The default knows no older version.
    fn upcast(from_version: u16, payload: Value) -> Result<Value, UpcastError> {
        let _ = payload;
        Err(UpcastError::unsupported(from_version))
    }
}

/// Why an upcaster could not convert a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct UpcastError {
    reason: String,
}

impl UpcastError {
    /// An upcast failure with a reason.
    pub fn new(reason: impl Into<String>) -> Self {
        UpcastError {
            reason: reason.into(),
        }
    }

    /// The error for a version the type has no upcaster for.
    pub fn unsupported(from_version: u16) -> Self {
        UpcastError::new(format!("no upcaster from schema version {from_version}"))
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Why a typed read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TypedError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The event's payload was redacted by compaction.
    #[error("event {event_id} was redacted: its payload is gone")]
    Redacted {
        /// The event.
        event_id: EventId,
    },
    /// The event is of another kind than the type expects.
    #[error("event {event_id} is of kind {found}, not {expected}")]
    KindMismatch {
        /// The event.
        event_id: EventId,
        /// The type's kind.
        expected: EventKind,
        /// The stored kind.
        found: EventKind,
    },
    /// The event was written by a newer schema than this program knows.
    #[error(
        "event {event_id} has schema version {stored}, newer than version {supported} known here"
    )]
    NewerVersion {
        /// The event.
        event_id: EventId,
        /// The stored schema version.
        stored: u16,
        /// The type's [`EventPayload::SCHEMA_VERSION`].
        supported: u16,
    },
    /// An upcaster refused the payload.
    #[error("event {event_id}: upcasting from schema version {from_version} failed: {source}")]
    Upcast {
        /// The event.
        event_id: EventId,
        /// The version the failing step started from.
        from_version: u16,
        /// The upcaster's error.
        #[source]
        source: UpcastError,
    },
    /// The (upcast) payload does not decode into the type.
    #[error("event {event_id}: payload does not decode: {source}")]
    Decode {
        /// The event.
        event_id: EventId,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

/// Decodes one payload stored at `stored_version` into `T`, upcasting if needed.
fn decode_payload<T: EventPayload>(
    event_id: EventId,
    stored_version: u16,
    payload: Cow<'_, Value>,
) -> Result<T, TypedError> {
    let current = T::SCHEMA_VERSION;
    if stored_version > current {
        return Err(TypedError::NewerVersion {
            event_id,
            stored: stored_version,
            supported: current,
        });
    }
    let decode_error = |source| TypedError::Decode { event_id, source };
    if stored_version == current {
        // Deserializing from a borrowed `Value` avoids cloning the payload.
        return T::deserialize(payload.as_ref()).map_err(decode_error);
    }
    let mut value = payload.into_owned();
    for from_version in stored_version..current {
        value = T::upcast(from_version, value).map_err(|source| TypedError::Upcast {
            event_id,
            from_version,
            source,
        })?;
    }
    T::deserialize(value).map_err(decode_error)
}

fn check_kind<T: EventPayload>(event: &StoredEvent) -> Result<(), TypedError> {
    if event.header.kind != T::KIND {
        return Err(TypedError::KindMismatch {
            event_id: event.header.event_id,
            expected: T::KIND,
            found: event.header.kind,
        });
    }
    Ok(())
}

impl StoredEvent {
    /// Decodes the payload into `T`, checking the kind and upcasting from the
    /// stored schema version. Borrows the event, so a projection can call it
    /// from [`EventSourced::apply`](crate::projection::EventSourced::apply).
    pub fn payload_as<T: EventPayload>(&self) -> Result<T, TypedError> {
        check_kind::<T>(self)?;
        decode_payload(
            self.header.event_id,
            self.header.schema_version,
            Cow::Borrowed(&self.payload),
        )
    }

    /// Turns the event into a typed one (see [`StoredEvent::payload_as`]).
    pub fn decode<T: EventPayload>(self) -> Result<StoredEvent<T>, TypedError> {
        check_kind::<T>(&self)?;
        if self.redacted {
            return Err(TypedError::Redacted {
                event_id: self.header.event_id,
            });
        }
        let payload = decode_payload(
            self.header.event_id,
            self.header.schema_version,
            Cow::Owned(self.payload),
        )?;
        Ok(StoredEvent {
            coordinate: self.coordinate,
            header: self.header,
            payload,
            hash: self.hash,
            redacted: self.redacted,
        })
    }
}

impl BatchItem {
    /// A batch item for a typed event: its kind and schema version come from `T`.
    pub fn typed<T: EventPayload>(coordinate: &Coordinate, value: &T) -> Result<Self, StoreError> {
        Ok(BatchItem::new(coordinate, T::KIND, value)?.schema_version(T::SCHEMA_VERSION))
    }
}

impl Batch {
    /// Adds a typed event with default options; returns its position.
    pub fn add_typed<T: EventPayload>(
        &mut self,
        coordinate: &Coordinate,
        value: &T,
    ) -> Result<usize, StoreError> {
        Ok(self.push(BatchItem::typed(coordinate, value)?))
    }
}

impl Store {
    /// Appends a typed event: kind and schema version come from `T`.
    pub fn append_typed<T: EventPayload>(
        &self,
        coordinate: &Coordinate,
        value: &T,
    ) -> Result<AppendReceipt, StoreError> {
        self.append_typed_with_options(coordinate, value, AppendOptions::default())
    }

    /// Appends a typed event with options. The schema version is always
    /// `T::SCHEMA_VERSION`, whatever `options` says.
    pub fn append_typed_with_options<T: EventPayload>(
        &self,
        coordinate: &Coordinate,
        value: &T,
        options: AppendOptions,
    ) -> Result<AppendReceipt, StoreError> {
        let options = options.schema_version(T::SCHEMA_VERSION);
        self.append_with_options(coordinate, T::KIND, value, options)
    }

    /// One event by id, decoded into `T` (kind checked, older versions upcast).
    /// `Ok(None)` if no event has this id.
    pub fn get_as<T: EventPayload>(
        &self,
        event_id: EventId,
    ) -> Result<Option<StoredEvent<T>>, TypedError> {
        match self.get(event_id)? {
            Some(event) => event.decode().map(Some),
            None => Ok(None),
        }
    }

    /// One entity's events of kind `T::KIND`, in clock order, decoded into `T`.
    /// Events of other kinds are skipped. Lazy: events are read as the
    /// iterator advances.
    pub fn stream_as<T: EventPayload>(&self, entity: &str) -> TypedEvents<T> {
        let region = Region::entity(entity).with_kind(KindFilter::Exact(T::KIND));
        TypedEvents::new(self.query(&region))
    }

    /// The events `region` selects that are of kind `T::KIND`, in sequence
    /// order, decoded into `T`.
    pub fn query_as<T: EventPayload>(&self, region: &Region) -> TypedEvents<T> {
        TypedEvents::new(self.query(region))
    }
}

/// A lazy iterator of typed events (see [`Store::stream_as`]).
pub struct TypedEvents<T> {
    inner: EventIter,
    _type: PhantomData<fn() -> T>,
}

impl<T> TypedEvents<T> {
    fn new(inner: EventIter) -> Self {
        TypedEvents {
            inner,
            _type: PhantomData,
        }
    }
}

impl<T: EventPayload> Iterator for TypedEvents<T> {
    type Item = Result<StoredEvent<T>, TypedError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let event = match self.inner.next()? {
                Ok(event) => event,
                Err(error) => return Some(Err(error.into())),
            };
            if event.header.kind == T::KIND {
                return Some(event.decode());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Renamed {
        full_name: String,
        age: u32,
    }

    impl EventPayload for Renamed {
        const KIND: EventKind = EventKind::custom(0x2, 3);
        const SCHEMA_VERSION: u16 = 2;

        fn upcast(from_version: u16, mut payload: Value) -> Result<Value, UpcastError> {
            match from_version {
                // v0 -> v1: `name` became `full_name`.
                0 => {
                    let name = payload
                        .get_mut("name")
                        .map(Value::take)
                        .ok_or_else(|| UpcastError::new("v0 payload has no `name`"))?;
                    Ok(json!({ "full_name": name }))
                }
                // v1 -> v2: `age` added, unknown ages are 0.
                1 => {
                    payload["age"] = json!(0);
                    Ok(payload)
                }
                other => Err(UpcastError::unsupported(other)),
            }
        }
    }

    fn id() -> EventId {
        EventId::from_bytes([7; 16])
    }

    #[test]
    fn current_version_decodes_without_upcasting() {
        let value = json!({"full_name": "Ada", "age": 36});
        let decoded: Renamed = decode_payload(id(), 2, Cow::Borrowed(&value)).unwrap();
        assert_eq!(
            decoded,
            Renamed {
                full_name: "Ada".into(),
                age: 36
            }
        );
    }

    #[test]
    fn older_versions_are_upcast_one_step_at_a_time() {
        let v0 = json!({"name": "Ada"});
        let decoded: Renamed = decode_payload(id(), 0, Cow::Owned(v0)).unwrap();
        assert_eq!(
            decoded,
            Renamed {
                full_name: "Ada".into(),
                age: 0
            }
        );
        let v1 = json!({"full_name": "Grace"});
        let decoded: Renamed = decode_payload(id(), 1, Cow::Owned(v1)).unwrap();
        assert_eq!(
            decoded,
            Renamed {
                full_name: "Grace".into(),
                age: 0
            }
        );
    }

    #[test]
    fn newer_versions_are_refused() {
        let value = json!({"full_name": "Ada", "age": 1});
        let error = decode_payload::<Renamed>(id(), 3, Cow::Owned(value)).unwrap_err();
        assert!(matches!(
            error,
            TypedError::NewerVersion {
                stored: 3,
                supported: 2,
                ..
            }
        ));
    }

    #[test]
    fn failing_upcaster_names_the_step() {
        let error = decode_payload::<Renamed>(id(), 0, Cow::Owned(json!({"nom": 1}))).unwrap_err();
        match error {
            TypedError::Upcast {
                from_version,
                source,
                ..
            } => {
                assert_eq!(from_version, 0);
                assert_eq!(source.reason(), "v0 payload has no `name`");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn default_upcaster_supports_no_older_version() {
        #[derive(Debug, Serialize, Deserialize)]
        struct Plain {
            n: u8,
        }
        impl EventPayload for Plain {
            const KIND: EventKind = EventKind::custom(0x2, 4);
            const SCHEMA_VERSION: u16 = 1;
        }
        let error = decode_payload::<Plain>(id(), 0, Cow::Owned(json!({"n": 1}))).unwrap_err();
        assert!(matches!(
            error,
            TypedError::Upcast {
                from_version: 0,
                ..
            }
        ));
    }

    #[test]
    fn payload_as_checks_the_kind() {
        let event = StoredEvent {
            coordinate: Coordinate::new("e", "s").unwrap(),
            header: crate::EventHeader {
                event_id: id(),
                correlation_id: id(),
                causation_id: None,
                timestamp_us: 0,
                sequence: 0,
                clock: 1,
                kind: EventKind::custom(0x2, 9),
                flags: 0,
                schema_version: 2,
            },
            payload: json!({"full_name": "Ada", "age": 1}),
            hash: None,
            redacted: false,
        };
        assert!(matches!(
            event.payload_as::<Renamed>(),
            Err(TypedError::KindMismatch { .. })
        ));
        let mut event = event;
        event.header.kind = Renamed::KIND;
        assert_eq!(event.payload_as::<Renamed>().unwrap().age, 1);
        assert_eq!(event.decode::<Renamed>().unwrap().payload.full_name, "Ada");
    }
}
