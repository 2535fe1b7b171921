//! Criterion micro-benchmarks of batpak's hot paths: frame encode and
//! decode (through `batpak::fault::fuzzing`, feature `dangerous-test-hooks`),
//! and through the public API relaxed append, durable append, durable batch
//! of 100, one entity's history, a replay of the whole store, and a cursor
//! poll.
//!
//! Run with `cargo bench -p batpak-bench`. These time one operation in
//! isolation; the standard workloads and the budgets are in the
//! `batpak-bench` binary.

use std::hint::black_box;

use batpak::fault::fuzzing;
use batpak::{Batch, BatchItem, Coordinate, EventKind, Region, Store, StoreConfig};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde::Serialize;

const KIND: EventKind = EventKind::custom(0x1, 1);
const ENTITIES: usize = 100;

#[derive(Serialize)]
struct Payload<'a> {
    user: &'a str,
    amount: u64,
    note: &'a str,
}

const NOTE: &str =
    "payment received for order; customer asked for gift wrapping and a delivery slot in the morning";

fn payload(i: usize) -> Payload<'static> {
    Payload {
        user: "user-123",
        amount: i as u64,
        note: NOTE,
    }
}

fn coordinates() -> Vec<Coordinate> {
    (0..ENTITIES)
        .map(|i| Coordinate::new(format!("entity-{i}"), "bench").expect("valid coordinate"))
        .collect()
}

fn append(c: &mut Criterion) {
    let coordinates = coordinates();
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    for (name, n) in [("relaxed_n1000", 1000u32), ("durable_n1", 1)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(StoreConfig::new(dir.path()).with_sync_every_n_events(n))
            .expect("open store");
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                black_box(
                    store
                        .append(&coordinates[i % ENTITIES], KIND, &payload(i))
                        .expect("append"),
                )
            })
        });
        let _closed = store.close().expect("close");
    }
    group.finish();
}

fn batch(c: &mut Criterion) {
    let coordinates = coordinates();
    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Elements(100));
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(StoreConfig::new(dir.path())).expect("open store");
    group.bench_function("durable_100", |b| {
        b.iter_batched(
            || {
                let mut batch = Batch::new().durable();
                for i in 0..100 {
                    batch.push(
                        BatchItem::new(&coordinates[i % ENTITIES], KIND, &payload(i))
                            .expect("item"),
                    );
                }
                batch
            },
            |batch| black_box(store.append_batch(&batch).expect("batch")),
            BatchSize::SmallInput,
        )
    });
    let _closed = store.close().expect("close");
    group.finish();
}

/// A store of 10,000 events over 100 entities, for the read benchmarks.
fn filled_store(dir: &std::path::Path) -> Store {
    let coordinates = coordinates();
    let store = Store::open(StoreConfig::new(dir)).expect("open store");
    for chunk in 0..10 {
        let mut batch = Batch::new();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            batch
                .push(BatchItem::new(&coordinates[i % ENTITIES], KIND, &payload(i)).expect("item"));
        }
        store.append_batch(&batch).expect("batch");
    }
    store
}

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = filled_store(dir.path());
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(100));
    let mut e = 0usize;
    group.bench_function("entity_100_events", |b| {
        b.iter(|| {
            e = (e + 1) % ENTITIES;
            let events = store
                .stream(&format!("entity-{e}"))
                .collect::<Result<Vec<_>, _>>()
                .expect("stream");
            black_box(events.len())
        })
    });
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("replay_10k_events", |b| {
        b.iter(|| {
            let mut counts = [0u64; 4];
            for event in store.query(&Region::all()) {
                let event = event.expect("event");
                counts[event.kind().type_id() as usize % 4] += 1;
            }
            black_box(counts)
        })
    });
    group.finish();
    let _closed = store.close().expect("close");
}

/// One frame as the writer lays it out (a ~150-byte payload), read back
/// from a real segment file.
fn sample_frame() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(StoreConfig::new(dir.path())).expect("open store");
    let coordinate = Coordinate::new("entity-7", "bench").expect("valid coordinate");
    store
        .append(&coordinate, KIND, &payload(7))
        .expect("append");
    store.close().expect("close");
    let segment = std::fs::read(dir.path().join("0000000000.segment")).expect("segment");
    // The 48-byte segment header, then the frame.
    let bytes = &segment[48..];
    let len = fuzzing::check_frame(bytes).expect("a valid frame");
    bytes[..len].to_vec()
}

fn frames(c: &mut Criterion) {
    let frame = sample_frame();
    let decoded = fuzzing::decode_frame(&frame).expect("decodes");
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("decode_check", |b| {
        b.iter(|| black_box(fuzzing::check_frame(black_box(&frame)).expect("valid")))
    });
    let mut out = Vec::with_capacity(frame.len());
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            fuzzing::encode_frame_into(black_box(&decoded), &mut out);
            black_box(out.len())
        })
    });
    assert_eq!(out, frame, "the encoder reproduces the writer's frame");
    group.finish();
}

/// A guaranteed cursor on a caught-up store polling the 10 events appended
/// since its last poll (appends untimed).
fn cursor(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    filled_store(dir.path()).close().expect("close");
    // Relaxed, so the untimed appends between polls stay cheap.
    let store = Store::open(StoreConfig::new(dir.path()).with_sync_every_n_events(1000))
        .expect("open store");
    let coordinates = coordinates();
    let mut cursor = store.cursor_guaranteed(&Region::all());
    while !cursor.poll_batch(1024).expect("poll").is_empty() {}
    let mut group = c.benchmark_group("cursor");
    group.throughput(Throughput::Elements(10));
    let mut i = 0usize;
    group.bench_function("poll_10_new_events", |b| {
        b.iter_batched(
            || {
                for _ in 0..10 {
                    i += 1;
                    store
                        .append(&coordinates[i % ENTITIES], KIND, &payload(i))
                        .expect("append");
                }
            },
            |()| {
                let events = cursor.poll_batch(64).expect("poll");
                assert_eq!(events.len(), 10);
                black_box(events)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, frames, append, batch, reads, cursor);
criterion_main!(benches);
