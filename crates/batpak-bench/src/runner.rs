//! The plan of one run: which workloads, what sizes, in which order, and the
//! loop that repeats them, interleaving engines.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::child::{run_crash, run_open, ChildEngine, OpenOutcome};
use crate::error::{io_err, BenchError, BenchResult};
use crate::fixture::{Fixture, ENTITY_COUNT};
use crate::measure::{disk_bytes, peak_rss_bytes, reset_peak_rss};
use crate::report::{Row, Sample};
use crate::sqlite_engine::Synchronous;
use crate::{batpak_engine, physical, sqlite_engine};

/// The workload groups `--only` selects from.
pub const WORKLOAD_IDS: [&str; 9] = ["P1", "P2", "W1", "W2", "W3", "W4", "W5", "W6", "W7"];

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// P1 syncs.
    pub p1: usize,
    /// P2 records.
    pub p2: usize,
    /// W1 relaxed appends.
    pub w1: usize,
    /// W2 durable appends.
    pub w2: usize,
    /// W3 batches.
    pub w3_batches: usize,
    /// W3 events per batch.
    pub w3_batch_size: usize,
    /// W4 appends in total, split over the threads.
    pub w4: usize,
    /// Events in the big store of W5-W7.
    pub big: usize,
    /// W6 entities read.
    pub w6_entities: usize,
}

impl Sizes {
    /// TARGETS.md sizes, or small ones for a smoke run.
    pub fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                p1: 200,
                p2: 100_000,
                w1: 5_000,
                w2: 200,
                w3_batches: 50,
                w3_batch_size: 100,
                w4: 400,
                big: 20_000,
                w6_entities: 100,
            }
        } else {
            Sizes {
                p1: 2_000,
                p2: 1_000_000,
                w1: 100_000,
                w2: 2_000,
                w3_batches: 1_000,
                w3_batch_size: 100,
                w4: 4_000,
                big: 1_000_000,
                w6_entities: 1_000,
            }
        }
    }
}

/// What the user asked for.
pub struct Plan {
    /// Workload groups to run (`W1`, `P2`, ...).
    pub only: Vec<String>,
    /// Engines to run (`batpak`, `sqlite`); the physical loops always run.
    pub engines: Vec<String>,
    /// True for `--surface native`: adds the projection rows.
    pub native: bool,
    /// Repetitions of each workload.
    pub repeat: u32,
    /// Sizes.
    pub sizes: Sizes,
    /// Where the data goes.
    pub dir: PathBuf,
}

impl Plan {
    fn wants(&self, id: &str) -> bool {
        self.only.iter().any(|o| o == id)
    }

    fn wants_engine(&self, engine: &str) -> bool {
        engine == "raw" || self.engines.iter().any(|e| e == engine)
    }
}

/// The samples and errors of one engine on one workload, so far.
struct PendingRow {
    engine: String,
    workload: String,
    n: u64,
    samples: Vec<Sample>,
    errors: Vec<String>,
}

/// Collects samples per (engine, workload) in the order they first appear.
struct Collector {
    rows: Vec<PendingRow>,
}

/// One engine's side of a workload: runs one sample in a fresh directory.
type Work<'a> = &'a dyn Fn(&Path) -> BenchResult<Sample>;

/// One engine on one workload: `group` is the id `--only` selects it by,
/// `id` the row it reports to.
struct Job<'a> {
    group: &'static str,
    id: String,
    n: usize,
    engine: &'static str,
    work: Work<'a>,
}

impl<'a> Job<'a> {
    fn new(
        group: &'static str,
        id: &str,
        n: usize,
        engine: &'static str,
        work: Work<'a>,
    ) -> Job<'a> {
        Job {
            group,
            id: id.to_string(),
            n,
            engine,
            work,
        }
    }
}

