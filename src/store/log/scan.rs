//! Walking the frames of one segment on open, refresh and verify.
//!
//! The scanner hands complete units to a callback: a single event, or every
//! item of an atomic batch at once, and only once the batch's last item was
//! read and checked. It stops at the first byte that is not a valid frame
//! and says whether any valid frame follows (which tells a torn tail from
//! damage in the middle of the log).

use super::frame::{decode_frame, FrameError, FrameView, FRAME_PREFIX_BYTES};

/// How a scan of a segment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// Every byte was consumed (a zero-filled tail counts as unused space).
    Clean,
    /// The data stops being valid at `offset`.
    Damaged {
        /// Where the last complete unit ends: the place to cut.
        cut_offset: u64,
        /// The first bad byte.
        offset: u64,
        reason: String,
        /// True if a valid frame starts somewhere after `offset`.
        valid_frame_after: bool,
    },
}

/// A frame and where it starts in the segment.
pub(crate) type Located<'a> = (FrameView<'a>, u64);

/// Scans `bytes` (a whole segment) from `start`. `next_sequence` is the
/// sequence the first frame must carry; with `allow_gaps` any larger one will
/// do (compacted segments). `on_unit` receives each complete unit and may
/// reject it with a reason, which ends the scan as damage at that unit.
pub(crate) fn scan_frames<'a>(
    bytes: &'a [u8],
    start: usize,
    mut next_sequence: u64,
    allow_gaps: bool,
    mut on_unit: impl FnMut(&[Located<'a>]) -> Result<(), String>,
) -> ScanEnd {
    let mut at = start;
    let mut unit: Vec<Located<'a>> = Vec::new();
    let mut unit_start = start;
    let damaged = |cut: usize, offset: usize, reason: String| ScanEnd::Damaged {
        cut_offset: cut as u64,
        offset: offset as u64,
        valid_frame_after: valid_frame_after(bytes, offset + 1),
        reason,
    };
    loop {
        if at == bytes.len() {
            break;
        }
        let view = match decode_frame(&bytes[at..]) {
            Ok(view) => view,
            Err(FrameError::Zero) if bytes[at..].iter().all(|&b| b == 0) => {
                if unit.is_empty() {
                    // Space written ahead of the log (preallocation) or
                    // zeroed after a failed write: the log ends here.
                    return ScanEnd::Damaged {
                        cut_offset: at as u64,
                        offset: at as u64,
                        reason: "unwritten (zero-filled) space after the last frame".into(),
                        valid_frame_after: false,
                    };
                }
                return damaged(
                    unit_start,
                    at,
                    "atomic batch ends before its last item".into(),
                );
            }
            Err(error) => return damaged(unit_start, at, error.to_string()),
        };
        let sequence_ok = if allow_gaps {
            view.sequence >= next_sequence
        } else {
            view.sequence == next_sequence
        };
        if view.is_stub() && !allow_gaps {
            return damaged(
                unit_start,
                at,
                format!(
                    "stub of a removed event (sequence {}) in a segment that was never compacted",
                    view.sequence
                ),
            );
        }
        if !sequence_ok {
            return damaged(
                unit_start,
                at,
                format!(
                    "frame carries sequence {} where {} was expected",
                    view.sequence, next_sequence
                ),
            );
        }
        if let Some((previous, _)) = unit.last() {
            if previous.batch_remaining != view.batch_remaining + 1 {
                return damaged(
                    unit_start,
                    at,
                    format!(
                        "batch item says {} items follow, after one that said {}",
                        view.batch_remaining, previous.batch_remaining
                    ),
                );
            }
        } else {
            unit_start = at;
        }
        next_sequence = view.sequence + 1;
        let frame_len = view.frame_len;
        let remaining = view.batch_remaining;
        unit.push((view, at as u64));
        at += frame_len;
        if remaining == 0 {
            if let Err(reason) = on_unit(&unit) {
                return ScanEnd::Damaged {
                    cut_offset: unit_start as u64,
                    offset: unit_start as u64,
                    reason,
                    valid_frame_after: true,
                };
            }
            unit.clear();
            unit_start = at;
        }
    }
    if unit.is_empty() {
        ScanEnd::Clean
    } else {
        damaged(
            unit_start,
            at,
            "atomic batch ends before its last item".into(),
        )
    }
}

/// True if a frame with a valid checksum starts at any offset from `from` on.
/// Only runs when damage was found, to tell a torn tail from mid-log damage.
pub(crate) fn valid_frame_after(bytes: &[u8], from: usize) -> bool {
    let mut at = from;
    while at + FRAME_PREFIX_BYTES <= bytes.len() {
        if decode_frame(&bytes[at..]).is_ok() {
            return true;
        }
        at += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::frame::{encode_frame, FrameFields};
    use super::*;
    use crate::{EventId, EventKind};

    fn frame(sequence: u64, batch_remaining: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let fields = FrameFields {
            sequence,
            clock: sequence + 1,
            timestamp_us: 0,
            event_id: EventId::from_bytes([sequence as u8; 16]),
            batch_remaining,
            kind: EventKind::custom(1, 1),
            flags: 0,
            schema_version: 0,
            correlation_id: None,
            causation_id: None,
            idempotency_key: None,
            entity: "e",
            scope: "s",
            payload: b"{}",
        };
        encode_frame(&fields, None, &mut out);
        out
    }

    fn units(bytes: &[u8]) -> (Vec<Vec<u64>>, ScanEnd) {
        let mut seen = Vec::new();
        let end = scan_frames(bytes, 0, 0, false, |unit| {
            seen.push(unit.iter().map(|(v, _)| v.sequence).collect());
            Ok(())
        });
        (seen, end)
    }

    #[test]
    fn delivers_singles_and_whole_batches() {
        let bytes = [
            frame(0, 0),
            frame(1, 2),
            frame(2, 1),
            frame(3, 0),
            frame(4, 0),
        ]
        .concat();
        let (seen, end) = units(&bytes);
        assert_eq!(seen, vec![vec![0], vec![1, 2, 3], vec![4]]);
        assert_eq!(end, ScanEnd::Clean);
    }

    #[test]
    fn a_torn_batch_is_cut_at_its_start() {
        let single = frame(0, 0);
        let bytes = [single.clone(), frame(1, 2), frame(2, 1)].concat();
        let (seen, end) = units(&bytes);
        assert_eq!(seen, vec![vec![0]]);
        match end {
            ScanEnd::Damaged {
                cut_offset,
                valid_frame_after,
                ..
            } => {
                assert_eq!(cut_offset, single.len() as u64);
                assert!(!valid_frame_after);
            }
            other => panic!("expected damage, got {other:?}"),
        }
    }

    #[test]
    fn every_cut_of_a_log_leaves_only_whole_units() {
        let bytes = [frame(0, 0), frame(1, 1), frame(2, 0), frame(3, 0)].concat();
        for cut in 0..=bytes.len() {
            let (seen, end) = units(&bytes[..cut]);
            let delivered: usize = seen.iter().map(Vec::len).sum();
            for unit in &seen {
                assert!(unit == &vec![0] || unit == &vec![1, 2] || unit == &vec![3]);
            }
            if let ScanEnd::Damaged {
                valid_frame_after, ..
            } = end
            {
                assert!(!valid_frame_after, "cut {cut}");
            }
            assert!(delivered <= 4);
        }
    }

    #[test]
    fn damage_before_valid_data_is_reported_as_such() {
        let mut bytes = [frame(0, 0), frame(1, 0), frame(2, 0)].concat();
        let second = frame(0, 0).len();
        bytes[second + 20] ^= 0xFF;
        let (seen, end) = units(&bytes);
        assert_eq!(seen, vec![vec![0]]);
        match end {
            ScanEnd::Damaged {
                offset,
                valid_frame_after,
                ..
            } => {
                assert_eq!(offset, second as u64);
                assert!(valid_frame_after);
            }
            other => panic!("expected damage, got {other:?}"),
        }
    }

    #[test]
    fn zero_filled_tail_ends_the_log_and_sequence_gaps_are_damage() {
        let mut bytes = frame(0, 0);
        let end = bytes.len() as u64;
        bytes.extend_from_slice(&[0u8; 100]);
        match units(&bytes).1 {
            ScanEnd::Damaged {
                cut_offset,
                valid_frame_after,
                ..
            } => {
                assert_eq!(cut_offset, end);
                assert!(!valid_frame_after);
            }
            other => panic!("expected the log to end at the zeros, got {other:?}"),
        }
        let gap = [frame(0, 0), frame(2, 0)].concat();
        assert!(matches!(units(&gap).1, ScanEnd::Damaged { .. }));
    }
}
