//! Typed events: kinds bound to types, one encoding for every write path,
//! upcasting on read.

use batpak::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventPayload)]
#[batpak(category = 0xF, type_id = 1)]
struct Moved {
    x: i64,
    y: i64,
    label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventPayload)]
#[batpak(category = 0xF, type_id = 2)]
struct Shouted {
    words: Vec<String>,
}

/// Version 0 of a renamed event, as an older build of the program wrote it.
mod v0 {
    use super::*;
    #[derive(Debug, Serialize, Deserialize, EventPayload)]
    #[batpak(category = 0x2, type_id = 0x10)]
    pub struct Registered {
        pub name: String,
    }
}

/// Version 1: `name` became `full_name`.
mod v1 {
    use super::*;
    #[derive(Debug, Serialize, Deserialize, EventPayload)]
    #[batpak(category = 0x2, type_id = 0x10, version = 1)]
    pub struct Registered {
        pub full_name: String,
    }
}

/// Version 2, the current one: `email` was added. Upcasters per step.
#[derive(Debug, PartialEq, Serialize, Deserialize, EventPayload)]
#[batpak(category = 0x2, type_id = 0x10, version = 2, upcast = upcast_registered)]
struct Registered {
    full_name: String,
    email: Option<String>,
}

fn upcast_registered(
    from_version: u16,
    mut payload: batpak::typed::Value,
) -> Result<batpak::typed::Value, UpcastError> {
    match from_version {
        0 => {
            let name = payload
                .get_mut("name")
                .map(std::mem::take)
                .ok_or_else(|| UpcastError::new("version 0 payload without `name`"))?;
            Ok(serde_json::json!({ "full_name": name }))
        }
        1 => {
            payload["email"] = serde_json::Value::Null;
            Ok(payload)
        }
        other => Err(UpcastError::unsupported(other)),
    }
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    (dir, store)
}

fn moved(n: i64) -> Moved {
    Moved {
        x: n,
        y: -n,
        label: format!("step \"{n}\" ✓"),
    }
}

#[test]
fn derive_binds_kind_and_version() {
    assert_eq!(<Moved as EventPayload>::KIND, EventKind::custom(0xF, 1));
    assert_eq!(<Moved as EventPayload>::SCHEMA_VERSION, 0);
    assert_eq!(<Registered as EventPayload>::SCHEMA_VERSION, 2);
    assert_eq!(
        <Registered as EventPayload>::KIND,
        EventKind::custom(0x2, 0x10)
    );
}

#[test]
fn every_write_path_reads_back_the_same_value() {
    let (_dir, store) = open();
    let coord = Coordinate::new("player:1", "game").unwrap();

    let typed = store.append_typed(&coord, &moved(1)).unwrap();
    let untyped = store.append(&coord, Moved::KIND, &moved(2)).unwrap();
    let with_options = store
        .append_typed_with_options(&coord, &moved(3), AppendOptions::new().expect_clock(2))
        .unwrap();
    let mut batch = Batch::new();
    batch.add_typed(&coord, &moved(4)).unwrap();
    batch.push(BatchItem::typed(&coord, &moved(5)).unwrap());
    batch.add(&coord, Moved::KIND, &moved(6)).unwrap();
    let batched = store.append_batch(&batch).unwrap();

    let ids = [typed, untyped, with_options]
        .into_iter()
        .chain(batched)
        .map(|receipt| receipt.event_id);
    for (n, id) in (1..).zip(ids) {
        let event = store.get_as::<Moved>(id).unwrap().unwrap();
        assert_eq!(event.payload, moved(n));
        assert_eq!(event.header.clock, n as u64);
        // The untyped read sees the same JSON whatever the write path.
        let raw = store.get(id).unwrap().unwrap();
        assert_eq!(raw.payload, serde_json::to_value(moved(n)).unwrap());
        // The plain decode agrees with the typed one.
        assert_eq!(
            store.get_typed::<Moved>(id).unwrap().unwrap().payload,
            moved(n)
        );
    }

    let streamed: Vec<Moved> = store
        .stream_as::<Moved>("player:1")
        .map(|event| event.unwrap().payload)
        .collect();
    assert_eq!(streamed, (1..=6).map(moved).collect::<Vec<_>>());
}

#[test]
fn typed_streams_skip_other_kinds_and_typed_gets_check_the_kind() {
    let (_dir, store) = open();
    let coord = Coordinate::new("player:1", "game").unwrap();
    store.append_typed(&coord, &moved(1)).unwrap();
    let shout = store
        .append_typed(
            &coord,
            &Shouted {
                words: vec!["hi".into()],
            },
        )
        .unwrap();
    store.append_typed(&coord, &moved(2)).unwrap();

    let clocks: Vec<u64> = store
        .stream_as::<Moved>("player:1")
        .map(|event| event.unwrap().header.clock)
        .collect();
    assert_eq!(clocks, [1, 3]);
    let shouts: Vec<Shouted> = store
        .query_as::<Shouted>(&Region::scope("game"))
        .map(|event| event.unwrap().payload)
        .collect();
    assert_eq!(
        shouts,
        [Shouted {
            words: vec!["hi".into()]
        }]
    );

    match store.get_as::<Moved>(shout.event_id) {
        Err(TypedError::KindMismatch {
            expected, found, ..
        }) => {
            assert_eq!(expected, Moved::KIND);
            assert_eq!(found, Shouted::KIND);
        }
        other => panic!("expected a kind mismatch, got {other:?}"),
    }
    let missing = EventId::from_bytes([1; 16]);
    assert!(store.get_as::<Moved>(missing).unwrap().is_none());
}

