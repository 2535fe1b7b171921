//! Fault campaign: every I/O point × every store operation × every fault
//! (a failed call, a short write, a device that stays bad, a crash), and
//! after each run the directory (as the process left it) and crash images
//! (what a power loss could leave) are reopened and checked: the operation
//! errored cleanly or succeeded, no acknowledged durable event is missing,
//! no failed event appears, atomic units are whole, `verify()` is clean.
//!
//! Short by default. Long: `BATPAK_CHAOS_ITERATIONS=0` tries every call
//! number of every point (instead of up to 3) and `BATPAK_CHAOS_IMAGES=n`
//! takes `n` crash images per run. Replay one run: `BATPAK_CHAOS_SEED=<seed>`
//! and `BATPAK_CHAOS_FILTER=<part of the printed run name>`.
#![cfg(feature = "dangerous-test-hooks")]

mod chaos_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use batpak::fault::{Fault, FaultInjector, FaultRule, IoPoint};
use batpak::prelude::*;
use chaos_support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    /// One append, durable by default (`n = 1`).
    Append,
    /// Relaxed appends (`n = 1000`), then one `AppendOptions::durable()`.
    DurableAppend,
    /// Relaxed appends, then `Store::sync`.
    RelaxedThenSync,
    /// An atomic batch of four items over two entities.
    Batch,
    /// Appends across a segment rotation.
    Rotation,
    /// `Store::close` with relaxed events pending.
    Close,
    /// Opening a store whose last segment has a torn tail (recovery cuts it).
    RecoverTornTail,
    /// Opening a store whose last segment is an empty, half-created file.
    RecoverHalfCreatedSegment,
    /// Opening (creating) a store in an empty directory.
    OpenFresh,
    /// `Store::checkpoint` with relaxed events pending and sealed segments
    /// without footers: the sync, the footers and the checkpoint (create,
    /// write, sync, rename, directory sync, removal of leftovers).
    Checkpoint,
    /// Committing a named cursor's position (`cursors/`).
    CursorSave,
    /// `Store::snapshot` into a fresh directory.
    Snapshot,
    /// `Store::compact` dropping one entity from several sealed segments
    /// (sealing the active one first).
    Compact,
}

const OPERATIONS: [Operation; 13] = [
    Operation::Append,
    Operation::DurableAppend,
    Operation::RelaxedThenSync,
    Operation::Batch,
    Operation::Rotation,
    Operation::Close,
    Operation::RecoverTornTail,
    Operation::RecoverHalfCreatedSegment,
    Operation::OpenFresh,
    Operation::Checkpoint,
    Operation::CursorSave,
    Operation::Snapshot,
    Operation::Compact,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The n-th call fails once.
    Once,
    /// The n-th call and every later call at that point fail.
    FromThenOn,
    /// The n-th write writes a prefix and fails.
    Short,
    /// Power is lost during the n-th call.
    Crash,
    /// The n-th call fails once and so does every truncation after it: the
    /// store cannot cut the failed tail back.
    OnceNoCutBack,
}

impl Kind {
    /// Runs where the store cannot make its cut-back of a failed tail
    /// durable (every later sync fails) or cannot cut at all (every
    /// truncation fails). No store can then promise that the failed event
    /// stays gone after a power loss (nothing can be made durable any more);
    /// such "undead" events are counted and reported, not hidden.
    fn cut_back_impossible(self, point: IoPoint, image: bool) -> bool {
        match self {
            Kind::FromThenOn => image && point == IoPoint::Sync,
            Kind::OnceNoCutBack => image,
            _ => false,
        }
    }
}

fn config(dir: &Path, operation: Operation) -> StoreConfig {
    let cadence = match operation {
        Operation::DurableAppend
        | Operation::RelaxedThenSync
        | Operation::Close
        | Operation::Checkpoint => 1000,
        _ => 1,
    };
    StoreConfig::new(dir)
        .with_segment_max_bytes(4096)
        .with_sync_every_n_events(cadence)
        // No background sync: the calls of a run must be deterministic.
        .with_sync_interval(Duration::from_secs(3600))
}

