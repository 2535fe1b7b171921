//! An event-sourced counter: typed events, a projection, the file-backed
//! projection cache (miss, hit, incremental update), and a watcher.
//!
//! `cargo run --example event_sourced_counter`

use std::time::Duration;

use batpak::prelude::*;
use serde::{Deserialize, Serialize};

/// The counter went up.
#[derive(Debug, Serialize, Deserialize, EventPayload)]
#[batpak(category = 0x1, type_id = 1)]
struct Incremented {
    by: u64,
}

/// The counter went back to zero.
#[derive(Debug, Serialize, Deserialize, EventPayload)]
#[batpak(category = 0x1, type_id = 2)]
struct Reset {
    reason: String,
}

/// The state folded from a counter's events.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    value: u64,
    resets: u32,
}

impl EventSourced for Counter {
    const RELEVANT_KINDS: &'static [EventKind] = &[Incremented::KIND, Reset::KIND];
    const SCHEMA_VERSION: u16 = 1;

    fn initial() -> Self {
        Counter::default()
    }

    fn apply(&mut self, event: &StoredEvent) {
        if let Ok(incremented) = event.payload_as::<Incremented>() {
            self.value += incremented.by;
        } else if event.kind() == Reset::KIND {
            self.value = 0;
            self.resets += 1;
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig::new(dir.path()))?;
    let clicks = Coordinate::new("counter:clicks", "demo")?;

    for by in [1, 2, 3] {
        store.append_typed(&clicks, &Incremented { by })?;
    }
    store.append_typed(
        &clicks,
        &Reset {
            reason: "new day".into(),
        },
    )?;
    store.append_typed(&clicks, &Incremented { by: 10 })?;

    // Plain projection: fold while reading, no cache.
    let counter: Counter = store.project("counter:clicks", Freshness::Consistent)?;
    println!("projected without a cache: {counter:?}");

    // The same through the file cache under <store dir>/projections/.
    let cache = FileCache::for_store(&store)?;
    let key = batpak::projection::CacheKey::of::<Counter>();
    println!("cache key: {}", key.as_str());
    for round in 1..=2 {
        let projected =
            store.project_with::<Counter, _>(&cache, "counter:clicks", Freshness::Consistent)?;
        println!(
            "round {round}: {:?} at clock {} ({:?})",
            projected.state, projected.position.clock, projected.outcome
        );
    }
    store.append_typed(&clicks, &Incremented { by: 5 })?;
    let projected =
        store.project_with::<Counter, _>(&cache, "counter:clicks", Freshness::Consistent)?;
    println!(
        "after one more event: {:?} ({:?})",
        projected.state, projected.outcome
    );

    // A watcher wakes up when the counter changes.
    let mut watcher = store.watch::<Counter>("counter:clicks")?;
    let (seen, written) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            store.append_typed(&clicks, &Incremented { by: 100 })
        });
        let seen = watcher
            .wait(Duration::from_secs(5))
            .map(|state| state.map(|counter| counter.value));
        (seen, writer.join())
    });
    written.map_err(|_| "writer thread panicked")??;
    if let Some(value) = seen? {
        println!("watcher saw the counter change to {value}");
    }

    store.close()?;
    Ok(())
}
