//! `batpak events`.

use serde_json::json;

use super::Context;
use crate::cli::EventsArgs;
use crate::error::CliResult;
use crate::output::{event_row, Out, Table, EVENT_COLUMNS};

/// Lists one page of matching events.
pub fn run(context: &Context, args: &EventsArgs) -> CliResult {
    let store = context.open_read_only()?;
    let region = args.filter.region(0);
    let limit = if args.all {
        usize::MAX
    } else {
        usize::try_from(args.limit).unwrap_or(usize::MAX)
    };
    let page = store.query_page(&region, args.after, limit)?;
    let mut out = Out::stdout();
    if context.json {
        out.json_pretty(&json!({ "events": page.events, "next_after": page.next_after }))?;
        return out.flush();
    }
    let mut table = Table::new(EVENT_COLUMNS);
    for event in &page.events {
        table.row(event_row(event));
    }
    if table.is_empty() {
        eprintln!("no matching events");
    } else {
        table.print(&mut out)?;
    }
    out.flush()?;
    if let Some(after) = page.next_after {
        eprintln!("-- more events may follow: continue with --after {after}");
    }
    Ok(())
}
