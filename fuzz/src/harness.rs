//! The fuzz harnesses, shared by the `cargo fuzz` targets (`fuzz/`) and the
//! short proptest runs in `tests/chaos_fuzz.rs` (which include this file by
//! path). Each takes arbitrary bytes and must never panic, hang or allocate
//! without bound; typed errors are fine.

use std::path::Path;

use batpak::prelude::*;
use batpak::store::verify_dir;

/// The segment file name of segment 0.
const SEGMENT_0: &str = "0000000000.segment";
const SEGMENT_1: &str = "0000000001.segment";

/// A tiny, valid segment (header and three frames, one of them a batch of
/// two), built once per process, for harnesses that mutate real bytes.
pub fn seed_segment() -> &'static [u8] {
    static SEED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SEED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig::new(dir.path())).expect("open");
        let coord = Coordinate::new("fuzz", "s").expect("coordinate");
        let kind = EventKind::custom(1, 1);
        store.append(&coord, kind, &1).expect("append");
        let mut batch = Batch::new();
        batch.add(&coord, kind, &"two").expect("item");
        batch.add(&coord, kind, &[3, 4]).expect("item");
        store.append_batch(&batch).expect("batch");
        store.close().expect("close");
        std::fs::read(dir.path().join(SEGMENT_0)).expect("segment")
    })
}

/// Reads everything a store offers, through every read path.
fn read_everything(store: &Store) {
    // `take` first: an iterator that keeps failing must still end.
    for event in store.query(&Region::all()).take(10_000).flatten() {
        let _ = store.get(event.header.event_id);
        let _ = store.walk_ancestors(event.header.event_id, 16);
    }
    for entity in store.entities("").into_iter().take(100) {
        let _ = store.stream(&entity.entity).take(10_000).count();
        let _ = store.walk_entity_chain(&entity.entity);
    }
    let _ = store.get_by_sequence(0);
    let _ = store.verify();
}

/// Segment recovery and the frame decoder: the first byte picks how `data`
/// becomes a store directory (a whole segment file; a valid header followed
/// by `data` as frames; a valid segment with `data` spliced into it; or a
/// valid segment followed by `data` as a second segment), which is then
/// verified, opened read-only, opened writable (strict, then repair) and read.
pub fn segment_recovery(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let seed = seed_segment();
    let header_bytes = 48.min(seed.len());
    let (first, second): (Vec<u8>, Option<Vec<u8>>) = match mode % 4 {
        0 => (rest.to_vec(), None),
        1 => {
            let mut bytes = seed[..header_bytes].to_vec();
            bytes.extend_from_slice(rest);
            (bytes, None)
        }
        2 => {
            // Splice: two bytes of offset, then the bytes to write there.
            let mut bytes = seed.to_vec();
            if rest.len() >= 2 {
                let at = usize::from(u16::from_le_bytes([rest[0], rest[1]])) % bytes.len();
                for (i, b) in rest[2..].iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + i) {
                        *slot = *b;
                    } else {
                        bytes.push(*b);
                    }
                }
            }
            (bytes, None)
        }
        _ => (seed.to_vec(), Some(rest.to_vec())),
    };
    let Ok(dir) = tempfile::tempdir() else { return };
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).is_ok();
    if !write(SEGMENT_0, &first) {
        return;
    }
    if let Some(second) = &second {
        if !write(SEGMENT_1, second) {
            return;
        }
    }
    open_every_way(dir.path());
}

fn open_every_way(dir: &Path) {
    let config = || StoreConfig::new(dir);
    let _ = verify_dir(&config());
    if let Ok(store) = Store::open_read_only(config()) {
        read_everything(&store);
        let _ = store.refresh();
    }
    if let Ok(store) = Store::open(config()) {
        read_everything(&store);
        let _ = store.append(
            &Coordinate::new("after", "s").expect("coordinate"),
            EventKind::custom(1, 2),
            &"after",
        );
        let _ = store.close();
    }
    if let Ok(store) = Store::open(config().with_recovery_mode(RecoveryMode::Repair)) {
        read_everything(&store);
        if let Ok(report) = store.verify() {
            // Repair leaves a store that verifies clean.
            assert!(
                report.is_clean(),
                "repaired store still damaged: {report:?}"
            );
        }
        let _ = store.close();
    }
}