struct Run {
    dir: tempfile::TempDir,
    faults: Arc<FaultInjector>,
    ledger: Ledger,
    /// The operation under test returned an error.
    errored: bool,
    calls: [u64; 9],
    extra: Extra,
}

/// What operations other than appends promised, to check after the run.
#[derive(Default)]
struct Extra {
    /// Named cursor `CURSOR`: the committed position before the commit
    /// under test, the one it tried to commit, and whether it succeeded.
    cursor: Option<(u64, u64, bool)>,
    /// The snapshot's parent directory, and the cut it reported if it
    /// succeeded.
    snapshot: Option<(tempfile::TempDir, Option<u64>)>,
}

const CURSOR: &str = "chaos";
/// The entity the compaction under test drops.
const DROPPED: &str = "e1";
const SNAPSHOT: &str = "snapshot";

fn append_tagged(
    store: &Store,
    ledger: &mut Ledger,
    entity: &str,
    pad: usize,
    options: AppendOptions,
    durable: bool,
    crashed: &dyn Fn() -> bool,
) -> Result<(), StoreError> {
    let tag = ledger.tag();
    let unit = ledger.unit();
    let result = store.append_with_options(&coord(entity), KIND, &payload(tag, pad), options);
    let items = [(tag, entity.to_string())];
    match &result {
        Ok(receipt) => ledger.record(unit, &items, Ok(vec![*receipt]), durable, false),
        Err(error) => ledger.record(unit, &items, Err(error), durable, crashed()),
    }
    result.map(|_| ())
}

/// Prepares the directory for `operation` without faults (through a plain
/// store, so a recording injector adopts the files as durable when it opens
/// them) and returns the ledger of what is in it.
fn prepare(dir: &Path, operation: Operation) -> Ledger {
    let mut ledger = Ledger::default();
    let never = || false;
    match operation {
        Operation::OpenFresh => {}
        Operation::RecoverTornTail | Operation::RecoverHalfCreatedSegment => {
            let store = Store::open(config(dir, operation)).expect("prepare open");
            for i in 0..25 {
                let entity = format!("e{}", i % 3);
                append_tagged(
                    &store,
                    &mut ledger,
                    &entity,
                    200,
                    AppendOptions::new(),
                    true,
                    &never,
                )
                .expect("prepare append");
            }
            store.close().expect("prepare close");
            let mut segments: Vec<_> = std::fs::read_dir(dir)
                .expect("list")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "segment"))
                .collect();
            segments.sort();
            let last = segments.last().expect("a segment").clone();
            if operation == Operation::RecoverTornTail {
                // Half of a copy of the last frame: a torn write.
                let mut bytes = std::fs::read(&last).expect("read");
                let tail: Vec<u8> = bytes[bytes.len() - 120..bytes.len() - 40].to_vec();
                bytes.extend_from_slice(&tail);
                std::fs::write(&last, &bytes).expect("tear");
            } else {
                let name = last.file_name().and_then(|n| n.to_str()).expect("name");
                let id: u32 = name[..10].parse().expect("id");
                std::fs::write(dir.join(format!("{:010}.segment", id + 1)), b"")
                    .expect("half-created segment");
            }
        }
        _ => {}
    }
    ledger
}

