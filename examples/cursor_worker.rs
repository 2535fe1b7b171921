//! A supervised cursor worker and a reactor: `cargo run --example cursor_worker`.
//!
//! Orders arrive in a shop. A reactor answers each `OrderPlaced` with an
//! `InvoiceIssued` event (correlated with the order and caused by it). A
//! worker tallies revenue from the invoices; its handler crashes once on a
//! suspicious amount, and the worker restarts it from the last committed
//! position, so no invoice is lost and the tally stays right.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use batpak::feed::{Reactor, WorkerExit};
use batpak::prelude::*;
use serde_json::json;

const ORDER_PLACED: EventKind = EventKind::custom(0x5, 1);
const INVOICE_ISSUED: EventKind = EventKind::custom(0x5, 2);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(Store::open(
        StoreConfig::new(dir.path()).with_sync_every_n_events(100),
    )?);

    let reactor = Reactor::spawn(
        Arc::clone(&store),
        "invoicing",
        &Region::all().with_kind(KindFilter::Exact(ORDER_PLACED)),
        WorkerPolicy::default(),
        |order, reactions| {
            let invoice =
                Coordinate::new(format!("invoice:{}", order.coordinate.entity()), "billing")?;
            let amount = order.payload["amount"].as_u64().unwrap_or(0);
            reactions.emit(&invoice, INVOICE_ISSUED, &json!({ "amount": amount }))?;
            Ok(())
        },
    )?;

    let revenue = Arc::new(Mutex::new(0u64));
    let crashed_once = Arc::new(AtomicBool::new(false));
    let tally = {
        let revenue = Arc::clone(&revenue);
        let crashed_once = Arc::clone(&crashed_once);
        let invoices = Region::all().with_kind(KindFilter::Exact(INVOICE_ISSUED));
        let policy = WorkerPolicy::default()
            .with_batch_max(4)
            .with_backoff(Duration::from_millis(5), Duration::from_millis(100));
        CursorWorker::spawn(
            store.named_cursor("revenue", &invoices)?,
            policy,
            move |batch| {
                // Work on a copy and publish it only when the whole batch is done,
                // so a crash half-way through leaves the tally untouched.
                let mut total = *revenue.lock().map_err(|_| "poisoned")?;
                for invoice in batch {
                    let amount = invoice.payload["amount"].as_u64().unwrap_or(0);
                    if amount == 999 && !crashed_once.swap(true, Ordering::SeqCst) {
                        panic!(
                            "the tally handler choked on invoice {}",
                            invoice.header.sequence
                        );
                    }
                    total += amount;
                }
                *revenue.lock().map_err(|_| "poisoned")? = total;
                Ok(())
            },
        )?
    };

    let mut expected = 0;
    for (n, amount) in [10u64, 25, 999, 40, 5, 60, 7].into_iter().enumerate() {
        let order = Coordinate::new(format!("order:{n}"), "shop")?;
        store.append(&order, ORDER_PLACED, &json!({ "amount": amount }))?;
        expected += amount;
    }
    while tally.events_handled() < 7 {
        std::thread::sleep(Duration::from_millis(5));
    }
    reactor.stop();
    let reactions = reactor.join();
    tally.stop();
    let report = tally.join();
    println!(
        "reactor: {} orders invoiced ({} restarts)",
        reactions.events, reactions.restarts
    );
    println!(
        "tally: {} invoices in {} batches, {} restart(s) after the deliberate panic above, committed at {}",
        report.events, report.batches, report.restarts, report.committed_position
    );
    assert!(matches!(report.exit, WorkerExit::Stopped));
    let total = *revenue.lock().map_err(|_| "poisoned")?;
    println!("revenue: {total} (expected {expected})");
    assert_eq!(total, expected);

    // Each invoice names its order as cause and shares its correlation.
    for invoice in store.query(&Region::all().with_kind(KindFilter::Exact(INVOICE_ISSUED))) {
        let invoice = invoice?;
        let cause = invoice
            .header
            .causation_id
            .ok_or("an invoice without a cause")?;
        let order = store.get(cause)?.ok_or("cause not found")?;
        println!(
            "{} <- caused by {} (correlation {})",
            invoice.coordinate.entity(),
            order.coordinate.entity(),
            invoice.header.correlation_id
        );
    }

    // The reactor and the worker have let go: the store can close cleanly.
    let store = Arc::try_unwrap(store).map_err(|_| "store still shared")?;
    store.close()?;
    Ok(())
}
