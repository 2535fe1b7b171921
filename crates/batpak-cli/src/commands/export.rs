//! `batpak export`: matching events as JSON Lines, streamed.

use std::fs::File;
use std::io::{BufWriter, Write};

use batpak::StoredEvent;
use serde_json::json;
use serde_json::value::RawValue;

use super::Context;
use crate::cli::ExportArgs;
use crate::error::{CliError, CliResult};
use crate::output::{progress_bar, Out};

/// Writes one JSON object per matching event, in sequence order.
pub fn run(context: &Context, args: &ExportArgs) -> CliResult {
    let store = context.open_read_only()?;
    let region = args.filter.region(0);
    let total = store.next_sequence();
    let mut sink: Box<dyn Write> = match &args.output {
        Some(path) => {
            Box::new(BufWriter::new(File::create(path).map_err(|e| {
                CliError::io(format!("creating {}", path.display()), e)
            })?))
        }
        None => Box::new(BufWriter::new(std::io::stdout())),
    };
    // A bar on stderr would interleave with the data on a terminal's stdout.
    let bar = progress_bar(
        context.progress && args.output.is_some(),
        total,
        "{pos}/{len} sequences",
    );
    let mut exported: u64 = 0;
    // Payloads are copied as stored, never parsed into values and printed again.
    for event in store.query(&region).raw() {
        let event = event?;
        let sequence = event.header.sequence;
        let payload: &RawValue = std::str::from_utf8(event.payload.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(text).map_err(|e| e.to_string()))
            .map_err(|reason| {
                CliError::Failed(format!(
                    "event {sequence}: stored payload is not JSON: {reason}"
                ))
            })?;
        let line = StoredEvent {
            coordinate: event.coordinate.clone(),
            header: event.header,
            payload,
            hash: event.hash,
            redacted: event.redacted,
        };
        serde_json::to_writer(&mut sink, &line).map_err(std::io::Error::from)?;
        sink.write_all(b"\n")?;
        exported += 1;
        bar.set_position(event.header.sequence + 1);
    }
    sink.flush()?;
    drop(sink);
    bar.finish_and_clear();
    if let Some(path) = &args.output {
        if context.json {
            let mut out = Out::stdout();
            out.json_pretty(
                &json!({ "exported": exported, "output": path.display().to_string() }),
            )?;
            out.flush()?;
        } else {
            eprintln!("exported {exported} events to {}", path.display());
        }
    }
    Ok(())
}
