//! Short, proptest-driven runs of the fuzz harnesses in `fuzz/src/harness.rs`
//! (the same code `cargo fuzz` drives for as long as you like): segment
//! recovery, the frame decoder (with `dangerous-test-hooks`), checkpoint
//! (index image) loading, coordinate and id parsing, configuration values.
//! No panic, no unbounded allocation, typed errors only; decoded frames
//! re-encode to the same event; a damaged image never changes what a store
//! holds.
//!
//! More cases: `PROPTEST_CASES=5000 cargo test --test chaos_fuzz`.

#[path = "../fuzz/src/harness.rs"]
mod harness;

use proptest::prelude::*;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Inputs that look like real segments with a few bytes changed, more often
/// than pure noise would.
fn segment_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..400),
        (
            0u8..4,
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<u16>()
        )
            .prop_map(|(mode, bytes, at)| {
                let mut input = vec![mode];
                if mode % 4 == 2 {
                    input.extend_from_slice(&at.to_le_bytes());
                }
                input.extend_from_slice(&bytes);
                input
            }),
        // A copy of the seed segment's frames with one byte flipped.
        (any::<u16>(), 1u8..=255).prop_map(|(at, mask)| {
            let seed = harness::seed_segment();
            let mut frames = seed[48.min(seed.len())..].to_vec();
            if !frames.is_empty() {
                let at = usize::from(at) % frames.len();
                frames[at] ^= mask;
            }
            let mut input = vec![1u8];
            input.extend_from_slice(&frames);
            input
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn segment_recovery_never_panics(input in segment_input()) {
        harness::segment_recovery(&input);
    }

    #[test]
    fn config_values_give_a_typed_error_or_a_working_store(
        input in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            // Values near the limits: small segments, payloads and batches.
            (0u32..3, 4000u64..5000, 0u32..300, 0u32..3, 0u64..600, 0u64..64, 0u16..3, any::<u8>(), proptest::collection::vec(0u8..40, 0..8))
                .prop_map(|(n, seg, payload, items, bytes, buffer, interval, flags, sizes)| {
                    let mut input = Vec::new();
                    input.extend_from_slice(&n.to_le_bytes());
                    input.extend_from_slice(&seg.to_le_bytes());
                    input.extend_from_slice(&payload.to_le_bytes());
                    input.extend_from_slice(&items.to_le_bytes());
                    input.extend_from_slice(&bytes.to_le_bytes());
                    input.extend_from_slice(&buffer.to_le_bytes());
                    input.extend_from_slice(&interval.to_le_bytes());
                    input.push(flags);
                    input.extend_from_slice(&sizes);
                    input
                }),
        ]
    ) {
        harness::config_values(&input);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn coordinate_parsing_never_panics(
        input in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..80),
            "\\PC{0,40}".prop_map(String::into_bytes),
            ("\\PC{0,20}", "\\PC{0,20}").prop_map(|(e, s)| format!("{e}\u{0}{s}").into_bytes()),
            ("\\PC{0,20}", "\\PC{0,20}").prop_map(|(e, s)| serde_json::json!({"entity": e, "scope": s}).to_string().into_bytes()),
            ("[0-9a-f-]{0,40}").prop_map(String::into_bytes),
        ]
    ) {
        harness::coordinate_parsing(&input);
    }
}

/// Frame bytes: noise, a noisy body behind valid length and checksum words,
/// or a real frame with a few bytes changed and its checksum fixed.
#[cfg(feature = "dangerous-test-hooks")]
fn frame_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(|bytes| {
            let mut input = vec![0u8];
            input.extend_from_slice(&bytes);
            input
        }),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(|bytes| {
            let mut input = vec![1u8];
            input.extend_from_slice(&bytes);
            input
        }),
        (
            any::<u8>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..6)
        )
            .prop_map(|(frame, at, bytes)| {
                let mut input = vec![2u8, frame];
                input.extend_from_slice(&at.to_le_bytes());
                input.extend_from_slice(&bytes);
                input
            }),
    ]
}

#[cfg(feature = "dangerous-test-hooks")]
proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn frame_decoder_never_panics_and_decoded_frames_round_trip(input in frame_input()) {
        harness::frame_decoder(&input);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_damaged_checkpoint_or_footer_never_changes_what_the_store_holds(
        mode in 0u8..3,
        pick in any::<u8>(),
        at in any::<u16>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..12),
    ) {
        let mut input = vec![mode, pick];
        if mode == 0 {
            // A whole replacement: a prefix of a real image plus noise.
            let seed = harness::seed_store();
            let images: Vec<&Vec<u8>> = seed
                .files
                .iter()
                .filter(|(name, _)| name.starts_with("checkpoints/"))
                .map(|(_, bytes)| bytes)
                .collect();
            let image = images[usize::from(pick) % images.len()];
            input.extend_from_slice(&image[..usize::from(at) % (image.len() + 1)]);
        } else {
            input.extend_from_slice(&at.to_le_bytes());
        }
        input.extend_from_slice(&bytes);
        harness::checkpoint_loading(&input);
    }
}

#[cfg(feature = "dangerous-test-hooks")]
#[test]
fn every_seed_frame_decodes_and_round_trips() {
    let frames = harness::seed_frames();
    assert_eq!(frames.len(), 3, "one single event and a batch of two");
    for frame in &frames {
        let decoded = batpak::fault::fuzzing::decode_frame(frame).unwrap();
        assert_eq!(decoded.frame_len, frame.len());
        assert_eq!(
            &decoded.reencoded, frame,
            "the writer's encoding is canonical"
        );
    }
    // A sealed noise body is rejected by the layout checks, not the checksum.
    let error = batpak::fault::fuzzing::decode_frame(&harness::seal_frame(&[7; 80])).unwrap_err();
    assert!(error.contains("malformed"), "{error}");
}

#[test]
fn the_seed_store_has_footers_and_a_checkpoint() {
    let seed = harness::seed_store();
    let names: Vec<&str> = seed.files.iter().map(|(name, _)| name.as_str()).collect();
    assert!(
        names.iter().filter(|n| n.ends_with(".footer")).count() >= 2,
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with(".checkpoint")),
        "{names:?}"
    );
    assert_eq!(seed.events.len(), 40);
    // Unchanged, it loads; with a byte flipped, it is ignored and the store
    // still holds everything.
    harness::checkpoint_loading(&[1, 0, 0, 0]);
    harness::checkpoint_loading(&[1, 0, 100, 0, 0xFF]);
}

#[test]
fn the_seed_segment_is_a_valid_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0000000000.segment"),
        harness::seed_segment(),
    )
    .unwrap();
    let store = batpak::Store::open_read_only(batpak::StoreConfig::new(dir.path())).unwrap();
    assert_eq!(store.next_sequence(), 3);
    assert!(store.verify().unwrap().is_clean());
}
