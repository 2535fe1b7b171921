//! The workloads on batpak, through its public API only.

use std::path::Path;
use std::time::{Duration, Instant};

use batpak::{
    Batch, BatchItem, CacheOutcome, EventSourced, FileCache, Freshness, Region, Store, StoreConfig,
};

use crate::child::{signal_ready, OpenOutcome};
use crate::error::{BenchError, BenchResult};
use crate::fixture::{Fixture, KINDS};
use crate::measure::{
    current_rss_bytes, disk_bytes, peak_rss_bytes, Latencies, RELAXED_LATENCY_SAMPLE,
};
use crate::report::Sample;

/// When set, durable appends are bracketed by two marker syscalls for
/// `strace`: `getpid` right before `append` and `getppid` right after its
/// receipt came back (see `scripts/check_receipts.py`).
static TRACE_MARKERS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns the strace markers on.
pub fn enable_trace_markers() {
    TRACE_MARKERS.store(true, std::sync::atomic::Ordering::Relaxed);
}

#[inline]
fn marker_before_append() {
    if TRACE_MARKERS.load(std::sync::atomic::Ordering::Relaxed) {
        std::hint::black_box(std::process::id());
    }
}

#[inline]
fn marker_after_receipt() {
    if TRACE_MARKERS.load(std::sync::atomic::Ordering::Relaxed) {
        std::hint::black_box(std::os::unix::process::parent_id());
    }
}

/// The extra of a sample: milliseconds its appenders waited for syncs.
pub const SYNC_WAIT_MS: &str = "sync_wait_ms";

/// Largest batch used to build the big store.
const BUILD_BATCH_ITEMS: usize = 10_000;