/// Runs `operation` on a store in `dir` whose I/O goes through `faults`,
/// arming `arm` just before the operation (after the store's own setup).
/// Returns whether the operation returned an error.
fn operate(
    dir: &Path,
    operation: Operation,
    faults: &Arc<FaultInjector>,
    ledger: &mut Ledger,
    extra: &mut Extra,
    arm: &dyn Fn(),
) -> bool {
    let crashed = || faults.crashed();
    let open = |config: StoreConfig| Store::open(config.with_fault_injector(faults.clone()));
    match operation {
        Operation::OpenFresh
        | Operation::RecoverTornTail
        | Operation::RecoverHalfCreatedSegment => {
            arm();
            return match open(config(dir, operation)) {
                Ok(store) => store.close().is_err(),
                Err(_) => true,
            };
        }
        _ => {}
    }
    let store = open(config(dir, operation)).expect("open before the fault");
    // Setup inside the faulty store: a few events, durable.
    for i in 0..3 {
        append_tagged(
            &store,
            ledger,
            &format!("e{i}"),
            100,
            AppendOptions::new().durable(),
            true,
            &crashed,
        )
        .expect("setup append");
    }
    if operation == Operation::Compact {
        // Several segments, each with events of the dropped entity.
        for i in 0..20 {
            append_tagged(
                &store,
                ledger,
                &format!("e{}", i % 3),
                200,
                AppendOptions::new(),
                true,
                &crashed,
            )
            .expect("setup segments");
        }
    }
    if operation == Operation::Checkpoint {
        // Sealed segments without footers (no maintenance thread runs
        // under fault injection), so the checkpoint writes footers too.
        for i in 0..20 {
            append_tagged(
                &store,
                ledger,
                &format!("e{}", i % 3),
                200,
                AppendOptions::new(),
                false,
                &crashed,
            )
            .expect("setup rotation");
        }
    }
    let relaxed = config(dir, operation).sync_every_n_events() > 1;
    if relaxed {
        for i in 0..3 {
            append_tagged(
                &store,
                ledger,
                &format!("e{i}"),
                100,
                AppendOptions::new(),
                false,
                &crashed,
            )
            .expect("setup relaxed append");
        }
    }
    let mut cursor = None;
    if operation == Operation::CursorSave {
        let mut named = store
            .named_cursor(CURSOR, &Region::all())
            .expect("setup cursor");
        named.poll_batch(1).expect("setup poll");
        named.commit().expect("setup commit");
        named.poll_batch(2).expect("setup poll");
        cursor = Some(named);
    }
    arm();
    let outcome: Result<(), StoreError> = match operation {
        Operation::Append => append_tagged(
            &store,
            ledger,
            "e0",
            100,
            AppendOptions::new(),
            true,
            &crashed,
        ),
        Operation::DurableAppend => append_tagged(
            &store,
            ledger,
            "e1",
            100,
            AppendOptions::new().durable(),
            true,
            &crashed,
        ),
        Operation::RelaxedThenSync => (|| {
            for i in 0..3 {
                append_tagged(
                    &store,
                    ledger,
                    &format!("e{i}"),
                    100,
                    AppendOptions::new(),
                    false,
                    &crashed,
                )?;
            }
            store.sync()
        })(),
        Operation::Batch => {
            let unit = ledger.unit();
            let mut batch = Batch::new();
            let mut items = Vec::new();
            for i in 0..4 {
                let tag = ledger.tag();
                let entity = format!("e{}", i % 2);
                batch
                    .add(&coord(&entity), KIND, &payload(tag, 100))
                    .expect("batch item");
                items.push((tag, entity));
            }
            let result = store.append_batch(&batch);
            match &result {
                Ok(receipts) => ledger.record(unit, &items, Ok(receipts.clone()), true, false),
                Err(error) => ledger.record(unit, &items, Err(error), true, crashed()),
            }
            result.map(|_| ())
        }
        Operation::Rotation => (|| {
            for i in 0..24 {
                append_tagged(
                    &store,
                    ledger,
                    &format!("e{}", i % 3),
                    200,
                    AppendOptions::new(),
                    true,
                    &crashed,
                )?;
            }
            Ok(())
        })(),
        Operation::Close => {
            let closed = store.close();
            if closed.is_ok() {
                ledger.all_durable();
            }
            return closed.is_err();
        }
        Operation::Checkpoint => {
            let result = store.checkpoint();
            if result.is_ok() {
                // It syncs first: everything acknowledged is durable.
                ledger.all_durable();
            }
            result
        }
        Operation::CursorSave => {
            let mut named = cursor.take().expect("cursor set up above");
            let before = named.committed_position();
            let tried = named.position();
            let result = named.commit();
            if result.is_ok() && named.committed_position() != tried {
                panic!(
                    "commit succeeded but the cursor says {}",
                    named.committed_position()
                );
            }
            if result.is_err() && named.committed_position() != before {
                panic!("a failed commit moved the committed position");
            }
            extra.cursor = Some((before, tried, result.is_ok()));
            result
        }
        Operation::Snapshot => {
            let parent = tempfile::tempdir().expect("tempdir");
            let result = store.snapshot(parent.path().join(SNAPSHOT));
            let cut = result.as_ref().ok().map(|report| report.next_sequence);
            if result.is_ok() {
                // It syncs the cut first, and the cut is every event so far.
                ledger.all_durable();
            }
            extra.snapshot = Some((parent, cut));
            result.map(|_| ())
        }
        Operation::Compact => {
            let result = store.compact(&Compaction::new().drop_entity(DROPPED));
            // Each segment commits on its own: after a failure, every
            // event of the entity is either still there or gone for good.
            let fate = if result.is_ok() {
                Status::Removed
            } else {
                Status::MaybeRemoved
            };
            for entry in &mut ledger.entries {
                if entry.entity == DROPPED
                    && matches!(entry.status, Status::Durable | Status::Relaxed)
                {
                    entry.status = fate;
                }
            }
            result.map(|_| ())
        }
        _ => unreachable!("handled above"),
    };
    if outcome.is_ok() {
        if let Some(durable) = store.durable_sequence() {
            ledger.durable_below(durable + 1);
        }
    }
    drop(store);
    outcome.is_err()
}

