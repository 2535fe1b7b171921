//! Typestate workflows: transitions persist as events, state rebuilds from
//! the log, races and tampered logs are caught.

use batpak::prelude::*;
use batpak::typestate::TransitionRecord;

const ORDER_KIND: EventKind = EventKind::custom(0x5, 1);

batpak::typestate! {
    /// An order.
    pub machine Order {
        kind: ORDER_KIND,
        states: enum OrderState { Draft, Placed, Shipped, Cancelled },
        initial: Draft,
        transitions: {
            place(u32): Draft => Placed,
            ship: Placed => Shipped,
            cancel: Placed => Cancelled,
            discard: Draft => Cancelled,
        }
    }
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    (dir, store)
}

#[test]
fn each_transition_is_one_event_and_load_rebuilds_the_state() {
    let (_dir, store) = open();
    let coord = Coordinate::new("order:1", "shop").unwrap();
    let order = Order::start(&store, &coord).unwrap();
    assert_eq!(store.entity_clock("order:1"), 0, "starting writes nothing");
    let order: Order<Placed> = order.place(&store, &3).unwrap();
    assert!(matches!(
        OrderState::load(&store, &coord).unwrap(),
        OrderState::Placed(_)
    ));
    let order: Order<Shipped> = order.ship(&store).unwrap();
    assert_eq!(order.clock(), 2);

    let records: Vec<TransitionRecord> = store
        .stream("order:1")
        .map(|event| {
            let event = event.unwrap();
            assert_eq!(event.kind(), ORDER_KIND);
            serde_json::from_value(event.payload).unwrap()
        })
        .collect();
    let steps: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| (r.transition.as_str(), r.from.as_str(), r.to.as_str()))
        .collect();
    assert_eq!(
        steps,
        [("place", "Draft", "Placed"), ("ship", "Placed", "Shipped")]
    );
    assert_eq!(records[0].data, serde_json::json!(3));
    assert_eq!(records[0].machine, "Order");

    // After a restart, the state comes back from the log.
    let loaded = OrderState::load(&store, &coord).unwrap();
    assert_eq!((loaded.name(), loaded.clock()), ("Shipped", 2));
}

#[test]
fn a_loaded_handle_continues_the_workflow() {
    let (dir, store) = open();
    let coord = Coordinate::new("order:2", "shop").unwrap();
    Order::start(&store, &coord)
        .unwrap()
        .place(&store, &1)
        .unwrap();
    store.close().unwrap();

    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let OrderState::Placed(order) = OrderState::load(&store, &coord).unwrap() else {
        panic!("expected Placed");
    };
    let cancelled: Order<Cancelled> = order.cancel(&store).unwrap();
    assert_eq!(cancelled.clock(), 2);
    assert_eq!(
        OrderState::load(&store, &coord).unwrap().name(),
        "Cancelled"
    );
}

#[test]
fn two_handles_racing_on_one_entity_cannot_both_move_it() {
    let (_dir, store) = open();
    let coord = Coordinate::new("order:3", "shop").unwrap();
    Order::start(&store, &coord)
        .unwrap()
        .place(&store, &1)
        .unwrap();
    let (OrderState::Placed(first), OrderState::Placed(second)) = (
        OrderState::load(&store, &coord).unwrap(),
        OrderState::load(&store, &coord).unwrap(),
    ) else {
        panic!("expected Placed twice");
    };
    first.ship(&store).unwrap();
    match second.cancel(&store) {
        Err(TypestateError::Store(StoreError::ClockMismatch {
            expected: 1,
            actual: 2,
        })) => {}
        other => panic!("expected a clock mismatch, got {other:?}"),
    }
    assert_eq!(OrderState::load(&store, &coord).unwrap().name(), "Shipped");
    assert!(matches!(
        Order::start(&store, &coord),
        Err(TypestateError::AlreadyStarted { clock: 2, .. })
    ));
}

#[test]
fn a_log_with_an_undeclared_transition_is_refused() {
    let (_dir, store) = open();
    let coord = Coordinate::new("order:4", "shop").unwrap();
    // Written around the typestate API: Draft => Shipped is not declared.
    store
        .append(
            &coord,
            ORDER_KIND,
            &TransitionRecord {
                machine: "Order".into(),
                transition: "ship".into(),
                from: "Draft".into(),
                to: "Shipped".into(),
                data: serde_json::Value::Null,
            },
        )
        .unwrap();
    match OrderState::load(&store, &coord) {
        Err(TypestateError::IllegalTransition { clock, state, .. }) => {
            assert_eq!((clock, state), (1, "Draft"));
        }
        other => panic!("expected an illegal transition, got {other:?}"),
    }
    let garbage = Coordinate::new("order:5", "shop").unwrap();
    store.append(&garbage, ORDER_KIND, &"not a record").unwrap();
    assert!(matches!(
        OrderState::load(&store, &garbage),
        Err(TypestateError::IllegalTransition { .. })
    ));
}

#[test]
fn other_kinds_on_the_entity_are_ignored_by_replay() {
    let (_dir, store) = open();
    let coord = Coordinate::new("order:6", "shop").unwrap();
    let order = Order::start(&store, &coord)
        .unwrap()
        .place(&store, &2)
        .unwrap();
    store
        .append(&coord, EventKind::custom(0x5, 2), &"a note")
        .unwrap();
    // The handle's clock is now stale: the workflow owns its entity.
    assert!(order.ship(&store).is_err());
    let OrderState::Placed(order) = OrderState::load(&store, &coord).unwrap() else {
        panic!("expected Placed");
    };
    assert_eq!(order.clock(), 2);
    order.ship(&store).unwrap();
}