/// W1/W2: `n` single appends from one thread with `sync_every_n_events`.
/// With `n = 1` every receipt must be durable; receipts that come back before
/// `durable_sequence()` covers them are counted.
pub fn single_appends(
    fixture: &Fixture,
    dir: &Path,
    n: usize,
    sync_every_n_events: u32,
) -> BenchResult<Sample> {
    let store = Store::open(StoreConfig::new(dir).with_sync_every_n_events(sync_every_n_events))?;
    let check_durable = sync_every_n_events == 1;
    let mut not_durable = 0u64;
    let mut latencies = Latencies::with_capacity(n);
    let every = if check_durable {
        1
    } else {
        RELAXED_LATENCY_SAMPLE
    };
    let started = Instant::now();
    for i in 0..n {
        marker_before_append();
        let op = (i % every == 0).then(Instant::now);
        let receipt = store.append(fixture.coordinate(i), Fixture::kind(i), &fixture.payload(i))?;
        if let Some(op) = op {
            latencies.record_since(op);
        }
        marker_after_receipt();
        if check_durable
            && store
                .durable_sequence()
                .is_none_or(|d| d < receipt.sequence)
        {
            not_durable += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    finish(
        store,
        dir,
        seconds,
        latencies,
        check_durable.then_some(not_durable),
    )
}

/// W3: `batches` atomic batches of `size` events, each durable on return.
pub fn batches(fixture: &Fixture, dir: &Path, batches: usize, size: usize) -> BenchResult<Sample> {
    let store = Store::open(StoreConfig::new(dir))?;
    let mut latencies = Latencies::with_capacity(batches);
    let started = Instant::now();
    for b in 0..batches {
        let op = Instant::now();
        let mut batch = Batch::new().durable();
        for i in b * size..(b + 1) * size {
            batch.push(BatchItem::new(
                fixture.coordinate(i),
                Fixture::kind(i),
                &fixture.payload(i),
            )?);
        }
        let receipts = store.append_batch(&batch)?;
        latencies.record_since(op);
        if receipts.len() != size {
            return Err(BenchError::Check(format!(
                "batch of {size} returned {} receipts",
                receipts.len()
            )));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    finish(store, dir, seconds, latencies, None)
}

/// W4: `threads` threads share one store and append `n` events in total,
/// every append durable (`n = 1`, group commit).
pub fn concurrent_appends(
    fixture: &Fixture,
    dir: &Path,
    threads: usize,
    n: usize,
) -> BenchResult<Sample> {
    let store = Store::open(StoreConfig::new(dir))?;
    let per_thread = n / threads;
    let barrier = std::sync::Barrier::new(threads + 1);
    let (seconds, outcomes) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let store = &store;
                let barrier = &barrier;
                scope.spawn(move || -> BenchResult<(Latencies, u64)> {
                    let mut latencies = Latencies::with_capacity(per_thread);
                    let mut not_durable = 0u64;
                    barrier.wait();
                    for i in t * per_thread..(t + 1) * per_thread {
                        marker_before_append();
                        let op = Instant::now();
                        let receipt = store.append(
                            fixture.coordinate(i),
                            Fixture::kind(i),
                            &fixture.payload(i),
                        )?;
                        latencies.record_since(op);
                        marker_after_receipt();
                        if store
                            .durable_sequence()
                            .is_none_or(|d| d < receipt.sequence)
                        {
                            not_durable += 1;
                        }
                    }
                    Ok((latencies, not_durable))
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        (started.elapsed().as_secs_f64(), outcomes)
    });
    let mut latencies = Latencies::with_capacity(n);
    let mut not_durable = 0;
    for outcome in outcomes {
        let (thread_latencies, thread_not_durable) =
            outcome.map_err(|_| BenchError::Panicked("an appender thread panicked".into()))??;
        latencies.merge(thread_latencies);
        not_durable += thread_not_durable;
    }
    finish(store, dir, seconds, latencies, Some(not_durable))
}

fn finish(
    store: Store,
    dir: &Path,
    seconds: f64,
    mut latencies: Latencies,
    not_durable: Option<u64>,
) -> BenchResult<Sample> {
    let peak_rss_bytes = peak_rss_bytes();
    // The syncs of the measured part (open's own sync is not counted) and
    // the time appenders spent waiting for them: the share of the wall time
    // that the disk, not the CPU, decided.
    let stats = store.stats();
    let _closed = store.close()?;
    let (p50_us, p99_us) = latencies.p50_p99_us().unzip();
    let mut sample = Sample {
        seconds,
        p50_us,
        p99_us,
        bytes_on_disk: Some(disk_bytes(dir)),
        peak_rss_bytes,
        ..Sample::default()
    };
    if let Some(count) = not_durable {
        sample
            .extra
            .insert("not_durable_receipts".into(), count as f64);
    }
    // Read-only workloads (W6, W7) neither sync nor wait: no numbers.
    if stats.syncs > 0 || stats.sync_waits > 0 {
        sample.extra.insert("syncs".into(), stats.syncs as f64);
        sample
            .extra
            .insert("sync_ms".into(), stats.sync_time.as_secs_f64() * 1e3);
        sample.extra.insert(
            SYNC_WAIT_MS.into(),
            stats.sync_wait_time.as_secs_f64() * 1e3,
        );
    }
    Ok(sample)
}

/// Builds the big store of W5-W7: `n` events in durable batches of 10,000.
pub fn build_big(fixture: &Fixture, dir: &Path, n: usize) -> BenchResult<()> {
    let store = Store::open(StoreConfig::new(dir))?;
    let mut next = 0;
    while next < n {
        let end = (next + BUILD_BATCH_ITEMS).min(n);
        let mut batch = Batch::new().durable();
        for i in next..end {
            batch.push(BatchItem::new(
                fixture.coordinate(i),
                Fixture::kind(i),
                &fixture.payload(i),
            )?);
        }
        store.append_batch(&batch)?;
        next = end;
    }
    let _closed = store.close()?;
    Ok(())
}

/// Number of events in a store (opens and closes it).
pub fn count_events(dir: &Path) -> BenchResult<u64> {
    let store = Store::open(StoreConfig::new(dir))?;
    let events = store.stats().events;
    let _closed = store.close()?;
    Ok(events)
}

/// W6: reads the full history of each entity in `entities`, each expected to
/// hold `expected` events. The store is opened before timing starts.
pub fn entity_reads(dir: &Path, entities: &[&str], expected: usize) -> BenchResult<Sample> {
    let store = Store::open(StoreConfig::new(dir))?;
    let mut latencies = Latencies::with_capacity(entities.len());
    let started = Instant::now();
    for entity in entities {
        let op = Instant::now();
        let events = store.stream(entity).collect::<Result<Vec<_>, _>>()?;
        latencies.record_since(op);
        if events.len() != expected {
            return Err(BenchError::Check(format!(
                "{entity} has {} events, expected {expected}",
                events.len()
            )));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    finish(store, dir, seconds, latencies, None).map(|mut sample| {
        sample.bytes_on_disk = None;
        sample
    })
}

/// W7: replays every event in sequence order, folding a count per kind.
pub fn replay(dir: &Path, expected: u64) -> BenchResult<Sample> {
    let store = Store::open(StoreConfig::new(dir))?;
    let mut counts = vec![0u64; 1 << 16];
    let started = Instant::now();
    // Like the SQLite peer, read every event whole (every frame's checksum is
    // checked) but leave payloads unparsed: the fold needs only the kind.
    for event in store.query(&Region::all()).raw() {
        counts[event?.kind().bits() as usize] += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let total: u64 = counts.iter().sum();
    if total != expected {
        return Err(BenchError::Check(format!(
            "replay saw {total} events, expected {expected}"
        )));
    }
    let mut sample = finish(store, dir, seconds, Latencies::default(), None)?;
    sample.bytes_on_disk = None;
    sample.extra.insert(
        "kinds".into(),
        counts.iter().filter(|c| **c > 0).count() as f64,
    );
    Ok(sample)
}

/// Child side of W5: opens the store, reads one entity, reports, closes.
pub fn child_open(dir: &Path, entity: &str) -> BenchResult<OpenOutcome> {
    let started = Instant::now();
    let store = Store::open(StoreConfig::new(dir))?;
    let open_s = started.elapsed().as_secs_f64();
    let rss_after_open_bytes = peak_rss_bytes();
    let rss_now_after_open_bytes = current_rss_bytes();
    let started = Instant::now();
    let events = store.stream(entity).collect::<Result<Vec<_>, _>>()?;
    let read_s = started.elapsed().as_secs_f64();
    let rss_after_read_bytes = peak_rss_bytes();
    let stats = store.stats();
    let report = store.open_report();
    let detail = format!(
        "index_source={:?} segments={} torn_tail={}",
        report.index_source,
        report.segments,
        report
            .torn_tail
            .as_ref()
            .map(|cut| format!("{} bytes at {}", cut.dropped_bytes, cut.offset))
            .unwrap_or_else(|| "none".into())
    );
    let _closed = store.close()?;
    Ok(OpenOutcome {
        open_s,
        read_s,
        events_read: events.len() as u64,
        rss_after_open_bytes,
        rss_now_after_open_bytes,
        rss_after_read_bytes,
        events: stats.events,
        index_memory_bytes: Some(stats.index_memory_bytes),
        detail,
    })
}

/// Child side of the crash image: appends durable events until killed. Never
/// closes; if nobody kills it within a minute it aborts, which is a crash too.
pub fn child_crash(fixture: &Fixture, dir: &Path) -> BenchResult<()> {
    let store = Store::open(StoreConfig::new(dir))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0usize;
    while Instant::now() < deadline {
        store.append(fixture.coordinate(i), Fixture::kind(i), &fixture.payload(i))?;
        i += 1;
        if i == 10 {
            signal_ready()?;
        }
    }
    std::process::abort()
}

/// The projection of the projection rows: events per kind of one entity.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct KindCounts {
    counts: [u64; KINDS.len()],
}

impl EventSourced for KindCounts {
    const RELEVANT_KINDS: &'static [batpak::EventKind] = &KINDS;

    fn initial() -> Self {
        KindCounts::default()
    }

    fn apply(&mut self, event: &batpak::StoredEvent) {
        if let Some(index) = KINDS.iter().position(|kind| *kind == event.kind()) {
            self.counts[index] += 1;
        }
    }

    fn projection_name() -> &'static str {
        "batpak-bench/kind-counts"
    }
}

/// Which cache the projection rows go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectionPass {
    /// `Store::project`: folded from the log every time.
    NoCache,
    /// `project_with` on an empty `FileCache`: every entity a miss (fold and write).
    CacheMiss,
    /// `project_with` on the cache the miss pass filled: every entity a hit.
    CacheHit,
}

/// Projection rows (native surface): folds [`KindCounts`] for each entity in
/// `entities`, each expected to hold `expected` events, with or without the
/// file cache in `cache_dir`. Fails if the cache did not behave as the pass
/// expects (a miss pass that hit, a hit pass that missed).
pub fn projections(
    dir: &Path,
    cache_dir: &Path,
    entities: &[&str],
    expected: usize,
    pass: ProjectionPass,
) -> BenchResult<Sample> {
    let store = Store::open(StoreConfig::new(dir))?;
    let cache = FileCache::open(cache_dir)
        .map_err(|e| BenchError::Check(format!("projection cache: {e}")))?;
    let mut latencies = Latencies::with_capacity(entities.len());
    let mut unexpected = 0u64;
    let started = Instant::now();
    for entity in entities {
        let op = Instant::now();
        let state: KindCounts = match pass {
            ProjectionPass::NoCache => store.project(entity, Freshness::Consistent)?,
            ProjectionPass::CacheMiss | ProjectionPass::CacheHit => {
                let projected =
                    store.project_with::<KindCounts, _>(&cache, entity, Freshness::Consistent)?;
                let wanted = match pass {
                    ProjectionPass::CacheMiss => CacheOutcome::Miss,
                    _ => CacheOutcome::Hit,
                };
                // The random entities repeat, so a miss pass hits on repeats.
                let repeat_hit =
                    pass == ProjectionPass::CacheMiss && projected.outcome == CacheOutcome::Hit;
                if projected.outcome != wanted && !repeat_hit {
                    unexpected += 1;
                }
                projected.state
            }
        };
        latencies.record_since(op);
        let total: u64 = state.counts.iter().sum();
        if total != expected as u64 {
            return Err(BenchError::Check(format!(
                "{entity} projects {total} events, expected {expected}"
            )));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut sample = finish(store, dir, seconds, latencies, None)?;
    sample.bytes_on_disk = None;
    if pass != ProjectionPass::NoCache {
        sample
            .extra
            .insert("unexpected_cache_outcomes".into(), unexpected as f64);
        sample
            .extra
            .insert("cache_bytes".into(), disk_bytes(cache_dir) as f64);
    }
    Ok(sample)
}