fn start(operation: Operation, arm: impl Fn(&FaultInjector)) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ledger = prepare(dir.path(), operation);
    let faults = FaultInjector::recording();
    faults
        .adopt_existing(dir.path())
        .expect("adopt the prepared files");
    let calls_before = std::cell::Cell::new([0; 9]);
    let mut extra = Extra::default();
    let errored = operate(
        dir.path(),
        operation,
        &faults,
        &mut ledger,
        &mut extra,
        &|| {
            calls_before.set(faults.all_calls());
            arm(&faults);
        },
    );
    let calls_before = calls_before.get();
    let after = faults.all_calls();
    let calls: [u64; 9] = std::array::from_fn(|i| after[i] - calls_before[i]);
    Run {
        dir,
        faults,
        ledger,
        errored,
        calls,
        extra,
    }
}

/// The named cursor's stored position after a reopen: the new one if the
/// commit succeeded (it is durable then, even across a power loss), else
/// the old or the new one.
fn cursor_is_true(store: &Store, cursor: Option<(u64, u64, bool)>) -> Result<(), String> {
    let Some((before, tried, committed)) = cursor else {
        return Ok(());
    };
    let named = store
        .named_cursor(CURSOR, &Region::all())
        .map_err(|e| format!("named cursor after reopen: {e}"))?;
    let position = named.position();
    let allowed = if committed {
        position == tried
    } else {
        position == before || position == tried
    };
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "named cursor at {position} after reopen; before {before}, commit of {tried} {}",
            if committed { "succeeded" } else { "failed" }
        ))
    }
}

/// A snapshot that succeeded opens, verifies and holds exactly the events
/// acknowledged before it; one that failed left no directory behind.
fn snapshot_is_true(extra: &Extra, ledger: &Ledger) -> Result<(), String> {
    let Some((parent, cut)) = &extra.snapshot else {
        return Ok(());
    };
    let dir = parent.path().join(SNAPSHOT);
    let Some(cut) = cut else {
        return if dir.exists() {
            Err("a failed snapshot left its directory behind".into())
        } else {
            Ok(())
        };
    };
    let copy = Store::open_read_only(StoreConfig::new(&dir))
        .map_err(|e| format!("the snapshot does not open: {e}"))?;
    let mut expected: Vec<(u64, u64)> = ledger
        .entries
        .iter()
        .filter_map(|e| e.sequence.map(|s| (s, e.tag)))
        .filter(|(s, _)| s < cut)
        .collect();
    expected.sort();
    let got: Vec<(u64, u64)> = copy
        .query(&Region::all())
        .map(|e| e.map(|e| (e.header.sequence, e.payload["tag"].as_u64().unwrap_or(0))))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading the snapshot: {e}"))?;
    if got != expected || copy.next_sequence() != *cut {
        return Err(format!(
            "snapshot (cut {cut}) holds {got:?}, expected {expected:?}"
        ));
    }
    let report = copy
        .verify()
        .map_err(|e| format!("verifying the snapshot: {e}"))?;
    if !report.is_clean() {
        return Err(format!("the snapshot is damaged: {:?}", report.damage));
    }
    Ok(())
}