impl Collector {
    fn add(&mut self, engine: &str, workload: &str, n: usize, result: BenchResult<Sample>) {
        let position = self
            .rows
            .iter()
            .position(|r| r.engine == engine && r.workload == workload);
        let index = match position {
            Some(index) => index,
            None => {
                self.rows.push(PendingRow {
                    engine: engine.into(),
                    workload: workload.into(),
                    n: n as u64,
                    samples: Vec::new(),
                    errors: Vec::new(),
                });
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[index];
        match result {
            Ok(sample) => {
                let waited = match sample.extra.get(batpak_engine::SYNC_WAIT_MS) {
                    Some(ms) => format!("  (waited {ms:.1}ms for syncs)"),
                    None => String::new(),
                };
                eprintln!(
                    "  {engine:<7} {workload:<9} rep {}: {}{waited}",
                    row.samples.len() + row.errors.len() + 1,
                    crate::report::duration(sample.seconds)
                );
                row.samples.push(sample);
            }
            Err(error) => {
                eprintln!("  {engine:<7} {workload:<9} FAILED: {error}");
                row.errors.push(error.to_string());
            }
        }
    }

    fn finish(self) -> Vec<Row> {
        self.rows
            .into_iter()
            .map(|r| Row::aggregate(&r.engine, &r.workload, r.n, r.samples, r.errors))
            .collect()
    }
}

/// Runs `work` with the peak-RSS counter reset, turning a panic (the engine's
/// `todo!`s before it exists) into an error.
fn measured(work: impl FnOnce() -> BenchResult<Sample>) -> BenchResult<Sample> {
    reset_peak_rss();
    let result = catch_unwind(AssertUnwindSafe(work)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        BenchError::Panicked(message)
    })?;
    let mut sample = result?;
    if sample.peak_rss_bytes.is_none() {
        sample.peak_rss_bytes = peak_rss_bytes();
    }
    Ok(sample)
}

/// A fresh, empty directory for one sample.
fn fresh(dir: &Path) -> BenchResult<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io_err("remove", dir))?;
    }
    std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    Ok(dir.to_path_buf())
}

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs the plan and returns one row per engine and workload.
pub fn run(plan: &Plan, fixture: &Fixture) -> BenchResult<Vec<Row>> {
    let sizes = plan.sizes;
    let scratch = plan.dir.join("scratch");
    let mut collector = Collector { rows: Vec::new() };
    let reps = plan.repeat.max(1);

    // One group's jobs run interleaved, repetition by repetition: a ratio
    // between rows of a group (a workload and the physical limit it is
    // judged against, or two workloads of one engine) compares samples taken
    // side by side, so load that comes and goes on a shared machine moves
    // both.
    let mut interleaved = |jobs: &[Job<'_>]| -> BenchResult<()> {
        let jobs: Vec<&Job<'_>> = jobs
            .iter()
            .filter(|job| plan.wants(job.group) && plan.wants_engine(job.engine))
            .collect();
        let mut announced: Vec<&str> = Vec::new();
        for job in &jobs {
            if !announced.contains(&job.id.as_str()) {
                eprintln!("{} (n = {})", job.id, job.n);
                announced.push(&job.id);
            }
        }
        for _ in 0..reps {
            for job in &jobs {
                let dir = fresh(&scratch.join(format!("{}-{}", job.id, job.engine)))?;
                collector.add(job.engine, &job.id, job.n, measured(|| (job.work)(&dir)));
                remove(&dir);
            }
        }
        Ok(())
    };

    // P2 beside W1 (W1/P2).
    interleaved(&[
        Job::new("P2", "P2", sizes.p2, "raw", &|d| {
            physical::framing_loop(d, fixture, sizes.p2)
        }),
        Job::new("W1", "W1", sizes.w1, "batpak", &|d| {
            batpak_engine::single_appends(fixture, d, sizes.w1, 1000)
        }),
        Job::new("W1", "W1", sizes.w1, "sqlite", &|d| {
            sqlite_engine::single_appends(fixture, d, sizes.w1, Synchronous::Normal)
        }),
    ])?;
    // The durable rows share the disk: P1 beside W2 (W2/P1) and W2 beside
    // W4 (W4x8/W2).
    let w4x2 = sizes.w4 / 2 * 2;
    let w4x8 = sizes.w4 / 8 * 8;
    interleaved(&[
        Job::new("P1", "P1", sizes.p1, "raw", &|d| {
            physical::fdatasync_appends(d, sizes.p1)
        }),
        Job::new("P1", "P1-rewrite", sizes.p1, "raw", &|d| {
            physical::fdatasync_overwrites(d, sizes.p1)
        }),
        Job::new("W2", "W2", sizes.w2, "batpak", &|d| {
            batpak_engine::single_appends(fixture, d, sizes.w2, 1)
        }),
        Job::new("W2", "W2", sizes.w2, "sqlite", &|d| {
            sqlite_engine::single_appends(fixture, d, sizes.w2, Synchronous::Full)
        }),
        Job::new("W4", "W4x2", w4x2, "batpak", &|d| {
            batpak_engine::concurrent_appends(fixture, d, 2, w4x2)
        }),
        Job::new("W4", "W4x2", w4x2, "sqlite", &|d| {
            sqlite_engine::concurrent_appends(fixture, d, 2, w4x2)
        }),
        Job::new("W4", "W4x8", w4x8, "batpak", &|d| {
            batpak_engine::concurrent_appends(fixture, d, 8, w4x8)
        }),
        Job::new("W4", "W4x8", w4x8, "sqlite", &|d| {
            sqlite_engine::concurrent_appends(fixture, d, 8, w4x8)
        }),
    ])?;
    let (count, size) = (sizes.w3_batches, sizes.w3_batch_size);
    interleaved(&[
        Job::new("W3", "W3", count * size, "batpak", &|d| {
            batpak_engine::batches(fixture, d, count, size)
        }),
        Job::new("W3", "W3", count * size, "sqlite", &|d| {
            sqlite_engine::batches(fixture, d, count, size)
        }),
    ])?;
    let wants_big = plan.wants("W5") || plan.wants("W6") || plan.wants("W7");
    if wants_big {
        let big = BigStores::prepare(plan, fixture, sizes.big)?;
        if plan.wants("W5") {
            w5(&big, reps, &mut collector)?;
        }
        let mut rng = fastrand::Rng::with_seed(0xBA7_BA4);
        let names: Vec<&str> = (0..sizes.w6_entities)
            .map(|_| fixture.entity_name(rng.usize(..ENTITY_COUNT)))
            .collect();
        let per_entity = sizes.big / ENTITY_COUNT;
        if plan.wants("W6") {
            eprintln!("W6 ({} entities of {per_entity} events)", names.len());
            for _ in 0..reps {
                if let Some(dir) = &big.batpak {
                    collector.add(
                        "batpak",
                        "W6",
                        names.len(),
                        measured(|| batpak_engine::entity_reads(dir, &names, per_entity)),
                    );
                }
                if let Some(dir) = &big.sqlite {
                    collector.add(
                        "sqlite",
                        "W6",
                        names.len(),
                        measured(|| sqlite_engine::entity_reads(dir, &names, per_entity)),
                    );
                }
            }
        }
        if plan.wants("W6") && plan.native {
            projection_rows(plan, &big, &names, per_entity, &mut collector)?;
        }
        if plan.wants("W7") {
            let n = sizes.big as u64;
            eprintln!("W7 (replay {n} events)");
            for _ in 0..reps {
                if let Some(dir) = &big.batpak {
                    collector.add(
                        "batpak",
                        "W7",
                        sizes.big,
                        measured(|| batpak_engine::replay(dir, n)),
                    );
                }
                if let Some(dir) = &big.sqlite {
                    collector.add(
                        "sqlite",
                        "W7",
                        sizes.big,
                        measured(|| sqlite_engine::replay(dir, n)),
                    );
                }
            }
        }
        for (engine, error) in &big.errors {
            collector.add(
                engine,
                "W5-build",
                sizes.big,
                Err(BenchError::Child(error.clone())),
            );
        }
    }
    Ok(collector.finish())
}

