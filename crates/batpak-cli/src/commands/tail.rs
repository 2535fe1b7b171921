//! `batpak tail`: the last events, then new ones as a writer adds them.
//!
//! The writer is usually another process, so the read-only store sees its
//! events only after [`Store::refresh`]; tail refreshes every
//! `--interval-ms` and prints what matched since the last look.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, SystemTime};

use batpak::{Store, StoredEvent};

use super::Context;
use crate::cli::{FilterArgs, TailArgs};
use crate::error::CliResult;
use crate::output::{event_line, Out};

/// Events read per query while catching up.
const PAGE_EVENTS: usize = 1024;

/// Prints the last matching events, then follows.
pub fn run(context: &Context, args: &TailArgs) -> CliResult {
    // Taken before open, so a write racing with open is seen as a change.
    let mut fingerprint = segments_fingerprint(&context.store);
    let store = context.open_read_only()?;
    let mut out = Out::stdout();
    let print = |out: &mut Out, event: &StoredEvent| -> CliResult {
        if context.json {
            out.json_line(event)
        } else {
            out.line(event_line(event))
        }
    };
    let visible = store.next_sequence();
    let mut printed: u64 = 0;
    let backlog_max = args
        .max_events
        .map_or(args.lines, |max| max.min(args.lines));
    for event in last_matching(&store, &args.filter, backlog_max, visible)? {
        print(&mut out, &event)?;
        printed += 1;
    }
    out.flush()?;
    if args.no_follow || args.max_events.is_some_and(|max| printed >= max) {
        return Ok(());
    }
    // The last sequence already looked at: matched or not, never printed again.
    let mut cursor = visible.checked_sub(1);
    let region = args.filter.region(0);
    loop {
        // Refresh re-reads the active segment; only pay for that when the
        // segment files changed since the last look.
        let now = segments_fingerprint(&context.store);
        let changed = now.is_none() || now != fingerprint;
        fingerprint = now;
        if changed && store.refresh()? > 0 {
            loop {
                let page = store.query_page(&region, cursor, PAGE_EVENTS)?;
                for event in &page.events {
                    print(&mut out, event)?;
                    cursor = Some(event.header.sequence);
                    printed += 1;
                    if args.max_events == Some(printed) {
                        return out.flush();
                    }
                }
                match page.next_after {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            cursor = cursor.max(store.next_sequence().checked_sub(1));
            out.flush()?;
        }
        std::thread::sleep(Duration::from_millis(args.interval_ms));
    }
}

/// Name, length and modification time of every segment file: changes
/// whenever a writer appends or starts, seals or removes a segment. `None`
/// when the directory cannot be listed, which never compares equal to a
/// listing, so the next look refreshes.
type Fingerprint = Option<Vec<(OsString, u64, Option<SystemTime>)>>;

fn segments_fingerprint(dir: &Path) -> Fingerprint {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "segment"))
        .filter_map(|entry| {
            let metadata = entry.metadata().ok()?;
            Some((entry.file_name(), metadata.len(), metadata.modified().ok()))
        })
        .collect();
    files.sort();
    Some(files)
}

/// The last `count` events matching `filter` among sequences below `visible`,
/// oldest first. Looks back over a growing window of sequences so a tail of a
/// large store reads only its end.
fn last_matching(
    store: &Store,
    filter: &FilterArgs,
    count: u64,
    visible: u64,
) -> CliResult<Vec<StoredEvent>> {
    if count == 0 || visible == 0 {
        return Ok(Vec::new());
    }
    let capacity = usize::try_from(count).unwrap_or(usize::MAX);
    let mut window = count.saturating_mul(4).max(256);
    loop {
        let floor = visible.saturating_sub(window);
        let mut kept: VecDeque<StoredEvent> = VecDeque::new();
        for event in store.query(&filter.region(floor)) {
            let event = event?;
            if event.header.sequence >= visible {
                break;
            }
            if kept.len() == capacity {
                kept.pop_front();
            }
            kept.push_back(event);
        }
        if kept.len() == capacity || floor == 0 {
            return Ok(kept.into());
        }
        window = window.saturating_mul(8);
    }
}
