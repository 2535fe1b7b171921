//! `batpak show`.

use batpak::{EventId, StoredEvent};

use super::Context;
use crate::cli::ShowArgs;
use crate::error::{CliError, CliResult};
use crate::filter::format_time_us;
use crate::output::Out;

/// Prints one event in full.
pub fn run(context: &Context, args: &ShowArgs) -> CliResult {
    let wanted = parse_event_ref(&args.event)?;
    let store = context.open_read_only()?;
    let found = match wanted {
        EventRef::Id(id) => store.get(id)?,
        EventRef::Sequence(sequence) => store.get_by_sequence(sequence)?,
    };
    let event = found.ok_or_else(|| {
        CliError::Failed(match wanted {
            EventRef::Id(id) => format!("no event with id {id}"),
            EventRef::Sequence(sequence) => format!(
                "no event with sequence {sequence} (the store has {})",
                store.next_sequence()
            ),
        })
    })?;
    let mut out = Out::stdout();
    if context.json {
        out.json_pretty(&event)?;
    } else {
        print_event(&mut out, &event)?;
    }
    out.flush()
}

#[derive(Debug, Clone, Copy)]
enum EventRef {
    Id(EventId),
    Sequence(u64),
}

fn parse_event_ref(text: &str) -> CliResult<EventRef> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(EventRef::Sequence)
            .map_err(|_| CliError::Usage(format!("sequence {text} is out of range")));
    }
    text.parse().map(EventRef::Id).map_err(|_| {
        CliError::Usage(format!(
            "{text:?} is neither an event id (a UUID such as 0193b2c4-7e1f-7a00-8000-000000000001) nor a sequence number"
        ))
    })
}

fn print_event(out: &mut Out, event: &StoredEvent) -> CliResult {
    let header = &event.header;
    let field = |name: &str, value: String| format!("{name:<13}{value}");
    out.line(field("event", header.event_id.to_string()))?;
    out.line(field("sequence", header.sequence.to_string()))?;
    out.line(field("time", format_time_us(header.timestamp_us)))?;
    out.line(field("entity", event.coordinate.entity().to_string()))?;
    out.line(field("scope", event.coordinate.scope().to_string()))?;
    out.line(field(
        "kind",
        format!(
            "{} (category {:#x}, type {:#05x})",
            header.kind,
            header.kind.category(),
            header.kind.type_id()
        ),
    ))?;
    out.line(field("clock", header.clock.to_string()))?;
    let correlation = if header.correlation_id == header.event_id {
        format!("{} (itself)", header.correlation_id)
    } else {
        header.correlation_id.to_string()
    };
    out.line(field("correlation", correlation))?;
    out.line(field(
        "causation",
        header
            .causation_id
            .map_or("none".into(), |id| id.to_string()),
    ))?;
    out.line(field("flags", format!("{:#06x}", header.flags)))?;
    out.line(field("schema", header.schema_version.to_string()))?;
    out.line(field(
        "hash",
        event.hash.map_or("none".into(), |hash| hash.to_hex()),
    ))?;
    out.line("payload")?;
    out.json_pretty(&event.payload)
}
