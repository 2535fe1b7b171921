//! The campaign table of `cargo xtask chaos` and `cargo xtask preflight`:
//! kills, faults injected, crash images, flips, model operations, fuzz time
//! and violations per campaign and in total, read from the summary lines the
//! campaigns print (for example `crash campaign: 5000 kills, …, 0 violations`)
//! and from libFuzzer's closing `Done N runs in S second(s)` line.

use std::time::Duration;

use crate::process::flush_stdout;

/// The counts one campaign reported. `None` means "not reported".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// SIGKILLs of a child process.
    pub kills: Option<u64>,
    /// Injected I/O faults.
    pub faults: Option<u64>,
    /// Crash images (what a power loss could leave) reopened and checked.
    pub crash_images: Option<u64>,
    /// Byte flips or truncations.
    pub flips: Option<u64>,
    /// Operations of the model check.
    pub model_operations: Option<u64>,
    /// Seconds of fuzzing.
    pub fuzz_seconds: Option<u64>,
    /// Fuzzer executions.
    pub fuzz_runs: Option<u64>,
    /// Invariant violations.
    pub violations: Option<u64>,
}

fn add(total: &mut Option<u64>, value: Option<u64>) {
    if let Some(value) = value {
        *total = Some(total.unwrap_or(0) + value);
    }
}

impl Tally {
    /// Adds another tally, field by field.
    pub fn add(&mut self, other: &Tally) {
        add(&mut self.kills, other.kills);
        add(&mut self.faults, other.faults);
        add(&mut self.crash_images, other.crash_images);
        add(&mut self.flips, other.flips);
        add(&mut self.model_operations, other.model_operations);
        add(&mut self.fuzz_seconds, other.fuzz_seconds);
        add(&mut self.fuzz_runs, other.fuzz_runs);
        add(&mut self.violations, other.violations);
    }

    /// Reads one line of campaign output; returns the counts it reports, if
    /// it is a closing summary line.
    ///
    /// A campaign's closing line is `<name> campaign: <count> <label>, …`
    /// and always counts `violations` (the opening lines of the campaigns,
    /// which repeat their settings, never do). libFuzzer closes with
    /// `Done <runs> runs in <seconds> second(s)`.
    pub fn parse_line(line: &str) -> Option<Tally> {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Done ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let [runs, "runs", "in", seconds, unit, ..] = words.as_slice() {
                if unit.starts_with("second") {
                    return Some(Tally {
                        fuzz_runs: runs.parse().ok(),
                        fuzz_seconds: seconds.parse().ok(),
                        ..Tally::default()
                    });
                }
            }
            return None;
        }
        let (name, counts) = line.split_once(" campaign: ")?;
        // Campaign names are lower-case words ("random flip"); this keeps out
        // lines that merely quote a summary, such as `VIOLATION …`.
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b' ') {
            return None;
        }
        let mut tally = Tally::default();
        for part in counts.split(", ") {
            let Some((number, label)) = part.trim().split_once(' ') else {
                continue;
            };
            let Ok(number) = number.parse::<u64>() else {
                continue;
            };
            let slot = match label.trim() {
                "kills" => &mut tally.kills,
                "faults injected" => &mut tally.faults,
                "crash images" => &mut tally.crash_images,
                "flips" | "truncations" => &mut tally.flips,
                "operations" => &mut tally.model_operations,
                "violations" => &mut tally.violations,
                _ => continue,
            };
            *slot = Some(number);
        }
        tally.violations.is_some().then_some(tally)
    }
}

/// How a campaign ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Exited successfully.
    Passed,
    /// Exited unsuccessfully, or could not be started.
    Failed,
}

/// One row of the table: one campaign run.
#[derive(Clone, Debug)]
pub struct Row {
    /// Short name, e.g. `crash (SIGKILL)`.
    pub name: String,
    /// How it ended.
    pub status: Status,
    /// The counts it reported (summed over its summary lines).
    pub tally: Tally,
    /// Wall time.
    pub elapsed: Duration,
    /// The command that runs it again.
    pub command: String,
}

impl Row {
    /// True if the campaign failed or reported a violation (or finished
    /// without saying how many it found).
    pub fn is_bad(&self) -> bool {
        self.status == Status::Failed || self.tally.violations != Some(0)
    }
}

/// The rows of every campaign run so far.
#[derive(Clone, Debug, Default)]
pub struct CampaignTable {
    /// In the order they ran.
    pub rows: Vec<Row>,
}

impl CampaignTable {
    /// True if any campaign failed or found a violation.
    pub fn any_bad(&self) -> bool {
        self.rows.iter().any(Row::is_bad)
    }

    /// The sum of every row.
    pub fn total(&self) -> Tally {
        let mut total = Tally::default();
        for row in &self.rows {
            total.add(&row.tally);
        }
        total
    }