/// Coordinates, ids, kinds and headers from untrusted text: construction and
/// deserialization return typed errors, and what they accept round-trips.
pub fn coordinate_parsing(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (entity, scope) = text.split_once('\u{0}').unwrap_or((&text, "s"));
    if let Ok(coordinate) = Coordinate::new(entity, scope) {
        assert_eq!(coordinate.entity(), entity);
        assert_eq!(coordinate.scope(), scope);
        let json = serde_json::to_string(&coordinate).expect("serialize a coordinate");
        let back: Coordinate = serde_json::from_str(&json).expect("a coordinate round-trips");
        assert_eq!(back, coordinate);
    }
    if let Ok(coordinate) = serde_json::from_slice::<Coordinate>(data) {
        // Deserialization applies the same rules as `Coordinate::new`.
        let rebuilt = Coordinate::new(coordinate.entity(), coordinate.scope());
        assert_eq!(rebuilt.ok().as_ref(), Some(&coordinate));
    }
    if let Ok(id) = text.parse::<EventId>() {
        assert_eq!(id.to_string().parse::<EventId>().ok(), Some(id));
    }
    let _ = serde_json::from_slice::<EventId>(data);
    let _ = serde_json::from_slice::<EventKind>(data);
    let _ = serde_json::from_slice::<EventHeader>(data);
    let _ = serde_json::from_slice::<StoredEvent>(data);
}

fn take<const N: usize>(data: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = N.min(data.len());
    out[..n].copy_from_slice(&data[..n]);
    *data = &data[n..];
    out
}

/// Configuration values: any numbers give a typed error or a working store
/// (open, appends, a batch, close, reopen), never a panic or a huge allocation.
pub fn config_values(data: &[u8]) {
    let mut data = data;
    let cadence = u32::from_le_bytes(take(&mut data));
    let segment = u64::from_le_bytes(take(&mut data));
    let payload_max = u32::from_le_bytes(take(&mut data));
    let batch_items = u32::from_le_bytes(take(&mut data));
    let batch_bytes = u64::from_le_bytes(take(&mut data));
    let buffer = u64::from_le_bytes(take(&mut data));
    let interval_ms = u16::from_le_bytes(take(&mut data));
    let [flags] = take::<1>(&mut data);
    let Ok(dir) = tempfile::tempdir() else { return };
    let config = StoreConfig::new(dir.path())
        .with_sync_every_n_events(cadence)
        .with_segment_max_bytes(segment)
        .with_payload_max_bytes(payload_max)
        .with_batch_max_items(batch_items)
        .with_batch_max_bytes(batch_bytes)
        .with_write_buffer_bytes(usize::try_from(buffer).unwrap_or(usize::MAX))
        .with_sync_interval(std::time::Duration::from_millis(u64::from(interval_ms)))
        .with_sync_mode(if flags & 1 == 0 {
            SyncMode::SyncData
        } else {
            SyncMode::SyncAll
        })
        .with_recovery_mode(if flags & 2 == 0 {
            RecoveryMode::Strict
        } else {
            RecoveryMode::Repair
        });
    let Ok(store) = Store::open(config.clone()) else {
        return;
    };
    let coord = Coordinate::new("config", "s").expect("coordinate");
    let kind = EventKind::custom(1, 1);
    let mut acknowledged = 0u64;
    for (i, size) in data.iter().take(16).enumerate() {
        // Payload sizes around small limits; never more than 4 KiB.
        let pad = "p".repeat(usize::from(*size) * 16);
        if store
            .append(&coord, kind, &serde_json::json!({"i": i, "pad": pad}))
            .is_ok()
        {
            acknowledged += 1;
        }
    }
    let mut batch = Batch::new();
    for i in 0..(data.len() % 5) {
        let _ = batch.add(&coord, kind, &i);
    }
    if let Ok(receipts) = store.append_batch(&batch) {
        acknowledged += receipts.len() as u64;
    }
    let closed = store.close();
    if closed.is_ok() {
        if let Ok(store) = Store::open(config) {
            assert_eq!(
                store.next_sequence(),
                acknowledged,
                "every acknowledged event survives"
            );
            let _ = store.close();
        }
    }
}

/// The frames of the seed segment, each as its own byte string.
#[cfg(feature = "dangerous-test-hooks")]
pub fn seed_frames() -> Vec<Vec<u8>> {
    let seed = seed_segment();
    let mut frames = Vec::new();
    let mut at = 48;
    while at + 8 <= seed.len() {
        let body =
            u32::from_le_bytes([seed[at], seed[at + 1], seed[at + 2], seed[at + 3]]) as usize;
        let end = at + 8 + body;
        if body == 0 || end > seed.len() {
            break;
        }
        frames.push(seed[at..end].to_vec());
        at = end;
    }
    frames
}

