//! Atomic batches: several entities at once, intra-batch causation, typed
//! items, an idempotent retry, and a rejected batch that writes nothing.
//!
//! `cargo run --example batch_append`

use batpak::prelude::*;
use serde::{Deserialize, Serialize};

/// An order was placed.
#[derive(Debug, Serialize, Deserialize, EventPayload)]
#[batpak(category = 0x3, type_id = 1)]
struct OrderPlaced {
    item: String,
    quantity: u32,
}

/// Stock was reserved for an order.
#[derive(Debug, Serialize, Deserialize, EventPayload)]
#[batpak(category = 0x3, type_id = 2)]
struct StockReserved {
    quantity: u32,
}

fn place_order(order: &Coordinate, stock: &Coordinate, quantity: u32) -> Result<Batch, StoreError> {
    let mut batch = Batch::new().idempotency_key(format!("place-{}", order.entity()));
    let placed = batch.push(
        BatchItem::typed(
            order,
            &OrderPlaced {
                item: "apple".into(),
                quantity,
            },
        )?
        .expect_clock(0),
    );
    batch.push(BatchItem::typed(stock, &StockReserved { quantity })?.caused_by_item(placed));
    Ok(batch)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig::new(dir.path()))?;
    let stock = Coordinate::new("stock:apple", "shop")?;
    let order = Coordinate::new("order:1", "shop")?;

    let batch = place_order(&order, &stock, 3)?;
    let receipts = store.append_batch(&batch)?;
    for receipt in &receipts {
        println!(
            "batch item committed: {} at sequence {}",
            receipt.event_id, receipt.sequence
        );
    }
    let reserved = store
        .get_as::<StockReserved>(receipts[1].event_id)?
        .ok_or("reservation missing")?;
    println!(
        "stock reservation of {} was caused by {:?}",
        reserved.payload.quantity, reserved.header.causation_id
    );

    // A retry after a lost acknowledgement returns the same receipts.
    let retried = store.append_batch(&batch)?;
    println!(
        "retry returned the original receipts: {}",
        retried == receipts
    );

    // A batch with one bad item (the last) is rejected whole.
    let before = store.next_sequence();
    let second_order = Coordinate::new("order:2", "shop")?;
    let mut doomed = place_order(&second_order, &stock, 1)?;
    doomed.push(BatchItem::new(&stock, EventKind::custom(0x3, 3), &"audit")?.expect_clock(99));
    match store.append_batch(&doomed) {
        Ok(_) => println!("unexpectedly accepted"),
        Err(error) => println!(
            "rejected: {error}; events before {before}, after {}",
            store.next_sequence()
        ),
    }

    let orders: Vec<u32> = store
        .query_as::<OrderPlaced>(&Region::scope("shop"))
        .map(|event| event.map(|event| event.payload.quantity))
        .collect::<Result<_, _>>()?;
    println!("orders in the log: {orders:?}");
    store.close()?;
    Ok(())
}