/// The big store and database of W5-W7, built once and reused while their
/// build parameters stay the same.
struct BigStores {
    root: PathBuf,
    events: usize,
    batpak: Option<PathBuf>,
    sqlite: Option<PathBuf>,
    errors: Vec<(&'static str, String)>,
}

/// What the big stores were built with; a change forces a rebuild.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct BuildMarker {
    events: usize,
    entities: usize,
    fixture_version: u32,
    engine: String,
}

/// Bump when the fixture (payloads, kinds, entities) changes.
const FIXTURE_VERSION: u32 = 2;

impl BigStores {
    fn prepare(plan: &Plan, fixture: &Fixture, events: usize) -> BenchResult<BigStores> {
        let root = plan.dir.join(format!("big-{events}"));
        std::fs::create_dir_all(&root).map_err(io_err("create", &root))?;
        let mut stores = BigStores {
            root: root.clone(),
            events,
            batpak: None,
            sqlite: None,
            errors: Vec::new(),
        };
        for engine in ["batpak", "sqlite"] {
            if !plan.wants_engine(engine) {
                continue;
            }
            match prepare_one(&root, fixture, events, engine) {
                Ok(path) if engine == "batpak" => stores.batpak = Some(path),
                Ok(path) => stores.sqlite = Some(path),
                Err(error) => {
                    eprintln!("  {engine} big store unavailable: {error}");
                    stores.errors.push((engine, error.to_string()));
                }
            }
        }
        Ok(stores)
    }
}