#[cfg(feature = "dangerous-test-hooks")]
/// Writes the length and checksum words of a frame in front of `body`, so
/// the decoder's layout checks (behind the checksum) see the input.
pub fn seal_frame(body: &[u8]) -> Vec<u8> {
    let length = (body.len() as u32).to_le_bytes();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&length);
    hasher.update(body);
    let mut frame = length.to_vec();
    frame.extend_from_slice(&hasher.finalize().to_le_bytes());
    frame.extend_from_slice(body);
    frame
}

/// The frame decoder: the first byte picks how `data` becomes frame bytes
/// (as they are; as a body given valid length and checksum words; or a
/// frame of the seed segment with `data` spliced into its body and the
/// checksum fixed). Decoding never panics, and a frame that decodes
/// re-encodes (with the writer's encoder) to bytes that decode to the same
/// event.
#[cfg(feature = "dangerous-test-hooks")]
pub fn frame_decoder(data: &[u8]) {
    use batpak::fault::fuzzing::decode_frame;

    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = match mode % 3 {
        0 => rest.to_vec(),
        1 => seal_frame(rest),
        _ => {
            let frames = seed_frames();
            if frames.is_empty() || rest.len() < 3 {
                return;
            }
            let frame = &frames[usize::from(rest[0]) % frames.len()];
            let mut body = frame[8..].to_vec();
            let at = usize::from(u16::from_le_bytes([rest[1], rest[2]])) % (body.len() + 1);
            for (i, b) in rest[3..].iter().enumerate() {
                match body.get_mut(at + i) {
                    Some(slot) => *slot = *b,
                    None => body.push(*b),
                }
            }
            seal_frame(&body)
        }
    };
    let Ok(decoded) = decode_frame(&bytes) else {
        return;
    };
    assert!(
        decoded.frame_len <= bytes.len(),
        "frame longer than its bytes"
    );
    let again = decode_frame(&decoded.reencoded).expect("a re-encoded frame decodes");
    assert_eq!(
        DecodedEvent::of(&again),
        DecodedEvent::of(&decoded),
        "re-encoding changed the event"
    );
    assert_eq!(again.frame_len, decoded.reencoded.len());
    // Bytes after the frame are not part of it.
    let alone = decode_frame(&bytes[..decoded.frame_len]).expect("the frame alone decodes");
    assert_eq!(DecodedEvent::of(&alone), DecodedEvent::of(&decoded));
}

/// A decoded frame without its encoding-specific parts.
#[cfg(feature = "dangerous-test-hooks")]
#[derive(Debug, PartialEq, Eq)]
struct DecodedEvent(batpak::fault::fuzzing::DecodedFrame);

#[cfg(feature = "dangerous-test-hooks")]
impl DecodedEvent {
    fn of(frame: &batpak::fault::fuzzing::DecodedFrame) -> DecodedEvent {
        let mut frame = frame.clone();
        frame.frame_len = 0;
        frame.reencoded.clear();
        DecodedEvent(frame)
    }
}

/// A closed store of three segments: the first two sealed with footers, the
/// last with a checkpoint. Built once per process: its files by name
/// (`checkpoints/…` for images) and its events (sequence, id).
pub struct SeedStore {
    /// Relative path and contents of every file.
    pub files: Vec<(String, Vec<u8>)>,
    /// Every event, in order.
    pub events: Vec<(u64, EventId)>,
}

/// The seed store of [`checkpoint_loading`].
pub fn seed_store() -> &'static SeedStore {
    static SEED: std::sync::OnceLock<SeedStore> = std::sync::OnceLock::new();
    SEED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = StoreConfig::new(dir.path()).with_segment_max_bytes(4096);
        let store = Store::open(config).expect("open");
        let kind = EventKind::custom(1, 1);
        for i in 0..40u32 {
            let coord = Coordinate::new(format!("e{}", i % 3), "s").expect("coordinate");
            let options = AppendOptions::new().idempotency_key(format!("k{i}"));
            store
                .append_with_options(&coord, kind, &format!("{i}{}", "p".repeat(200)), options)
                .expect("append");
        }
        let events = store
            .query(&Region::all())
            .map(|e| e.map(|e| (e.header.sequence, e.header.event_id)))
            .collect::<Result<Vec<_>, _>>()
            .expect("read");
        store.close().expect("close");
        let mut files = Vec::new();
        for sub in ["", "checkpoints"] {
            for entry in std::fs::read_dir(dir.path().join(sub)).expect("list") {
                let entry = entry.expect("entry");
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.file_type().expect("type").is_file() && name != "LOCK" {
                    let relative = if sub.is_empty() {
                        name
                    } else {
                        format!("{sub}/{name}")
                    };
                    files.push((relative, std::fs::read(entry.path()).expect("read")));
                }
            }
        }
        files.sort();
        SeedStore { files, events }
    })
}