#[derive(Default)]
struct Totals {
    runs: u64,
    injected: u64,
    images: u64,
    errors: u64,
    /// Failed events that reappeared where no store could prevent it.
    undead_unpreventable: Vec<String>,
    violations: Vec<String>,
}

impl Totals {
    /// Records the outcome of one check, allowing failed events to appear
    /// only where the cut-back was impossible.
    fn judge(
        &mut self,
        what: String,
        outcome: Result<u64, String>,
        retry_as_maybe: Option<&dyn Fn() -> Result<u64, String>>,
    ) {
        let Err(violation) = outcome else { return };
        if let Some(retry) = retry_as_maybe {
            if violation.contains("failed but is present") && retry().is_ok() {
                self.undead_unpreventable
                    .push(format!("{what}: {violation}"));
                return;
            }
        }
        self.violations.push(format!("{what}: {violation}"));
    }
}

/// Checks one run: the directory as the process left it, then crash images.
fn check_run(
    run: Run,
    operation: Operation,
    name: &str,
    seed: u64,
    images: u64,
    (kind, point): (Kind, IoPoint),
    totals: &mut Totals,
) {
    totals.runs += 1;
    totals.injected += run.faults.injected();
    totals.errors += u64::from(run.errored);
    let crashed = run.faults.crashed();
    let mut ledger = run.ledger.clone();
    if crashed {
        ledger.failures_maybe();
    }
    let cfg = |dir: &Path| config(dir, operation);
    if let Err(violation) = snapshot_is_true(&run.extra, &run.ledger) {
        totals
            .violations
            .push(format!("{name} seed {seed}: {violation}"));
    }
    let cursor = run.extra.cursor;
    let cursor_check = move |store: &Store| cursor_is_true(store, cursor);
    // Images first: reopening the directory changes it.
    for image in 0..images {
        let image_seed = seed.wrapping_add(image);
        let dest = tempfile::tempdir().expect("tempdir");
        if let Err(error) = run
            .faults
            .crash_image(run.dir.path(), dest.path(), image_seed)
        {
            totals.violations.push(format!(
                "{name} seed {seed}: image {image_seed} failed: {error}"
            ));
            continue;
        }
        totals.images += 1;
        let maybe = maybe_ledger(&ledger);
        let image_copy = tempfile::tempdir().expect("tempdir");
        copy_dir(dest.path(), image_copy.path());
        let retry = || reopen_and_check(image_copy.path(), cfg, &maybe, true);
        totals.judge(
            format!("{name} seed {seed}: crash image {image_seed}"),
            reopen_and_check_with(dest.path(), cfg, &ledger, true, &cursor_check),
            kind.cut_back_impossible(point, true)
                .then_some(&retry as &dyn Fn() -> Result<u64, String>),
        );
    }
    // The process survived (or died without a power loss): everything it
    // handed to the OS is there. Relaxed events may be lost only to an error.
    let maybe = maybe_ledger(&ledger);
    let dir_copy = tempfile::tempdir().expect("tempdir");
    copy_dir(run.dir.path(), dir_copy.path());
    let retry = || reopen_and_check(dir_copy.path(), cfg, &maybe, true);
    totals.judge(
        format!("{name} seed {seed}: reopened directory"),
        reopen_and_check_with(run.dir.path(), cfg, &ledger, run.errored, &cursor_check),
        kind.cut_back_impossible(point, false)
            .then_some(&retry as &dyn Fn() -> Result<u64, String>),
    );
}

fn maybe_ledger(ledger: &Ledger) -> Ledger {
    let mut maybe = ledger.clone();
    maybe.failures_maybe();
    maybe
}

/// Copies a store directory with its subdirectories (`cursors/`,
/// `checkpoints/`).
fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let kind = entry.file_type().expect("type");
        if kind.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        } else if kind.is_dir() {
            let sub = to.join(entry.file_name());
            std::fs::create_dir_all(&sub).expect("mkdir");
            copy_dir(&entry.path(), &sub);
        }
    }
}

fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn every_io_point_of_every_operation_fails_cleanly() {
    let per_point = env_u64("BATPAK_CHAOS_ITERATIONS", 3); // 0 = every call
    let images = env_u64("BATPAK_CHAOS_IMAGES", 2);
    let base_seed = env_u64("BATPAK_CHAOS_SEED", 0xC4A05);
    let filter = std::env::var("BATPAK_CHAOS_FILTER").unwrap_or_default();
    println!(
        "fault campaign: base seed {base_seed}, calls per point {}, {images} crash images per run",
        if per_point == 0 {
            "all".to_string()
        } else {
            per_point.to_string()
        }
    );
    let started = std::time::Instant::now();
    let mut totals = Totals::default();
    for operation in OPERATIONS {
        // A dry run counts the calls the operation makes at each point.
        let dry = start(operation, |_| {});
        assert!(!dry.errored, "{operation:?} fails without faults");
        let dry_calls = dry.calls;
        check_run(
            dry,
            operation,
            &format!("{operation:?}/none"),
            base_seed,
            1,
            (Kind::Once, IoPoint::Read),
            &mut totals,
        );
        for (slot, point) in IoPoint::ALL.into_iter().enumerate() {
            let count = dry_calls[slot];
            if count == 0 {
                continue;
            }
            let mut rng =
                fastrand::Rng::with_seed(base_seed ^ hash(&format!("{operation:?}{point:?}")));
            let chosen: Vec<u64> = if per_point == 0 || count <= per_point {
                (1..=count).collect()
            } else {
                let mut chosen = vec![1, count];
                while (chosen.len() as u64) < per_point {
                    chosen.push(rng.u64(2..count));
                }
                chosen.sort();
                chosen.dedup();
                chosen
            };
            for nth in chosen {
                for kind in [
                    Kind::Once,
                    Kind::FromThenOn,
                    Kind::Short,
                    Kind::Crash,
                    Kind::OnceNoCutBack,
                ] {
                    if kind == Kind::Short && point != IoPoint::Write {
                        continue;
                    }
                    if kind == Kind::OnceNoCutBack
                        && !matches!(point, IoPoint::Write | IoPoint::Sync)
                    {
                        continue;
                    }
                    let name = format!("{operation:?}/{point:?}#{nth}/{kind:?}");
                    if !filter.is_empty() && !name.contains(&filter) {
                        continue;
                    }
                    let seed = base_seed ^ hash(&name);
                    let keep = fastrand::Rng::with_seed(seed).usize(0..200);
                    let rule = match kind {
                        Kind::Once => FaultRule::at(point).nth(nth),
                        Kind::FromThenOn => FaultRule::at(point).from_nth(nth),
                        Kind::Short => FaultRule::at(point)
                            .nth(nth)
                            .fault(Fault::ShortWrite { keep_bytes: keep }),
                        Kind::Crash => FaultRule::at(point).nth(nth).fault(Fault::Crash),
                        Kind::OnceNoCutBack => FaultRule::at(point).nth(nth),
                    };
                    let run = start(operation, |faults| {
                        faults.add_rule(rule.clone());
                        if kind == Kind::OnceNoCutBack {
                            faults.add_rule(FaultRule::at(IoPoint::Truncate).always());
                        }
                    });
                    let images = if kind == Kind::Crash { images } else { 1 };
                    check_run(
                        run,
                        operation,
                        &name,
                        seed,
                        images,
                        (kind, point),
                        &mut totals,
                    );
                }
            }
        }
    }
    for undead in &totals.undead_unpreventable {
        println!("UNDEAD (cut-back impossible) {undead}");
    }
    for violation in &totals.violations {
        println!("VIOLATION {violation}");
    }
    println!(
        "fault campaign: {} runs, {} faults injected, {} operations errored, {} crash images, {} undead where no cut-back was possible, {} violations, {:.1}s",
        totals.runs,
        totals.injected,
        totals.errors,
        totals.images,
        totals.undead_unpreventable.len(),
        totals.violations.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        totals.violations.is_empty(),
        "{} violations; first: {}",
        totals.violations.len(),
        totals.violations[0]
    );
}
