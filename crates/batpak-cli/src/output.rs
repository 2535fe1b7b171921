//! Writing results: buffered stdout, aligned tables, JSON, progress bars.

use std::io::{self, BufWriter, IsTerminal, Stdout, Write};
use std::time::Duration;

use batpak::StoredEvent;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::error::CliResult;
use crate::filter::format_time_us;

/// Longest payload preview in a table cell, in characters.
const PAYLOAD_PREVIEW_MAX_CHARS: usize = 60;

/// Buffered standard output. Write errors (a closed pipe included) surface as
/// [`crate::error::CliError`].
pub struct Out {
    writer: BufWriter<Stdout>,
}

impl Out {
    /// Buffered stdout.
    pub fn stdout() -> Out {
        Out {
            writer: BufWriter::new(io::stdout()),
        }
    }

    /// Writes one line.
    pub fn line(&mut self, text: impl AsRef<str>) -> CliResult {
        self.writer.write_all(text.as_ref().as_bytes())?;
        self.writer.write_all(b"\n")?;
        Ok(())
    }

    /// Writes a value as one line of compact JSON.
    pub fn json_line(&mut self, value: &impl Serialize) -> CliResult {
        serde_json::to_writer(&mut self.writer, value).map_err(io::Error::from)?;
        self.writer.write_all(b"\n")?;
        Ok(())
    }

    /// Writes a value as pretty JSON.
    pub fn json_pretty(&mut self, value: &impl Serialize) -> CliResult {
        serde_json::to_writer_pretty(&mut self.writer, value).map_err(io::Error::from)?;
        self.writer.write_all(b"\n")?;
        Ok(())
    }

    /// Hands everything written so far to the operating system.
    pub fn flush(&mut self) -> CliResult {
        self.writer.flush()?;
        Ok(())
    }
}

/// Column alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table with a header row, printed with aligned columns.
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns.
    pub fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (one cell per column).
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows.push(cells);
    }

    /// True if no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the header and the rows; the last column is never padded.
    pub fn print(&self, out: &mut Out) -> CliResult {
        let mut widths: Vec<usize> = self.columns.iter().map(|(name, _)| name.len()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.columns.iter().map(|(n, _)| n.to_string()).collect();
        out.line(self.render(&header, &widths))?;
        for row in &self.rows {
            out.line(self.render(row, &widths))?;
        }
        Ok(())
    }

    fn render(&self, cells: &[String], widths: &[usize]) -> String {
        let last = cells.len().saturating_sub(1);
        let mut line = String::new();
        for (position, ((cell, width), (_, align))) in
            cells.iter().zip(widths).zip(&self.columns).enumerate()
        {
            if position > 0 {
                line.push_str("  ");
            }
            let padding = width.saturating_sub(cell.chars().count());
            match align {
                Align::Right => {
                    line.push_str(&" ".repeat(padding));
                    line.push_str(cell);
                }
                Align::Left if position == last => line.push_str(cell),
                Align::Left => {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(padding));
                }
            }
        }
        line
    }
}

/// The columns of an event listing.
pub const EVENT_COLUMNS: &[(&str, Align)] = &[
    ("SEQ", Align::Right),
    ("TIME", Align::Left),
    ("KIND", Align::Left),
    ("ENTITY", Align::Left),
    ("SCOPE", Align::Left),
    ("CLOCK", Align::Right),
    ("EVENT ID", Align::Left),
    ("PAYLOAD", Align::Left),
];

/// One event as a row of [`EVENT_COLUMNS`].
pub fn event_row(event: &StoredEvent) -> Vec<String> {
    vec![
        event.header.sequence.to_string(),
        format_time_us(event.header.timestamp_us),
        event.header.kind.to_string(),
        event.coordinate.entity().to_string(),
        event.coordinate.scope().to_string(),
        event.header.clock.to_string(),
        event.header.event_id.to_string(),
        payload_preview(&event.payload),
    ]
}

/// One event on one line, for streams (`tail`) where columns cannot be sized
/// in advance.
pub fn event_line(event: &StoredEvent) -> String {
    format!(
        "{} {} {} {}@{} #{} {} {}",
        event.header.sequence,
        format_time_us(event.header.timestamp_us),
        event.header.kind,
        event.coordinate.entity(),
        event.coordinate.scope(),
        event.header.clock,
        event.header.event_id,
        payload_preview(&event.payload),
    )
}

/// Compact JSON, cut to [`PAYLOAD_PREVIEW_MAX_CHARS`] characters.
pub fn payload_preview(payload: &serde_json::Value) -> String {
    let text = payload.to_string();
    if text.chars().count() <= PAYLOAD_PREVIEW_MAX_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(PAYLOAD_PREVIEW_MAX_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Human-readable byte count (binary units).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A progress bar on stderr if it is a terminal and progress is wanted;
/// otherwise a hidden bar that costs nothing to update. `counter` is the
/// indicatif template of the count, such as `{pos}/{len} events` or
/// `{bytes}/{total_bytes}`.
pub fn progress_bar(enabled: bool, total: u64, counter: &str) -> ProgressBar {
    if !enabled || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let template =
        format!("{{spinner}} [{{elapsed_precise}}] [{{wide_bar}}] {counter} ({{eta}} left)");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_cut_on_character_boundaries() {
        let short = serde_json::json!({"x": 1});
        assert_eq!(payload_preview(&short), r#"{"x":1}"#);
        let long = serde_json::json!("é".repeat(200));
        let preview = payload_preview(&long);
        assert_eq!(preview.chars().count(), PAYLOAD_PREVIEW_MAX_CHARS);
        assert!(preview.ends_with('…'));
    }

    #[test]
    fn bytes_format_in_binary_units() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(64 * 1024 * 1024), "64.0 MiB");
    }

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(&[("N", Align::Right), ("NAME", Align::Left)]);
        table.row(vec!["7".into(), "a".into()]);
        table.row(vec!["100".into(), "bb".into()]);
        let lines: Vec<String> = std::iter::once(&vec!["N".to_string(), "NAME".to_string()])
            .chain(&table.rows)
            .map(|row| table.render(row, &[3, 4]))
            .collect();
        assert_eq!(lines, ["  N  NAME", "  7  a", "100  bb"]);
    }
}
