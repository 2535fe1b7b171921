//! The first five minutes: open a store, append, read back, close.
//!
//! Runs the README's quickstart on a temporary directory:
//! `cargo run --example quickstart`.

use batpak::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("batpak-data");

    // The quickstart from the README, on a temporary directory.
    let config = StoreConfig::new(&data)
        .with_sync_every_n_events(100)
        .with_sync_mode(SyncMode::SyncData);
    let store = Store::open(config)?;

    let coord = Coordinate::new("player:alice", "room:dungeon")?;
    let kind = EventKind::custom(0xF, 1);
    let receipt = store.append(&coord, kind, &serde_json::json!({"x": 10, "y": 20}))?;
    println!("stored {} at {}", receipt.event_id, receipt.sequence);

    // A second move, this time insisting that nobody else moved alice first.
    let moved = store.append_with_options(
        &coord,
        kind,
        &serde_json::json!({"x": 11, "y": 20}),
        AppendOptions::new().expect_clock(receipt.clock),
    )?;
    println!(
        "stored {} at {} (alice's clock is now {})",
        moved.event_id, moved.sequence, moved.clock
    );

    // Read it back: by id, and as alice's stream.
    let event = store
        .get(receipt.event_id)?
        .ok_or("the event we just stored is missing")?;
    println!(
        "read back {} by id: kind {}, payload {}",
        event.header.event_id, event.header.kind, event.payload
    );
    for event in store.stream("player:alice") {
        let event = event?;
        println!(
            "  clock {} @ {}: {}",
            event.header.clock, event.coordinate, event.payload
        );
    }

    let closed = store.close()?;
    println!("closed cleanly; {} events on disk", closed.next_sequence);

    // Reopen: everything acknowledged is still there.
    let store = Store::open(StoreConfig::new(&data))?;
    println!(
        "reopened: {} events, alice at clock {}, opened in {:?}",
        store.stats().events,
        store.entity_clock("player:alice"),
        store.open_report().duration
    );
    store.close()?;
    Ok(())
}