    /// The table as text, one line per campaign, then the total.
    pub fn render(&self) -> String {
        let headers = [
            "campaign",
            "result",
            "kills",
            "faults",
            "crash images",
            "flips",
            "model ops",
            "fuzz s",
            "violations",
            "seconds",
        ];
        let cell = |value: Option<u64>| value.map_or_else(|| "-".to_string(), |v| v.to_string());
        let line_of = |name: &str, result: &str, tally: &Tally, seconds: f64| -> Vec<String> {
            vec![
                name.to_string(),
                result.to_string(),
                cell(tally.kills),
                cell(tally.faults),
                cell(tally.crash_images),
                cell(tally.flips),
                cell(tally.model_operations),
                cell(tally.fuzz_seconds),
                tally
                    .violations
                    .map_or_else(|| "?".to_string(), |v| v.to_string()),
                format!("{seconds:.1}"),
            ]
        };
        let mut lines: Vec<Vec<String>> = vec![headers.iter().map(|h| h.to_string()).collect()];
        for row in &self.rows {
            let result = match (row.status, row.tally.violations) {
                (Status::Passed, Some(0)) => "pass",
                _ => "FAIL",
            };
            lines.push(line_of(
                &row.name,
                result,
                &row.tally,
                row.elapsed.as_secs_f64(),
            ));
        }
        let seconds: f64 = self.rows.iter().map(|r| r.elapsed.as_secs_f64()).sum();
        let mut total = self.total();
        if self.rows.iter().any(|r| r.tally.violations.is_none()) {
            // Unknown somewhere: the total cannot claim a number.
            total.violations = None;
        }
        let result = if self.any_bad() { "FAIL" } else { "pass" };
        lines.push(line_of("total", result, &total, seconds));
        let columns = headers.len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for line in &lines {
            let mut text = String::new();
            for (c, value) in line.iter().enumerate() {
                if c > 0 {
                    text.push_str("  ");
                }
                // Names and results left-aligned, numbers right-aligned.
                if c < 2 {
                    text.push_str(&format!("{value:<width$}", width = widths[c]));
                } else {
                    text.push_str(&format!("{value:>width$}", width = widths[c]));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table under a title, with the commands that replay each
    /// failed campaign.
    pub fn print(&self, title: &str) {
        if self.rows.is_empty() {
            return;
        }
        println!();
        println!("{title} campaigns");
        print!("{}", self.render());
        for row in self.rows.iter().filter(|row| row.is_bad()) {
            println!("failed: {}: {}", row.name, row.command);
        }
        flush_stdout();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_closing_line_of_every_campaign() {
        let crash = Tally::parse_line(
            "crash campaign: 5000 kills, 81234 acknowledged events, 81240 stored, 0 violations, 612.4s",
        )
        .expect("crash line");
        assert_eq!(crash.kills, Some(5000));
        assert_eq!(crash.violations, Some(0));
        let fault = Tally::parse_line(
            "fault campaign: 812 runs, 790 faults injected, 700 operations errored, 1500 crash images, 3 undead where no cut-back was possible, 2 violations, 40.2s",
        )
        .expect("fault line");
        assert_eq!(
            (fault.faults, fault.crash_images, fault.violations),
            (Some(790), Some(1500), Some(2))
        );
        assert_eq!(
            fault.model_operations, None,
            "`operations errored` is not model operations"
        );
        let model = Tally::parse_line(
            "model campaign: 40 cases × 60 steps, 2400 operations, 55 faults injected, 90 crash images, 120 reopens, 30 failed calls, 0 violations",
        )
        .expect("model line");
        assert_eq!(
            (model.model_operations, model.faults, model.crash_images),
            (Some(2400), Some(55), Some(90))
        );
        let flips = Tally::parse_line(
            "random flip campaign: 300 flips, 280 reported by verify, 10 refused by open, 5 reads failed, 0 violations",
        )
        .expect("flip line");
        assert_eq!((flips.flips, flips.violations), (Some(300), Some(0)));
        let fuzz = Tally::parse_line("Done 123456 runs in 61 second(s)").expect("libFuzzer line");
        assert_eq!(
            (fuzz.fuzz_runs, fuzz.fuzz_seconds),
            (Some(123456), Some(61))
        );
    }

    #[test]
    fn opening_lines_and_other_output_are_not_summaries() {
        for line in [
            "crash campaign: 200 kills, base seed 24301 (set BATPAK_CRASH_SEED to replay)",
            "fault campaign: base seed 805381, calls per point 3, 2 crash images per run",
            "random flip campaign: 300 flips, seed 61723",
            "truncation campaign: 40 truncations",
            "test result: ok. 1 passed; 0 failed; 0 ignored",
            "VIOLATION fault campaign: 1 violations",
            "Done with it",
        ] {
            assert_eq!(Tally::parse_line(line), None, "{line}");
        }
    }

    fn row(name: &str, status: Status, tally: Tally) -> Row {
        Row {
            name: name.to_string(),
            status,
            tally,
            elapsed: Duration::from_secs(2),
            command: format!("run {name}"),
        }
    }

    #[test]
    fn the_table_totals_every_column_and_flags_failures() {
        let mut table = CampaignTable::default();
        table.rows.push(row(
            "crash",
            Status::Passed,
            Tally {
                kills: Some(200),
                violations: Some(0),
                ..Tally::default()
            },
        ));
        table.rows.push(row(
            "model",
            Status::Passed,
            Tally {
                faults: Some(5),
                model_operations: Some(100),
                crash_images: Some(7),
                violations: Some(0),
                ..Tally::default()
            },
        ));
        assert!(!table.any_bad());
        let text = table.render();
        let total = text.lines().last().expect("total line");
        assert!(total.starts_with("total"), "{text}");
        assert!(total.contains("pass"), "{text}");
        assert_eq!(
            total.split_whitespace().collect::<Vec<_>>(),
            vec!["total", "pass", "200", "5", "7", "-", "100", "-", "0", "4.0"]
        );

        table.rows.push(row(
            "flips",
            Status::Passed,
            Tally {
                flips: Some(10),
                violations: Some(1),
                ..Tally::default()
            },
        ));
        assert!(table.any_bad(), "a violation is a failure");
        let mut silent = CampaignTable::default();
        silent
            .rows
            .push(row("died", Status::Failed, Tally::default()));
        assert!(silent.any_bad());
        let text = silent.render();
        assert!(text
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("FAIL") && l.contains('?')));
        let mut quiet_pass = CampaignTable::default();
        quiet_pass
            .rows
            .push(row("no summary", Status::Passed, Tally::default()));
        assert!(
            quiet_pass.any_bad(),
            "a campaign that never said how many violations it found is not a pass"
        );
    }
}