/// Whether both checksums of an index image hold (then it is, as far as
/// any reader can tell, an image the store wrote).
fn image_checksums_hold(bytes: &[u8]) -> bool {
    bytes.len() >= 96
        && crc32fast::hash(&bytes[96..]).to_le_bytes() == bytes[88..92]
        && crc32fast::hash(&bytes[..92]).to_le_bytes() == bytes[92..96]
}

/// Fixes both checksums of an index image.
fn fix_image_checksums(bytes: &mut [u8]) {
    if bytes.len() >= 96 {
        let body = crc32fast::hash(&bytes[96..]).to_le_bytes();
        bytes[88..92].copy_from_slice(&body);
        let header = crc32fast::hash(&bytes[..92]).to_le_bytes();
        bytes[92..96].copy_from_slice(&header);
    }
}

/// Checkpoint (index image) loading: one image of the seed store is
/// replaced or changed, chosen by the first bytes (the checkpoint replaced
/// whole; the checkpoint or a footer spliced; the same with both checksums
/// fixed, so the checks behind them see the input). The image is also
/// decoded and loaded on its own. Then the store is opened read-only and
/// writable: opening never fails (the log is intact; images are derived),
/// nothing panics, and unless the image still passes both checksums (a
/// forgery no reader can tell from a real image) the store holds exactly
/// the seed's events and verifies clean.
pub fn checkpoint_loading(data: &[u8]) {
    let [mode, pick, rest @ ..] = data else {
        return;
    };
    let seed = seed_store();
    let images: Vec<usize> = seed
        .files
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| name.starts_with("checkpoints/"))
        .map(|(i, _)| i)
        .collect();
    if images.is_empty() {
        return;
    }
    let target = images[usize::from(*pick) % images.len()];
    let mut image = seed.files[target].1.clone();
    match mode % 3 {
        0 => image = rest.to_vec(),
        _ => {
            if rest.len() >= 2 {
                let at = usize::from(u16::from_le_bytes([rest[0], rest[1]])) % (image.len() + 1);
                for (i, b) in rest[2..].iter().enumerate() {
                    match image.get_mut(at + i) {
                        Some(slot) => *slot = *b,
                        None => image.push(*b),
                    }
                }
            }
            if mode % 3 == 2 {
                fix_image_checksums(&mut image);
            }
        }
    }
    #[cfg(feature = "dangerous-test-hooks")]
    let _ = batpak::fault::fuzzing::load_index_image(&image);
    let forged = image_checksums_hold(&image) && image != seed.files[target].1;
    let Ok(dir) = tempfile::tempdir() else { return };
    if std::fs::create_dir(dir.path().join("checkpoints")).is_err() {
        return;
    }
    for (i, (name, bytes)) in seed.files.iter().enumerate() {
        let bytes = if i == target { &image } else { bytes };
        if std::fs::write(dir.path().join(name), bytes).is_err() {
            return;
        }
    }
    let config = || StoreConfig::new(dir.path()).with_segment_max_bytes(4096);
    let check = |store: &Store, how: &str| {
        let events: Result<Vec<(u64, EventId)>, _> = store
            .query(&Region::all())
            .take(10_000)
            .map(|e| e.map(|e| (e.header.sequence, e.header.event_id)))
            .collect();
        if forged {
            read_everything(store);
            return;
        }
        assert_eq!(
            events.as_ref().ok(),
            Some(&seed.events),
            "{how}: a damaged image changed what the store holds"
        );
        let report = store.verify().expect("verify runs");
        assert!(report.is_clean(), "{how}: {report:?}");
        read_everything(store);
    };
    match Store::open_read_only(config()) {
        Ok(store) => check(&store, "read-only open"),
        Err(error) => assert!(
            forged,
            "read-only open failed over a damaged image: {error}"
        ),
    }
    match Store::open(config()) {
        Ok(store) => {
            check(&store, "writable open");
            let _ = store.close();
        }
        Err(error) => assert!(forged, "open failed over a damaged image: {error}"),
    }
}
