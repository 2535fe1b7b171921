//! Corruption campaigns over stores with several segments: flip single bytes
//! (every byte of a small store; random bytes of a larger one) and truncate
//! segment files. Every flip must be reported by `verify_dir`, and whatever
//! open does (refuse with a typed error, or cut a torn-looking tail), no read
//! may ever return an event that differs from what was written.
//!
//! Long version: `BATPAK_CHAOS_FLIPS=10000` random flips of a larger store
//! (default 300); `BATPAK_CHAOS_SEED` picks the flips.

mod chaos_support;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use batpak::prelude::*;
use batpak::store::verify_dir;
use chaos_support::*;

fn config(dir: &Path) -> StoreConfig {
    StoreConfig::new(dir).with_segment_max_bytes(4096)
}

/// A closed store with `events` events over four entities, including
/// batches, spread over several segments; returns the events as written.
fn build(dir: &Path, events: usize) -> Vec<StoredEvent> {
    let store = Store::open(config(dir).with_sync_every_n_events(64)).unwrap();
    let mut written = 0;
    let mut tag = 0;
    while written < events {
        tag += 1;
        if tag % 5 == 0 {
            let mut batch = Batch::new();
            for i in 0..3 {
                batch
                    .add(
                        &coord(&format!("e{}", (tag + i) % 4)),
                        KIND,
                        &payload(tag * 10 + i, 60),
                    )
                    .unwrap();
            }
            written += store.append_batch(&batch).unwrap().len();
        } else {
            store
                .append(&coord(&format!("e{}", tag % 4)), KIND, &payload(tag, 90))
                .unwrap();
            written += 1;
        }
    }
    let all = store.query(&Region::all()).map(Result::unwrap).collect();
    store.close().unwrap();
    all
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "segment"))
        .collect();
    files.sort();
    files
}

#[derive(Default, Debug)]
struct Counts {
    flips: u64,
    detected_by_verify: u64,
    open_refused: u64,
    reads_failed: u64,
    violations: Vec<String>,
}

/// Every read of the damaged store either fails or returns exactly what was
/// written.
fn reads_are_true(store: &Store, expected: &[StoredEvent], counts: &mut Counts, what: &str) {
    for event in store.query(&Region::all()) {
        match event {
            Ok(event) => {
                let original = expected.get(event.header.sequence as usize);
                if original != Some(&event) {
                    counts
                        .violations
                        .push(format!("{what}: read returned a changed event {event:?}"));
                }
            }
            Err(_) => counts.reads_failed += 1,
        }
    }
    for original in expected {
        match store.get(original.header.event_id) {
            Ok(Some(event)) if &event != original => counts
                .violations
                .push(format!("{what}: get returned a changed event {event:?}")),
            Ok(_) => {}
            Err(_) => counts.reads_failed += 1,
        }
    }
}

