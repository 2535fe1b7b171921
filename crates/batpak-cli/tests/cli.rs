//! Runs the real `batpak` binary on stores built here.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use assert_cmd::Command;
use batpak::prelude::*;
use predicates::prelude::*;
use serde_json::{json, Value};
use tempfile::TempDir;

const MOVED: EventKind = EventKind::custom(0xF, 1);
const TURNED: EventKind = EventKind::custom(0xF, 2);
const PLACED: EventKind = EventKind::custom(0x1, 1);
const STOCKED: EventKind = EventKind::custom(0x1, 2);

/// The binary, pointed at `store`, with progress bars off.
fn batpak(store: &Path) -> Command {
    let mut command = Command::cargo_bin("batpak").expect("binary built");
    command.arg("--store").arg(store).arg("--no-progress");
    command.env_remove("BATPAK_STORE");
    command
}

fn json_of(output: &[u8]) -> Value {
    serde_json::from_slice(output)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(output)))
}

fn json_lines(output: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

fn coord(entity: &str, scope: &str) -> Coordinate {
    Coordinate::new(entity, scope).unwrap()
}

/// A store with three players' moves, an order batch with in-batch causes,
/// and events linked to earlier ones by causation and correlation.
///
/// Sequences: 0-3 plain moves (no links), 4-6 one batch (6 caused by 5,
/// 5 caused by 4, item 6 with flags and a schema version), 7 caused by 4,
/// 8 correlated with 7 (the same import batch, not by inheritance), 9
/// correlated with 0, 10 a plain move, 11 payload "needle".
struct Sample {
    dir: TempDir,
    ids: Vec<EventId>,
}

impl Sample {
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn sample_store() -> Sample {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let alice = coord("player:alice", "room:dungeon");
    let bob = coord("player:bob", "room:hall");
    let order = coord("order:1", "shop");
    let mut ids: Vec<EventId> = Vec::new();
    fn push(ids: &mut Vec<EventId>, receipt: AppendReceipt) {
        ids.push(receipt.event_id);
    }
    push(
        &mut ids,
        store.append(&alice, MOVED, &json!({"x": 1})).unwrap(),
    );
    push(
        &mut ids,
        store.append(&bob, MOVED, &json!({"x": 10})).unwrap(),
    );
    push(
        &mut ids,
        store
            .append(&alice, TURNED, &json!({"dir": "north"}))
            .unwrap(),
    );
    push(
        &mut ids,
        store
            .append(&bob, TURNED, &json!({"dir": "south"}))
            .unwrap(),
    );
    let mut batch = Batch::new();
    let placed = batch.push(BatchItem::new(&order, PLACED, &json!({"item": "apple"})).unwrap());
    let stocked = batch.push(
        BatchItem::new(&coord("stock:apple", "shop"), STOCKED, &json!(-1))
            .unwrap()
            .caused_by_item(placed),
    );
    batch.push(
        BatchItem::new(&alice, MOVED, &json!({"x": 2}))
            .unwrap()
            .caused_by_item(stocked)
            .flags(7)
            .schema_version(2),
    );
    for receipt in store.append_batch(&batch).unwrap() {
        push(&mut ids, receipt);
    }
    let placed_id = ids[4];
    push(
        &mut ids,
        store
            .append_with_options(
                &order,
                PLACED,
                &json!({"item": "pear"}),
                AppendOptions::new().causation_id(placed_id),
            )
            .unwrap(),
    );
    let (first, pear) = (ids[0], ids[7]);
    push(
        &mut ids,
        store
            .append_with_options(
                &bob,
                MOVED,
                &json!({"x": 11}),
                AppendOptions::new().correlation_id(pear),
            )
            .unwrap(),
    );
    push(
        &mut ids,
        store
            .append_with_options(
                &alice,
                MOVED,
                &json!({"x": 3}),
                AppendOptions::new().correlation_id(first),
            )
            .unwrap(),
    );
    push(
        &mut ids,
        store.append(&bob, MOVED, &json!({"x": 12})).unwrap(),
    );
    push(
        &mut ids,
        store
            .append(&alice, TURNED, &json!({"dir": "needle-in-the-log"}))
            .unwrap(),
    );
    store.close().unwrap();
    Sample { dir, ids }
}

const SAMPLE_EVENTS: u64 = 12;

fn events_json(store: &Path, args: &[&str]) -> Value {
    let output = batpak(store)
        .arg("--json")
        .arg("events")
        .args(args)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    json_of(&output)
}

fn sequences(page: &Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .expect("events array")
        .iter()
        .map(|event| event["header"]["sequence"].as_u64().unwrap())
        .collect()
}

// ---- info / stats ---------------------------------------------------------

#[test]
fn info_reports_counts_as_json_and_as_a_table() {
    let sample = sample_store();
    let output = batpak(sample.path())
        .args(["info", "--json"])
        .assert()
        .success();
    let info = json_of(&output.get_output().stdout);
    assert_eq!(info["events"], SAMPLE_EVENTS);
    assert_eq!(info["entities"], 4);
    assert_eq!(info["next_sequence"], SAMPLE_EVENTS);
    assert_eq!(info["durable_sequence"], SAMPLE_EVENTS - 1);
    assert!(info["segments"].as_u64().unwrap() >= 1);
    assert!(info["segment_bytes"].as_u64().unwrap() > 0);
    assert_ne!(info["open_report"]["index_source"], "Empty");
    assert_eq!(info["poisoned"], false);

    batpak(sample.path())
        .arg("stats")
        .assert()
        .success()
        .stdout(predicate::str::contains("events            12"))
        .stdout(predicate::str::contains("durable through   sequence 11"));
}

// ---- entities -------------------------------------------------------------

#[test]
fn entities_lists_filters_by_prefix_and_pages() {
    let sample = sample_store();
    let all = batpak(sample.path())
        .args(["--json", "entities"])
        .assert()
        .success();
    let all = json_of(&all.get_output().stdout);
    let names: Vec<&str> = all["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entity"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["order:1", "player:alice", "player:bob", "stock:apple"]
    );
    assert_eq!(all["next_after"], Value::Null);
    let alice = &all["entities"][1];
    assert_eq!(alice["events"], 5);
    assert_eq!(alice["clock"], 5);
    assert_eq!(alice["last_sequence"], 11);

    let players = batpak(sample.path())
        .args(["--json", "entities", "--prefix", "player:", "--limit", "1"])
        .assert()
        .success();
    let players = json_of(&players.get_output().stdout);
    assert_eq!(players["entities"].as_array().unwrap().len(), 1);
    assert_eq!(players["next_after"], "player:alice");
    let next = batpak(sample.path())
        .args([
            "--json",
            "entities",
            "--prefix",
            "player:",
            "--after",
            "player:alice",
        ])
        .assert()
        .success();
    let next = json_of(&next.get_output().stdout);
    assert_eq!(next["entities"][0]["entity"], "player:bob");
    assert_eq!(next["next_after"], Value::Null);

    batpak(sample.path())
        .args(["entities", "--prefix", "player:"])
        .assert()
        .success()
        .stdout(predicate::str::contains("ENTITY"))
        .stdout(predicate::str::contains("player:bob"))
        .stdout(predicate::str::contains("order:1").not());
}

// ---- events ---------------------------------------------------------------

#[test]
fn events_filter_by_entity_prefix_scope_kind_category_and_sequence() {
    let sample = sample_store();
    let path = sample.path();
    assert_eq!(
        sequences(&events_json(path, &["--entity", "player:alice"])),
        [0, 2, 6, 9, 11]
    );
    assert_eq!(
        sequences(&events_json(path, &["--prefix", "player:"])),
        [0, 1, 2, 3, 6, 8, 9, 10, 11]
    );
    assert_eq!(
        sequences(&events_json(path, &["--scope", "shop"])),
        [4, 5, 7]
    );
    for kind in ["F:002", "f:2", "0xF002", "61442"] {
        assert_eq!(
            sequences(&events_json(path, &["--kind", kind])),
            [2, 3, 11],
            "--kind {kind}"
        );
    }
    assert_eq!(
        sequences(&events_json(path, &["--category", "1"])),
        [4, 5, 7]
    );
    assert_eq!(
        sequences(&events_json(
            path,
            &[
                "--prefix",
                "player:",
                "--category",
                "F",
                "--from-seq",
                "3",
                "--to-seq",
                "9"
            ]
        )),
        [3, 6, 8, 9]
    );
    let placed = sample.ids[4].to_string();
    assert_eq!(
        sequences(&events_json(path, &["--causation", &placed])),
        [5, 7]
    );
    let first = sample.ids[0].to_string();
    assert_eq!(
        sequences(&events_json(path, &["--correlation", &first])),
        [0, 9]
    );
}

#[test]
fn events_filter_by_time() {
    let sample = sample_store();
    let path = sample.path();
    let all = events_json(path, &["--all"]);
    let time_of = |position: usize| {
        all["events"][position]["header"]["timestamp_us"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(
        sequences(&events_json(path, &["--since", "1h"])).len() as u64,
        SAMPLE_EVENTS
    );
    assert!(sequences(&events_json(path, &["--since", "2999-01-01T00:00:00Z"])).is_empty());
    assert!(sequences(&events_json(path, &["--until", "2000-01-01T00:00:00Z"])).is_empty());
    // Microsecond bounds: --since is inclusive, --until exclusive.
    let (since, until) = (time_of(5), time_of(9));
    let expected: Vec<u64> = (0..SAMPLE_EVENTS)
        .filter(|s| (since..until).contains(&time_of(*s as usize)))
        .collect();
    let selected = sequences(&events_json(
        path,
        &["--since", &since.to_string(), "--until", &until.to_string()],
    ));
    assert_eq!(selected, expected);
    assert!(selected.contains(&5));
    assert!(!selected.contains(&9));
}

#[test]
fn events_page_with_after_and_limit_until_exhausted() {
    let sample = sample_store();
    let mut after: Option<u64> = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let mut args = vec!["--limit".to_string(), "5".to_string()];
        if let Some(after) = after {
            args.extend(["--after".to_string(), after.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let page = events_json(sample.path(), &args);
        seen.extend(sequences(&page));
        pages += 1;
        match page["next_after"].as_u64() {
            Some(next) => after = Some(next),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(seen, (0..SAMPLE_EVENTS).collect::<Vec<_>>());
    assert!(pages >= 3);

    batpak(sample.path())
        .args(["events", "--limit", "2"])
        .assert()
        .success()
        .stdout(predicate::str::contains("SEQ"))
        .stdout(predicate::str::contains("player:bob"))
        .stdout(predicate::str::contains("f:001"))
        .stderr(predicate::str::contains("--after 1"));
}

// ---- show -----------------------------------------------------------------

#[test]
fn show_prints_one_event_by_id_or_sequence() {
    let sample = sample_store();
    let id = sample.ids[6].to_string();
    let by_id = batpak(sample.path())
        .args(["--json", "show", &id])
        .assert()
        .success();
    let by_id = json_of(&by_id.get_output().stdout);
    let by_sequence = batpak(sample.path())
        .args(["--json", "show", "6"])
        .assert()
        .success();
    assert_eq!(by_id, json_of(&by_sequence.get_output().stdout));
    let store = Store::open_read_only(StoreConfig::new(sample.path())).unwrap();
    let expected = store.get(sample.ids[6]).unwrap().unwrap();
    let parsed: StoredEvent = serde_json::from_value(by_id).unwrap();
    assert_eq!(parsed, expected);
    assert_eq!(parsed.header.flags, 7);
    assert_eq!(parsed.header.causation_id, Some(sample.ids[5]));

    batpak(sample.path())
        .args(["show", &id])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("event        {id}")))
        .stdout(predicate::str::contains("flags        0x0007"))
        .stdout(predicate::str::contains("\"x\": 2"));
}

#[test]
fn show_reports_missing_events_and_bad_ids() {
    let sample = sample_store();
    batpak(sample.path())
        .args(["show", "12"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("no event with sequence 12"));
    batpak(sample.path())
        .args(["show", "0193b2c4-7e1f-7a00-8000-000000000001"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("no event with id"));
    batpak(sample.path())
        .args(["show", "not-an-id"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("neither an event id"));
}

// ---- tail -----------------------------------------------------------------

#[test]
fn tail_without_follow_prints_the_last_matching_events() {
    let sample = sample_store();
    let output = batpak(sample.path())
        .args([
            "--json",
            "tail",
            "--no-follow",
            "-n",
            "2",
            "--entity",
            "player:bob",
        ])
        .assert()
        .success();
    let lines = json_lines(&output.get_output().stdout);
    let seqs: Vec<u64> = lines
        .iter()
        .map(|e| e["header"]["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [8, 10]);
    batpak(sample.path())
        .args(["tail", "--no-follow", "-n", "1"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("11 "))
        .stdout(predicate::str::contains("player:alice@room:dungeon #5"));
}

#[test]
fn tail_follows_events_a_writer_appends_after_it_started() {
    let sample = sample_store();
    let store = Store::open(StoreConfig::new(sample.path())).unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("batpak"))
        .arg("--store")
        .arg(sample.path())
        .args([
            "--json",
            "tail",
            "--prefix",
            "live:",
            "--from-seq",
            &SAMPLE_EVENTS.to_string(),
            "--max-events",
            "3",
            "--interval-ms",
            "20",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = || -> Value {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("tail printed nothing within 30 s")
            .unwrap();
        serde_json::from_str(&line).unwrap()
    };
    let live = coord("live:1", "s");
    let ignored = coord("other", "s");
    store
        .append(&ignored, MOVED, &json!("not selected"))
        .unwrap();
    store.append(&live, MOVED, &json!(1)).unwrap();
    assert_eq!(next_line()["payload"], 1);
    // Tail has printed, so it is running: these can only arrive by following.
    store
        .append(&ignored, MOVED, &json!("not selected"))
        .unwrap();
    store.append(&live, MOVED, &json!(2)).unwrap();
    assert_eq!(next_line()["payload"], 2);
    store.append(&live, MOVED, &json!(3)).unwrap();
    let third = next_line();
    assert_eq!(third["payload"], 3);
    assert_eq!(third["header"]["sequence"], SAMPLE_EVENTS + 4);
    let status = wait_with_deadline(&mut child, Duration::from_secs(30));
    assert!(status.success());
    store.close().unwrap();
}

fn wait_with_deadline(
    child: &mut std::process::Child,
    deadline: Duration,
) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            panic!("child did not exit within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- read-only beside a writer ---------------------------------------------

#[test]
fn read_commands_work_beside_a_running_writer_and_writes_are_refused() {
    let sample = sample_store();
    let writer = Store::open(StoreConfig::new(sample.path())).unwrap();
    writer
        .append(&coord("late", "s"), MOVED, &json!(1))
        .unwrap();
    let page = events_json(sample.path(), &["--entity", "late"]);
    assert_eq!(sequences(&page), [SAMPLE_EVENTS]);
    batpak(sample.path()).arg("info").assert().success();
    let input = tempfile::NamedTempFile::new().unwrap();
    batpak(sample.path())
        .arg("import")
        .arg(input.path())
        .assert()
        .code(3)
        .stderr(predicate::str::contains("locked by another writer"));
    batpak(sample.path())
        .args(["repair", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains("no damage found"));
    writer.close().unwrap();
}

// ---- export / import ---------------------------------------------------------

fn export_to(store: &Path, file: &Path, filters: &[&str]) {
    batpak(store)
        .arg("export")
        .arg("-o")
        .arg(file)
        .args(filters)
        .assert()
        .success()
        .stderr(predicate::str::contains("exported"));
}

fn import_from(store: &Path, file: &Path, extra: &[&str]) -> Value {
    let output = batpak(store)
        .args(["--json", "import"])
        .arg(file)
        .args(extra)
        .assert()
        .success();
    json_of(&output.get_output().stdout)
}

fn read_all(store: &Path) -> Vec<StoredEvent> {
    let store = Store::open_read_only(StoreConfig::new(store)).unwrap();
    store.query(&Region::all()).map(Result::unwrap).collect()
}

/// Source and copy hold the same events: same coordinates, kinds, payloads,
/// clocks, flags and schema versions in the same order, and links that point
/// at the same positions (ids are new in the copy).
fn assert_same_events(source: &[StoredEvent], copy: &[StoredEvent]) {
    assert_eq!(source.len(), copy.len());
    let position = |events: &[StoredEvent], id: EventId| events.iter().position(|e| e.id() == id);
    for (original, imported) in source.iter().zip(copy) {
        let at = original.sequence();
        assert_eq!(original.coordinate, imported.coordinate, "event {at}");
        assert_eq!(original.kind(), imported.kind(), "event {at}");
        assert_eq!(original.payload, imported.payload, "event {at}");
        assert_eq!(original.header.clock, imported.header.clock, "event {at}");
        assert_eq!(original.header.flags, imported.header.flags, "event {at}");
        assert_eq!(
            original.header.schema_version, imported.header.schema_version,
            "event {at}"
        );
        assert_eq!(
            original.header.causation_id.map(|id| position(source, id)),
            imported.header.causation_id.map(|id| position(copy, id)),
            "causation of event {at}"
        );
        assert_eq!(
            position(source, original.header.correlation_id),
            position(copy, imported.header.correlation_id),
            "correlation of event {at}"
        );
    }
}

#[test]
fn export_then_import_round_trips_every_event_and_link() {
    let sample = sample_store();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("all.jsonl");
    export_to(sample.path(), &file, &[]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count() as u64, SAMPLE_EVENTS);
    let first: StoredEvent = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first.id(), sample.ids[0]);
    assert!(first.hash.is_some());

    // Batches of one, of two (links cross batch boundaries and stay inside
    // them) and of everything.
    for batch_size in ["1", "2", "1000"] {
        let copy = work.path().join(format!("copy-{batch_size}"));
        let summary = import_from(&copy, &file, &["--batch-size", batch_size]);
        assert_eq!(summary["read"], SAMPLE_EVENTS);
        assert_eq!(summary["written"], SAMPLE_EVENTS);
        assert_eq!(summary["already_present"], 0);
        assert_eq!(summary["foreign_links"], 0);
        assert_same_events(&read_all(sample.path()), &read_all(&copy));
        assert_eq!(verify_json(&copy, 0)["events"], SAMPLE_EVENTS);
    }
    let copy = work.path().join("copy-2");

    // Exporting the copy gives the same lines but for ids, times and hashes.
    let again = work.path().join("again.jsonl");
    export_to(&copy, &again, &[]);
    let strip = |line: &str| {
        let mut value: Value = serde_json::from_str(line).unwrap();
        value.as_object_mut().unwrap().remove("hash");
        let header = value["header"].as_object_mut().unwrap();
        for field in ["event_id", "correlation_id", "causation_id", "timestamp_us"] {
            header.remove(field);
        }
        value
    };
    let original: Vec<Value> = text.lines().map(strip).collect();
    let copied: Vec<Value> = std::fs::read_to_string(&again)
        .unwrap()
        .lines()
        .map(strip)
        .collect();
    assert_eq!(original, copied);
}

#[test]
fn import_is_idempotent_when_rerun_after_an_interruption() {
    let sample = sample_store();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("all.jsonl");
    export_to(sample.path(), &file, &[]);
    let text = std::fs::read_to_string(&file).unwrap();
    // An import stopped after its first two batches of two (events 0-3 have
    // no links, so these are exactly the first batches of the full run).
    let partial = work.path().join("partial.jsonl");
    let head: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
    std::fs::write(&partial, head).unwrap();
    let copy = work.path().join("copy");
    let first = import_from(&copy, &partial, &["--batch-size", "2"]);
    assert_eq!(first["written"], 4);

    let rerun = import_from(&copy, &file, &["--batch-size", "2"]);
    assert_eq!(rerun["already_present"], 4);
    assert_eq!(rerun["written"], SAMPLE_EVENTS - 4);
    assert_same_events(&read_all(sample.path()), &read_all(&copy));

    let third = import_from(&copy, &file, &["--batch-size", "2"]);
    assert_eq!(third["written"], 0);
    assert_eq!(third["already_present"], SAMPLE_EVENTS);
    assert_eq!(read_all(&copy).len() as u64, SAMPLE_EVENTS);
}

#[test]
fn import_reads_stdin_and_filtered_exports_keep_outside_links() {
    let sample = sample_store();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("shop.jsonl");
    export_to(sample.path(), &file, &["--scope", "shop"]);
    let copy = work.path().join("copy");
    let output = batpak(&copy)
        .args(["--json", "import", "-"])
        .pipe_stdin(&file)
        .unwrap()
        .assert()
        .success();
    let summary = json_of(&output.get_output().stdout);
    assert_eq!(summary["written"], 3);
    // Event 5 and 7 are caused by 4, which is in the input: rewritten.
    assert_eq!(summary["foreign_links"], 0);
    let copied = read_all(&copy);
    assert_eq!(copied[1].header.causation_id, Some(copied[0].id()));
    assert_eq!(copied[2].header.causation_id, Some(copied[0].id()));

    // Alice's batch move is caused by, and correlated with, events outside
    // this export: both ids are kept as they were.
    let alice = work.path().join("alice.jsonl");
    export_to(
        sample.path(),
        &alice,
        &[
            "--entity",
            "player:alice",
            "--from-seq",
            "6",
            "--to-seq",
            "6",
        ],
    );
    let other = work.path().join("other");
    let summary = import_from(&other, &alice, &[]);
    assert_eq!(summary["foreign_links"], 2);
    let imported = &read_all(&other)[0];
    assert_eq!(imported.header.causation_id, Some(sample.ids[5]));
    assert_eq!(imported.header.correlation_id, sample.ids[4]);
}

#[test]
fn import_rejects_bad_lines_and_reserved_kinds_with_line_numbers() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let good = r#"{"coordinate":{"entity":"a","scope":"s"},"header":{"kind":61441},"payload":1}"#;
    let reserved = r#"{"coordinate":{"entity":"a","scope":"s"},"header":{"kind":1},"payload":2}"#;
    let file = work.path().join("input.jsonl");
    std::fs::write(&file, format!("{good}\n\n{reserved}\n")).unwrap();
    batpak(&store)
        .arg("import")
        .arg(&file)
        .assert()
        .code(3)
        .stderr(predicate::str::contains("line 3"))
        .stderr(predicate::str::contains("--skip-reserved"));
    let summary = import_from(&store, &file, &["--skip-reserved"]);
    assert_eq!(summary["skipped_reserved"], 1);
    assert_eq!(read_all(&store).len(), 1);

    std::fs::write(&file, format!("{good}\n{{\"coordinate\": 5}}\n")).unwrap();
    batpak(&store)
        .arg("import")
        .arg(&file)
        .assert()
        .code(3)
        .stderr(predicate::str::contains("line 2: not an event"));
    let bad_entity =
        r#"{"coordinate":{"entity":"","scope":"s"},"header":{"kind":61441},"payload":1}"#;
    std::fs::write(&file, format!("{bad_entity}\n")).unwrap();
    batpak(&store)
        .arg("import")
        .arg(&file)
        .assert()
        .code(3)
        .stderr(predicate::str::contains("line 1"))
        .stderr(predicate::str::contains("entity is empty"));
}

// ---- damage, repair -------------------------------------------------------

fn segment_files(store: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "segment"))
        .collect();
    files.sort();
    files
}

/// Flips one byte inside the payload of event 2 ("north"), which has valid
/// frames after it: damage, not a torn tail.
fn corrupt_event_two(store: &Path) -> (PathBuf, usize) {
    let segment = segment_files(store).remove(0);
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes
        .windows(5)
        .position(|w| w == b"north")
        .expect("payload on disk");
    bytes[at] ^= 0x20;
    std::fs::write(&segment, bytes).unwrap();
    (segment, at)
}

#[test]
fn a_corrupted_store_fails_with_exit_code_1_naming_file_and_offset() {
    let sample = sample_store();
    let (segment, _) = corrupt_event_two(sample.path());
    let name = segment.file_name().unwrap().to_string_lossy().to_string();
    // Open may trust an index image and not read every frame; every command
    // that reads the damaged event stops there.
    for command in [
        vec!["show", "2"],
        vec!["events"],
        vec!["export"],
        vec!["tail", "--no-follow"],
    ] {
        batpak(sample.path())
            .args(&command)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(name.as_str()))
            .stderr(predicate::str::contains("offset"));
    }
}

#[test]
fn repair_reports_asks_and_cuts_only_when_confirmed() {
    let sample = sample_store();
    let (segment, _) = corrupt_event_two(sample.path());
    let size_before = std::fs::metadata(&segment).unwrap().len();
    let name = segment.file_name().unwrap().to_string_lossy().to_string();

    let dry = batpak(sample.path())
        .args(["--json", "repair", "--dry-run"])
        .assert()
        .code(1);
    let report = json_of(&dry.get_output().stdout);
    assert!(report["damage"]["file"].as_str().unwrap().ends_with(&name));
    assert!(report["damage"]["bytes_after_damage"].as_u64().unwrap() > 0);
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), size_before);

    batpak(sample.path())
        .arg("repair")
        .write_stdin("n\n")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("damage:"))
        .stderr(predicate::str::contains("declined"));
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), size_before);

    batpak(sample.path())
        .arg("repair")
        .write_stdin("yes\n")
        .assert()
        .success()
        .stdout(predicate::str::contains("repaired:"))
        .stdout(predicate::str::contains("2 events remain"));
    assert!(std::fs::metadata(&segment).unwrap().len() < size_before);
    let info = batpak(sample.path())
        .args(["--json", "info"])
        .assert()
        .success();
    assert_eq!(json_of(&info.get_output().stdout)["events"], 2);
    batpak(sample.path())
        .args(["repair", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("no damage found"));
}

#[test]
fn repair_with_yes_needs_no_answer_and_reports_json() {
    let sample = sample_store();
    corrupt_event_two(sample.path());
    let output = batpak(sample.path())
        .args(["--json", "repair", "--yes"])
        .assert()
        .success();
    let report = json_of(&output.get_output().stdout);
    assert_eq!(report["events_kept"], 2);
    assert!(report["repaired"]["dropped_bytes"].as_u64().unwrap() > 0);
}

// ---- verify -----------------------------------------------------------------

fn verify_json(store: &Path, code: i32) -> Value {
    let output = batpak(store).args(["--json", "verify"]).assert().code(code);
    json_of(&output.get_output().stdout)
}

#[test]
fn verify_passes_a_clean_store_and_checks_every_link() {
    let sample = sample_store();
    let report = verify_json(sample.path(), 0);
    assert_eq!(report["clean"], true);
    assert_eq!(report["opened"], true);
    assert_eq!(report["events"], SAMPLE_EVENTS);
    assert_eq!(report["entities"], 4);
    assert!(report["links_checked"].as_u64().unwrap() >= SAMPLE_EVENTS);
    assert_eq!(report["damage"], json!([]));
    batpak(sample.path())
        .arg("verify")
        .assert()
        .success()
        .stdout(predicate::str::contains("ok: no damage found"));
}

#[test]
fn verify_on_a_corrupted_copy_exits_1_and_names_the_place() {
    let sample = sample_store();
    let (segment, at) = corrupt_event_two(sample.path());
    let name = segment.file_name().unwrap().to_string_lossy().to_string();
    let report = verify_json(sample.path(), 1);
    assert_eq!(report["clean"], false);
    let first = &report["damage"][0];
    assert!(first["file"].as_str().unwrap().ends_with(&name), "{first}");
    let offset = first["offset"].as_u64().unwrap();
    assert!(
        offset <= at as u64,
        "damage reported at {offset}, flipped byte at {at}"
    );
    batpak(sample.path())
        .arg("verify")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("DAMAGE"))
        .stdout(predicate::str::contains(name.as_str()))
        .stderr(predicate::str::contains(format!("at offset {offset}")));
}

// ---- snapshot, compact ---------------------------------------------------------

#[test]
fn snapshot_writes_a_copy_that_opens_and_verifies() {
    let sample = sample_store();
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("backup");
    let output = batpak(sample.path())
        .arg("--json")
        .arg("snapshot")
        .arg(&dest)
        .assert()
        .success();
    let report = json_of(&output.get_output().stdout);
    assert_eq!(report["events"], SAMPLE_EVENTS);
    assert_eq!(report["snapshot"]["next_sequence"], SAMPLE_EVENTS);
    assert!(report["snapshot"]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(verify_json(&dest, 0)["events"], SAMPLE_EVENTS);
    assert_eq!(read_all(&dest), read_all(sample.path()));

    // The destination must be new or empty.
    batpak(sample.path())
        .arg("snapshot")
        .arg(&dest)
        .assert()
        .code(3);
    // The engine snapshots through the writable handle: not beside a writer.
    let writer = Store::open(StoreConfig::new(sample.path())).unwrap();
    batpak(sample.path())
        .arg("snapshot")
        .arg(work.path().join("second"))
        .assert()
        .code(3)
        .stderr(predicate::str::contains("locked by another writer"));
    writer.close().unwrap();
    batpak(sample.path())
        .arg("snapshot")
        .arg(work.path().join("second"))
        .assert()
        .success()
        .stdout(predicate::str::contains("snapshot of 12 events"));
}

#[test]
fn compact_removes_and_redacts_under_a_policy_and_the_store_still_verifies() {
    let sample = sample_store();
    let before = read_all(sample.path());
    let bob_events = before
        .iter()
        .filter(|e| e.coordinate.entity() == "player:bob")
        .count() as u64;
    assert!(bob_events > 0);
    // A policy is required, and the question defaults to no.
    batpak(sample.path()).arg("compact").assert().code(2);
    batpak(sample.path())
        .args(["compact", "--drop-entity", "player:bob"])
        .write_stdin("n\n")
        .assert()
        .code(3)
        .stderr(predicate::str::contains("cancelled"));
    assert_eq!(read_all(sample.path()), before);

    let output = batpak(sample.path())
        .args([
            "--json",
            "compact",
            "--drop-entity",
            "player:bob",
            "--redact-entity",
            "order:1",
            "--yes",
        ])
        .assert()
        .success();
    let report = json_of(&output.get_output().stdout);
    assert_eq!(report["compaction"]["events_removed"], bob_events);
    assert!(report["compaction"]["events_redacted"].as_u64().unwrap() > 0);
    let after = read_all(sample.path());
    assert_eq!(after.len() as u64, before.len() as u64 - bob_events);
    for event in &after {
        assert_ne!(event.coordinate.entity(), "player:bob");
        assert_eq!(event.redacted, event.coordinate.entity() == "order:1");
    }
    assert_eq!(verify_json(sample.path(), 0)["damage"], json!([]));
    batpak(sample.path())
        .args(["compact", "--older-than", "3x", "--yes"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("s, m, h or d"));
    batpak(sample.path())
        .args(["compact", "--older-than", "1d", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains("0 event(s) removed"));
}

// ---- usage ----------------------------------------------------------------

#[test]
fn bad_arguments_give_a_clear_message_and_exit_code_2() {
    let sample = sample_store();
    let cases: &[(&[&str], &str)] = &[
        (&["frobnicate"], "unrecognized subcommand"),
        (
            &["events", "--kind", "Z:1"],
            "invalid value 'Z:1' for '--kind",
        ),
        (&["events", "--kind", "moved"], "is not a kind"),
        (&["events", "--category", "16"], "is not a category"),
        (&["events", "--since", "last tuesday"], "is not a time"),
        (
            &["events", "--entity", "a", "--prefix", "b"],
            "cannot be used with",
        ),
        (&["events", "--limit", "0"], "--limit"),
        (&["events", "--correlation", "nope"], "invalid value"),
        (&["repair", "--yes", "--dry-run"], "cannot be used with"),
    ];
    for (args, message) in cases {
        batpak(sample.path())
            .args(*args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(*message));
    }
    Command::cargo_bin("batpak")
        .unwrap()
        .env_remove("BATPAK_STORE")
        .arg("info")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--store"));
    Command::cargo_bin("batpak")
        .unwrap()
        .env("BATPAK_STORE", sample.path())
        .args(["--json", "info"])
        .assert()
        .success();
    batpak(&sample.path().join("missing"))
        .arg("info")
        .assert()
        .code(3)
        .stderr(predicate::str::contains("no store at"));
}

#[test]
fn help_shows_examples_and_exit_codes() {
    Command::cargo_bin("batpak")
        .unwrap()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Examples:"))
        .stdout(predicate::str::contains("Exit codes"));
    for command in [
        "info", "entities", "events", "show", "tail", "verify", "export", "import", "snapshot",
        "compact", "repair",
    ] {
        Command::cargo_bin("batpak")
            .unwrap()
            .args([command, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Examples:"));
    }
}