fn prepare_one(
    root: &Path,
    fixture: &Fixture,
    events: usize,
    engine: &str,
) -> BenchResult<PathBuf> {
    let path = root.join(engine);
    let marker_path = root.join(format!("{engine}.marker.json"));
    let wanted = BuildMarker {
        events,
        entities: ENTITY_COUNT,
        fixture_version: FIXTURE_VERSION,
        engine: engine.into(),
    };
    let count = |path: &Path| -> BenchResult<u64> {
        let counted = catch_unwind(AssertUnwindSafe(|| match engine {
            "batpak" => batpak_engine::count_events(path),
            _ => sqlite_engine::count_events(path),
        }));
        counted.map_err(|_| BenchError::Panicked(format!("{engine} panicked counting events")))?
    };
    let existing: Option<BuildMarker> = std::fs::read_to_string(&marker_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    if existing.as_ref() == Some(&wanted) && path.exists() {
        match count(&path) {
            Ok(found) if found == events as u64 => {
                eprintln!(
                    "{engine} big store of {events} events reused ({})",
                    path.display()
                );
                return Ok(path);
            }
            Ok(found) => {
                eprintln!("{engine} big store holds {found} events, not {events}: rebuilding")
            }
            Err(error) => eprintln!("{engine} big store does not open ({error}): rebuilding"),
        }
    }
    let _ = std::fs::remove_file(&marker_path);
    let path = fresh(&path)?;
    eprintln!(
        "building the {engine} big store of {events} events in {}",
        path.display()
    );
    let started = std::time::Instant::now();
    let built = catch_unwind(AssertUnwindSafe(|| match engine {
        "batpak" => batpak_engine::build_big(fixture, &path, events),
        _ => sqlite_engine::build_big(fixture, &path, events),
    }));
    built
        .map_err(|_| BenchError::Panicked(format!("{engine} panicked building the big store")))??;
    let found = count(&path)?;
    if found != events as u64 {
        return Err(BenchError::Check(format!(
            "{engine} big store holds {found} events after build, expected {events}"
        )));
    }
    eprintln!(
        "  built in {:.1}s, {} on disk",
        started.elapsed().as_secs_f64(),
        crate::report::bytes_text(disk_bytes(&path) as f64)
    );
    let text = serde_json::to_string_pretty(&wanted)?;
    std::fs::write(&marker_path, text).map_err(io_err("write", &marker_path))?;
    Ok(path)
}

/// Reads every file under `dir` once, so a timed open finds the store in the
/// page cache (W5 measures warm opens, for both engines alike).
fn warm_dir(dir: &Path) -> BenchResult<()> {
    for entry in std::fs::read_dir(dir).map_err(io_err("read dir", dir))? {
        let entry = entry.map_err(io_err("read dir", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_err("stat", &path))?;
        if kind.is_dir() {
            warm_dir(&path)?;
        } else if kind.is_file() {
            let mut file = std::fs::File::open(&path).map_err(io_err("open", &path))?;
            std::io::copy(&mut file, &mut std::io::sink()).map_err(io_err("read", &path))?;
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> BenchResult<()> {
    std::fs::create_dir_all(to).map_err(io_err("create", to))?;
    for entry in std::fs::read_dir(from).map_err(io_err("read dir", from))? {
        let entry = entry.map_err(io_err("read dir", from))?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type().map_err(io_err("stat", entry.path()))?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).map_err(io_err("copy", entry.path()))?;
        }
    }
    Ok(())
}

fn open_sample(outcome: OpenOutcome) -> Sample {
    let mut sample = Sample {
        seconds: outcome.open_s,
        peak_rss_bytes: outcome.rss_after_read_bytes,
        ..Sample::default()
    };
    let extra = &mut sample.extra;
    extra.insert("read_ms".into(), outcome.read_s * 1e3);
    extra.insert("events_read".into(), outcome.events_read as f64);
    extra.insert("events".into(), outcome.events as f64);
    if let Some(bytes) = outcome.rss_after_open_bytes {
        extra.insert("rss_after_open_bytes".into(), bytes as f64);
    }
    if let Some(bytes) = outcome.rss_now_after_open_bytes {
        extra.insert("rss_now_after_open_bytes".into(), bytes as f64);
    }
    if let Some(bytes) = outcome.index_memory_bytes {
        extra.insert("index_memory_bytes".into(), bytes as f64);
    }
    if !outcome.detail.is_empty() {
        eprintln!("    {}", outcome.detail);
    }
    sample
}

fn w5(big: &BigStores, reps: u32, collector: &mut Collector) -> BenchResult<()> {
    eprintln!("W5 (open {} events, clean and after a crash)", big.events);
    let entity = "entity-7";
    let engines = [
        ("batpak", ChildEngine::Batpak, &big.batpak),
        ("sqlite", ChildEngine::Sqlite, &big.sqlite),
    ];
    let mut rng = fastrand::Rng::with_seed(5);
    for _ in 0..reps {
        for (name, engine, path) in engines {
            if let Some(path) = path {
                // Warm, as the crash case (just copied) is: the store's files
                // may have left the page cache since they were last read.
                let outcome = warm_dir(path)
                    .and_then(|()| run_open(engine, path, entity))
                    .map(open_sample);
                collector.add(name, "W5-clean", 1, outcome);
            }
        }
        for (name, engine, path) in engines {
            if let Some(path) = path {
                let crash_dir = big.root.join(format!("crash-{name}"));
                let result = (|| {
                    fresh(&crash_dir)?;
                    copy_dir(path, &crash_dir)?;
                    run_crash(engine, &crash_dir, Duration::from_millis(rng.u64(5..40)))?;
                    run_open(engine, &crash_dir, entity).map(open_sample)
                })();
                collector.add(name, "W5-crash", 1, result);
                remove(&crash_dir);
            }
        }
    }
    Ok(())
}

/// The projection rows of the native surface: the W6 entities folded into
/// per-kind counts through `Store::project` (no cache), through an empty
/// `FileCache` (misses) and through the filled one (hits), and the same fold
/// on SQLite.
fn projection_rows(
    plan: &Plan,
    big: &BigStores,
    names: &[&str],
    per_entity: usize,
    collector: &mut Collector,
) -> BenchResult<()> {
    use crate::batpak_engine::ProjectionPass;
    eprintln!("W6p (projections of {} entities)", names.len());
    let cache_dir = plan.dir.join("projection-cache");
    for _ in 0..plan.repeat.max(1) {
        if let Some(dir) = &big.batpak {
            fresh(&cache_dir)?;
            for (workload, pass) in [
                ("W6p-nocache", ProjectionPass::NoCache),
                ("W6p-miss", ProjectionPass::CacheMiss),
                ("W6p-hit", ProjectionPass::CacheHit),
            ] {
                collector.add(
                    "batpak",
                    workload,
                    names.len(),
                    measured(|| {
                        batpak_engine::projections(dir, &cache_dir, names, per_entity, pass)
                    }),
                );
            }
            remove(&cache_dir);
        }
        if let Some(dir) = &big.sqlite {
            collector.add(
                "sqlite",
                "W6p",
                names.len(),
                measured(|| sqlite_engine::projections(dir, names, per_entity)),
            );
        }
    }
    Ok(())
}
