//! The W1 loop alone, for profiling the append path under
//! `valgrind --tool=callgrind` (where the full harness is too slow):
//! `N` single appends of the standard ~150-byte payload with
//! `sync_every_n_events(1000)`, into a fresh directory given as the first
//! argument (default: a new folder under the system temporary directory).
//!
//! ```sh
//! cargo build --release -p batpak-bench --example append_profile
//! valgrind --tool=callgrind --callgrind-out-file=w1.callgrind \
//!     target/release/examples/append_profile /tmp/w1-profile 20000
//! callgrind_annotate w1.callgrind | head -40
//! ```

use batpak::{Coordinate, EventKind, Store, StoreConfig};
use serde::Serialize;

#[derive(Serialize)]
struct Payload<'a> {
    user: &'a str,
    amount: u64,
    note: &'a str,
}

const NOTE: &str = "payment received for order; customer asked for gift wrapping and a delivery slot in the morning (ticket 42)";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map_or_else(
        || std::env::temp_dir().join(format!("batpak-append-profile-{}", std::process::id())),
        std::path::PathBuf::from,
    );
    let n: usize = args.next().map_or(Ok(20_000), |s| s.parse())?;
    let sync_every: u32 = args.next().map_or(Ok(1000), |s| s.parse())?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let coordinates = (0..1000)
        .map(|i| Coordinate::new(format!("entity-{i}"), "bench"))
        .collect::<Result<Vec<_>, _>>()?;
    let users: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    let store = Store::open(StoreConfig::new(&dir).with_sync_every_n_events(sync_every))?;
    let started = std::time::Instant::now();
    let mut lat: Vec<u64> = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = std::time::Instant::now();
        let payload = Payload {
            user: &users[(i / 3) % 1000],
            amount: (i as u64).wrapping_mul(7919) % 1_000_000,
            note: NOTE,
        };
        store.append(
            &coordinates[i % 1000],
            EventKind::custom(1, (i % 4) as u16),
            &payload,
        )?;
        lat.push(t0.elapsed().as_nanos() as u64);
    }
    if std::env::var("HIST").is_ok() {
        let edges = [
            1000u64,
            1500,
            2000,
            5000,
            10_000,
            50_000,
            100_000,
            1_000_000,
            u64::MAX,
        ];
        let mut lo = 0;
        for hi in edges {
            let (c, s) = lat
                .iter()
                .filter(|&&l| l >= lo && l < hi)
                .fold((0u64, 0u64), |(c, s), &l| (c + 1, s + l));
            eprintln!("[{lo}..{hi}) ns: {c} ops, {:.1} ms", s as f64 / 1e6);
            lo = hi;
        }
    }
    let elapsed = started.elapsed();
    store.close()?;
    eprintln!(
        "{n} appends in {:.1} ms ({:.0}/s)",
        elapsed.as_secs_f64() * 1e3,
        n as f64 / elapsed.as_secs_f64()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