#[test]
fn older_payloads_are_upcast_on_read_after_a_version_bump() {
    let (_dir, store) = open();
    let coord = Coordinate::new("user:ada", "accounts").unwrap();
    let old = store
        .append_typed(&coord, &v0::Registered { name: "Ada".into() })
        .unwrap();
    let middle = store
        .append_typed(
            &coord,
            &v1::Registered {
                full_name: "Ada L.".into(),
            },
        )
        .unwrap();
    let new = store
        .append_typed(
            &coord,
            &Registered {
                full_name: "Ada Lovelace".into(),
                email: Some("ada@example.org".into()),
            },
        )
        .unwrap();

    let versions: Vec<u16> = store
        .stream("user:ada")
        .map(|event| event.unwrap().header.schema_version)
        .collect();
    assert_eq!(versions, [0, 1, 2], "each write records its type's version");

    let read = |id| store.get_as::<Registered>(id).unwrap().unwrap().payload;
    assert_eq!(
        read(old.event_id),
        Registered {
            full_name: "Ada".into(),
            email: None
        }
    );
    assert_eq!(
        read(middle.event_id),
        Registered {
            full_name: "Ada L.".into(),
            email: None
        }
    );
    assert_eq!(read(new.event_id).email.as_deref(), Some("ada@example.org"));
    assert_eq!(store.stream_as::<Registered>("user:ada").count(), 3);
    // Projections decode through the same path.
    let event = store.get(old.event_id).unwrap().unwrap();
    assert_eq!(event.payload_as::<Registered>().unwrap().full_name, "Ada");
}

#[test]
fn payloads_from_a_newer_schema_are_a_typed_error() {
    let (_dir, store) = open();
    let coord = Coordinate::new("user:bob", "accounts").unwrap();
    let newer = store
        .append_typed(
            &coord,
            &Registered {
                full_name: "Bob".into(),
                email: None,
            },
        )
        .unwrap();
    match store.get_as::<v1::Registered>(newer.event_id) {
        Err(TypedError::NewerVersion {
            stored, supported, ..
        }) => assert_eq!((stored, supported), (2, 1)),
        other => panic!("expected NewerVersion, got {other:?}"),
    }
    // v0 has no upcaster and a v1 payload is newer than it, too.
    let v1_event = store
        .append_typed(
            &coord,
            &v1::Registered {
                full_name: "Bob B.".into(),
            },
        )
        .unwrap();
    assert!(matches!(
        store.get_as::<v0::Registered>(v1_event.event_id),
        Err(TypedError::NewerVersion {
            stored: 1,
            supported: 0,
            ..
        })
    ));
}

#[test]
fn a_failing_upcaster_is_reported_with_its_step() {
    let (_dir, store) = open();
    let coord = Coordinate::new("user:eve", "accounts").unwrap();
    // A version-0 payload without the `name` the upcaster needs.
    let broken = store
        .append_with_options(
            &coord,
            Registered::KIND,
            &serde_json::json!({"nickname": "eve"}),
            AppendOptions::new().schema_version(0),
        )
        .unwrap();
    match store.get_as::<Registered>(broken.event_id) {
        Err(TypedError::Upcast {
            from_version,
            source,
            ..
        }) => {
            assert_eq!(from_version, 0);
            assert_eq!(source.reason(), "version 0 payload without `name`");
        }
        other => panic!("expected an upcast error, got {other:?}"),
    }
}

#[test]
fn a_hand_written_payload_in_a_reserved_category_is_refused_by_the_store() {
    #[derive(Serialize, Deserialize)]
    struct Sneaky;
    impl EventPayload for Sneaky {
        const KIND: EventKind = EventKind::custom(0xD, 1);
    }
    let (_dir, store) = open();
    let coord = Coordinate::new("x", "y").unwrap();
    assert!(matches!(
        store.append_typed(&coord, &Sneaky),
        Err(StoreError::ReservedKind { .. })
    ));
}

mod round_trip {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// Any value, through any write path, reads back equal, typed and untyped.
        #[test]
        fn any_value_reads_back_the_same_through_every_path(
            x in any::<i64>(),
            y in any::<i64>(),
            label in any::<String>(),
        ) {
            let (_dir, store) = open();
            let coord = Coordinate::new("player:p", "game").unwrap();
            let value = Moved { x, y, label };
            let mut batch = Batch::new();
            batch.add_typed(&coord, &value).unwrap();
            batch.add(&coord, Moved::KIND, &value).unwrap();
            let mut receipts = vec![
                store.append_typed(&coord, &value).unwrap(),
                store.append(&coord, Moved::KIND, &value).unwrap(),
            ];
            receipts.extend(store.append_batch(&batch).unwrap());
            let expected_json = serde_json::to_value(&value).unwrap();
            for receipt in receipts {
                let typed = store.get_as::<Moved>(receipt.event_id).unwrap().unwrap();
                prop_assert_eq!(&typed.payload, &value);
                let raw = store.get(receipt.event_id).unwrap().unwrap();
                prop_assert_eq!(&raw.payload, &expected_json);
            }
        }
    }
}
