//! `batpak entities`.

use serde_json::json;

use super::Context;
use crate::cli::EntitiesArgs;
use crate::error::CliResult;
use crate::output::{Align, Out, Table};

/// Lists entities, paged by name.
pub fn run(context: &Context, args: &EntitiesArgs) -> CliResult {
    let store = context.open_read_only()?;
    let limit = if args.all { usize::MAX } else { args.limit };
    let mut entities: Vec<_> = store
        .entities(&args.prefix)
        .into_iter()
        .filter(|info| args.after.as_ref().is_none_or(|after| &info.entity > after))
        .take(limit.saturating_add(1))
        .collect();
    let more = entities.len() > limit;
    entities.truncate(limit);
    let next_after = if more {
        entities.last().map(|info| info.entity.clone())
    } else {
        None
    };
    let mut out = Out::stdout();
    if context.json {
        out.json_pretty(&json!({ "entities": entities, "next_after": next_after }))?;
        return out.flush();
    }
    let mut table = Table::new(&[
        ("ENTITY", Align::Left),
        ("EVENTS", Align::Right),
        ("CLOCK", Align::Right),
        ("LAST SEQ", Align::Right),
    ]);
    for info in &entities {
        table.row(vec![
            info.entity.clone(),
            info.events.to_string(),
            info.clock.to_string(),
            info.last_sequence.to_string(),
        ]);
    }
    if table.is_empty() {
        eprintln!("no matching entities");
    } else {
        table.print(&mut out)?;
    }
    out.flush()?;
    if let Some(after) = next_after {
        eprintln!("-- more entities: continue with --after {after:?}");
    }
    Ok(())
}