/// Flips one byte in place, checks, and restores it.
fn flip_and_check(
    dir: &Path,
    file: &Path,
    at: u64,
    mask: u8,
    expected: &[StoredEvent],
    writable_open: bool,
    counts: &mut Counts,
) {
    let handle = OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut byte = [0u8];
    handle.read_exact_at(&mut byte, at).unwrap();
    handle.write_all_at(&[byte[0] ^ mask], at).unwrap();
    let what = format!(
        "flip {mask:#04x} at {}:{at}",
        file.file_name().unwrap().to_string_lossy()
    );
    counts.flips += 1;
    match verify_dir(&config(dir)) {
        Ok(report) if !report.is_clean() => counts.detected_by_verify += 1,
        Ok(_) => counts
            .violations
            .push(format!("{what}: verify_dir saw nothing")),
        Err(_) => counts.detected_by_verify += 1, // refused to read: reported
    }
    match Store::open_read_only(config(dir)) {
        Ok(store) => reads_are_true(&store, expected, counts, &what),
        Err(StoreError::Corrupt { .. }) => counts.open_refused += 1,
        Err(other) => counts.violations.push(format!(
            "{what}: open failed with an untyped-looking error {other}"
        )),
    }
    if writable_open {
        // The writable open may cut a torn-looking tail: restore afterwards.
        let all: Vec<(PathBuf, Vec<u8>)> = segments(dir)
            .into_iter()
            .map(|p| {
                let bytes = fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        match Store::open(config(dir)) {
            Ok(store) => {
                reads_are_true(&store, expected, counts, &what);
                drop(store);
            }
            Err(StoreError::Corrupt { .. }) => {}
            Err(other) => counts
                .violations
                .push(format!("{what}: writable open: {other}")),
        }
        for (path, bytes) in all {
            fs::write(path, bytes).unwrap();
        }
    }
    // Restore the byte (a writable open restored whole files above).
    let handle = OpenOptions::new().write(true).open(file).unwrap();
    handle.write_all_at(&byte, at).unwrap();
}

/// Prints the campaign's summary line (`cargo xtask chaos` reads it) and
/// fails on any violation. `changes` counts the damage done, named `label`.
fn report(name: &str, changes: u64, label: &str, counts: &Counts) {
    for violation in counts.violations.iter().take(20) {
        println!("VIOLATION {violation}");
    }
    println!(
        "{name}: {changes} {label}, {} reported by verify, {} refused by open, {} reads failed, {} violations",
        counts.detected_by_verify,
        counts.open_refused,
        counts.reads_failed,
        counts.violations.len()
    );
    assert!(
        counts.violations.is_empty(),
        "{name}: {:?}",
        &counts.violations[..counts.violations.len().min(5)]
    );
}

#[test]
fn every_byte_flip_of_a_small_multi_segment_store_is_detected_and_never_read_as_data() {
    let dir = tempfile::tempdir().unwrap();
    // Frames are 32 bytes shorter without hashes: write more to span as many segments.
    let events = if cfg!(feature = "blake3") { 40 } else { 56 };
    let expected = build(dir.path(), events);
    let files = segments(dir.path());
    assert!(files.len() >= 3, "several segments: {}", files.len());
    let mut counts = Counts::default();
    let masks = [0x01u8, 0x80, 0xFF, 0x20];
    for file in &files {
        let len = fs::metadata(file).unwrap().len();
        for at in 0..len {
            let mask = masks[(at % masks.len() as u64) as usize];
            // Writable opens (which may cut) on a sample, to bound the time.
            flip_and_check(
                dir.path(),
                file,
                at,
                mask,
                &expected,
                at % 97 == 0,
                &mut counts,
            );
        }
    }
    report("exhaustive flip campaign", counts.flips, "flips", &counts);
}

#[test]
fn random_byte_flips_of_a_larger_store_are_detected_and_never_read_as_data() {
    let flips = env_u64("BATPAK_CHAOS_FLIPS", 300);
    let seed = env_u64("BATPAK_CHAOS_SEED", 0xF11B);
    println!("random flip campaign: {flips} flips, seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let expected = build(dir.path(), 400);
    let files = segments(dir.path());
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| fs::metadata(f).unwrap().len())
        .collect();
    let total: u64 = sizes.iter().sum();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut counts = Counts::default();
    for _ in 0..flips {
        let mut at = rng.u64(..total);
        let mut index = 0;
        while at >= sizes[index] {
            at -= sizes[index];
            index += 1;
        }
        let mask = rng.u8(1..=255);
        let writable = rng.u8(..20) == 0;
        flip_and_check(
            dir.path(),
            &files[index],
            at,
            mask,
            &expected,
            writable,
            &mut counts,
        );
    }
    report("random flip campaign", counts.flips, "flips", &counts);
}

#[test]
fn truncated_segments_open_to_a_true_prefix_or_fail_typed() {
    let dir = tempfile::tempdir().unwrap();
    let expected = build(dir.path(), 40);
    let files = segments(dir.path());
    let mut counts = Counts::default();
    let mut rng = fastrand::Rng::with_seed(env_u64("BATPAK_CHAOS_SEED", 0x7C));
    let mut truncations = 0;
    for (position, file) in files.iter().enumerate() {
        let original = fs::read(file).unwrap();
        let mut cuts: Vec<usize> = vec![0, 1, 47, 48, 49, original.len() - 1];
        for _ in 0..12 {
            cuts.push(rng.usize(..original.len()));
        }
        for cut in cuts {
            truncations += 1;
            let what = format!("truncate {} to {cut}", file.display());
            fs::write(file, &original[..cut]).unwrap();
            let is_last = position + 1 == files.len();
            match verify_dir(&config(dir.path())) {
                Ok(report) if !report.is_clean() => {}
                Ok(_) if is_last && cut <= 48 => {} // an empty last segment holds nothing
                Ok(_) => counts
                    .violations
                    .push(format!("{what}: verify saw nothing")),
                Err(_) => {}
            }
            let snapshot: Vec<(PathBuf, Vec<u8>)> = files
                .iter()
                .map(|p| (p.clone(), fs::read(p).unwrap()))
                .collect();
            match Store::open(config(dir.path())) {
                Ok(store) => {
                    // Only a cut of the last segment opens, and then to a prefix.
                    if !is_last {
                        counts
                            .violations
                            .push(format!("{what}: opened with a hole"));
                    }
                    reads_are_true(&store, &expected, &mut counts, &what);
                    let n = store.next_sequence() as usize;
                    if n > expected.len() {
                        counts
                            .violations
                            .push(format!("{what}: more events than written"));
                    }
                    drop(store);
                }
                Err(StoreError::Corrupt { .. }) => counts.open_refused += 1,
                Err(other) => counts.violations.push(format!("{what}: {other}")),
            }
            for (path, bytes) in snapshot {
                fs::write(path, bytes).unwrap();
            }
            // Recreated segments (an open may add an empty one) must go.
            for extra in segments(dir.path()) {
                if !files.contains(&extra) {
                    fs::remove_file(extra).unwrap();
                }
            }
        }
        fs::write(file, &original).unwrap();
    }
    report("truncation campaign", truncations, "truncations", &counts);
}
