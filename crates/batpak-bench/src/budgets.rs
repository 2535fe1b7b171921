//! The budget ratios of TARGETS.md, judged from the rows of one run, and
//! over several runs (`--runs`).

use serde::{Deserialize, Serialize};

use crate::measure::median;
use crate::report::Row;

/// Whether a budget was met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// The measured value satisfies the budget.
    Met,
    /// It does not.
    Missed,
    /// A row it needs is missing or failed (not run, `--only`, engine error).
    NotAvailable,
}

/// One budget, its measured value and its verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BudgetLine {
    /// Budget id (`W1/sqlite`, `W5/open-clean`, ...).
    pub id: String,
    /// What is compared.
    pub what: String,
    /// The measured value (ratio, milliseconds, MiB, ...), if it could be computed.
    pub measured: Option<f64>,
    /// `>=` or `<=`.
    pub comparison: String,
    /// The budget.
    pub limit: f64,
    /// The verdict.
    pub status: Status,
    /// A budget no run may miss (durability): over several runs it is judged
    /// by its worst run instead of the median.
    #[serde(default)]
    pub every_run: bool,
}

impl BudgetLine {
    fn new(id: &str, what: &str, measured: Option<f64>, at_least: bool, limit: f64) -> BudgetLine {
        let status = match measured {
            Some(value) if value.is_finite() => {
                let met = if at_least {
                    value >= limit
                } else {
                    value <= limit
                };
                if met {
                    Status::Met
                } else {
                    Status::Missed
                }
            }
            _ => Status::NotAvailable,
        };
        BudgetLine {
            id: id.to_string(),
            what: what.to_string(),
            measured,
            comparison: if at_least { ">=" } else { "<=" }.to_string(),
            limit,
            status,
            every_run: false,
        }
    }

    /// Marks a budget that every run must meet on its own.
    fn in_every_run(mut self) -> BudgetLine {
        self.every_run = true;
        self
    }

    fn at_least(&self) -> bool {
        self.comparison == ">="
    }

    /// One printed line.
    pub fn line(&self) -> String {
        let measured = match self.measured {
            Some(value) => format!("{value:.3}"),
            None => "-".to_string(),
        };
        let status = match self.status {
            Status::Met => "met",
            Status::Missed => "MISSED",
            Status::NotAvailable => "n/a",
        };
        format!(
            "{:<16} {:<58} {:>12} {} {:<8} {}",
            self.id, self.what, measured, self.comparison, self.limit, status
        )
    }
}

struct Rows<'a>(&'a [Row]);

impl Rows<'_> {
    fn get(&self, engine: &str, workload: &str) -> Option<&Row> {
        self.0
            .iter()
            .find(|r| r.engine == engine && r.workload == workload && r.ok())
    }

    fn rate(&self, engine: &str, workload: &str) -> Option<f64> {
        self.get(engine, workload).map(|r| r.per_second)
    }

    fn rate_ratio(&self, a: (&str, &str), b: (&str, &str)) -> Option<f64> {
        Some(self.rate(a.0, a.1)? / self.rate(b.0, b.1)?)
    }

    fn extra(&self, engine: &str, workload: &str, key: &str) -> Option<f64> {
        self.get(engine, workload)?.extra.get(key).copied()
    }

    fn bytes_per_event(&self, engine: &str, workload: &str) -> Option<f64> {
        let row = self.get(engine, workload)?;
        Some(row.bytes_on_disk? as f64 / row.n as f64)
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// Numbers that explain a budget without being one: W1/P2 with the time
/// W1's appender waited for syncs taken out (per repetition, then the
/// median), which shows how much of W1's distance to P2 was the disk
/// holding the appender at the `sync_every_n_events` bound rather than CPU.
pub fn diagnostics(rows: &[Row]) -> Vec<String> {
    let rows = Rows(rows);
    let mut lines = Vec::new();
    let w1_without_waits = (|| {
        let w1 = rows.get("batpak", "W1")?;
        // Per repetition: the rate without the waits, and the waits.
        let (rates, waited): (Vec<f64>, Vec<f64>) = w1
            .samples
            .iter()
            .filter_map(|sample| {
                let waited_ms = *sample.extra.get(crate::batpak_engine::SYNC_WAIT_MS)?;
                let busy = sample.seconds - waited_ms / 1e3;
                (busy > 0.0).then(|| (w1.n as f64 / busy, waited_ms))
            })
            .unzip();
        if rates.is_empty() {
            return None;
        }
        Some((median(&rates) / rows.rate("raw", "P2")?, median(&waited)))
    })();
    if let Some((ratio, waited_ms)) = w1_without_waits {
        lines.push(format!(
            "W1/P2 without W1's waits for syncs (median {waited_ms:.1} ms per repetition): {ratio:.3}"
        ));
    }
    lines
}

/// Judges every budget of TARGETS.md against the rows of one run.
pub fn evaluate(rows: &[Row]) -> Vec<BudgetLine> {
    let rows = Rows(rows);
    let b = ("batpak", "");
    let mut lines = vec![
        BudgetLine::new(
            "W1/sqlite",
            "W1 relaxed appends: batpak events/s / SQLite events/s",
            rows.rate_ratio((b.0, "W1"), ("sqlite", "W1")),
            true,
            15.0,
        ),
        BudgetLine::new(
            "W1/P2",
            "W1 relaxed appends: batpak events/s / P2 raw framing records/s",
            rows.rate_ratio((b.0, "W1"), ("raw", "P2")),
            true,
            0.30,
        ),
        BudgetLine::new(
            "W2/P1",
            "W2 durable appends: batpak events/s / P1 syncs/s",
            rows.rate_ratio((b.0, "W2"), ("raw", "P1")),
            true,
            0.9,
        ),
        BudgetLine::new(
            "W2/P1-p99",
            "W2 durable appends: batpak p99 / P1 p99",
            (|| Some(rows.get(b.0, "W2")?.p99_us? / rows.get("raw", "P1")?.p99_us?))(),
            false,
            1.5,
        ),
        BudgetLine::new(
            "W3/sqlite",
            "W3 durable batches of 100: batpak / SQLite events/s",
            rows.rate_ratio((b.0, "W3"), ("sqlite", "W3")),
            true,
            2.5,
        ),
        BudgetLine::new(
            "W4x8/sqlite",
            "W4 8 threads durable: batpak / SQLite events/s",
            rows.rate_ratio((b.0, "W4x8"), ("sqlite", "W4x8")),
            true,
            5.0,
        ),
        BudgetLine::new(
            "W4x8/W2",
            "W4 8 threads durable / W2 one thread (group commit)",
            rows.rate_ratio((b.0, "W4x8"), (b.0, "W2")),
            true,
            4.0,
        ),
        BudgetLine::new(
            "W2+W4/durable",
            "receipts returned before durable_sequence covered them",
            (|| {
                let mut total = 0.0;
                for workload in ["W2", "W4x2", "W4x8"] {
                    total += rows.extra(b.0, workload, "not_durable_receipts")?;
                }
                Some(total)
            })(),
            false,
            0.0,
        )
        .in_every_run(),
        BudgetLine::new(
            "W5/open-clean",
            "W5 open of 1M events after close, milliseconds",
            rows.get(b.0, "W5-clean").map(|r| r.seconds_median * 1e3),
            false,
            100.0,
        ),
        BudgetLine::new(
            "W5/rss",
            "W5 peak RSS of the opening process after open, MiB",
            rows.extra(b.0, "W5-clean", "rss_after_open_bytes")
                .map(|bytes| bytes / MIB),
            false,
            150.0,
        ),
        BudgetLine::new(
            "W5/open-crash",
            "W5 open of 1M events after a crash, milliseconds",
            rows.get(b.0, "W5-crash").map(|r| r.seconds_median * 1e3),
            false,
            1000.0,
        ),
        BudgetLine::new(
            "W6/sqlite",
            "W6 entity reads: batpak / SQLite entities/s",
            rows.rate_ratio((b.0, "W6"), ("sqlite", "W6")),
            true,
            1.5,
        ),
        BudgetLine::new(
            "W7/sqlite",
            "W7 replay of 1M: batpak / SQLite events/s",
            rows.rate_ratio((b.0, "W7"), ("sqlite", "W7")),
            true,
            1.0,
        ),
        BudgetLine::new(
            "disk/sqlite",
            "W1 bytes on disk per event: batpak / SQLite",
            (|| Some(rows.bytes_per_event(b.0, "W1")? / rows.bytes_per_event("sqlite", "W1")?))(),
            false,
            1.3,
        ),
        BudgetLine::new(
            "memory/index",
            "index memory per event after opening 1M (stats), bytes",
            (|| {
                let index = rows.extra(b.0, "W5-clean", "index_memory_bytes")?;
                let events = rows.extra(b.0, "W5-clean", "events")?;
                Some(index / events)
            })(),
            false,
            64.0,
        ),
    ];
    lines.retain(|line| !line.id.is_empty());
    lines
}

/// One budget judged over several runs of the whole bench.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunsLine {
    /// The verdict over the runs: `measured` is the median of the runs'
    /// values, or the worst of them for a budget every run must meet.
    pub budget: BudgetLine,
    /// Each run's value, in the order the runs ran.
    pub values: Vec<Option<f64>>,
    /// In how many runs the budget was met on its own.
    pub met_in: usize,
}

impl RunsLine {
    /// One printed line: the verdict, then how each run did.
    pub fn line(&self) -> String {
        let values: Vec<String> = self
            .values
            .iter()
            .map(|value| value.map_or_else(|| "-".to_string(), |v| format!("{v:.3}")))
            .collect();
        format!(
            "{}  (met in {} of {} runs: {})",
            self.budget.line(),
            self.met_in,
            self.values.len(),
            values.join(" ")
        )
    }
}

/// Judges each budget over several runs (`runs` holds each run's lines from
/// [`evaluate`]). Every value is still a ratio measured within one run;
/// across runs a budget is judged by the median of its values, because on a
/// shared machine the disk and the CPU slow down in phases that can cover a
/// whole run. A budget marked for every run (durability) is judged by its
/// worst value instead, so no run's miss is hidden. A budget some run could
/// not measure is not available.
pub fn over_runs(runs: &[Vec<BudgetLine>]) -> Vec<RunsLine> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|template| {
            let lines: Vec<Option<&BudgetLine>> = runs
                .iter()
                .map(|run| run.iter().find(|line| line.id == template.id))
                .collect();
            let values: Vec<Option<f64>> = lines
                .iter()
                .map(|line| line.and_then(|l| l.measured).filter(|v| v.is_finite()))
                .collect();
            let met_in = lines
                .iter()
                .filter(|line| line.is_some_and(|l| l.status == Status::Met))
                .count();
            let measured: Option<Vec<f64>> = values.iter().copied().collect();
            let at_least = template.at_least();
            let measured = measured.map(|values| {
                if !template.every_run {
                    median(&values)
                } else if at_least {
                    values.iter().copied().fold(f64::INFINITY, f64::min)
                } else {
                    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                }
            });
            let mut budget = BudgetLine::new(
                &template.id,
                &template.what,
                measured,
                at_least,
                template.limit,
            );
            budget.every_run = template.every_run;
            RunsLine {
                budget,
                values,
                met_in,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Sample;

    fn row(engine: &str, workload: &str, n: u64, seconds: f64) -> Row {
        Row::aggregate(
            engine,
            workload,
            n,
            vec![Sample {
                seconds,
                ..Sample::default()
            }],
            vec![],
        )
    }

    /// The W1/P2 diagnostic takes each repetition's sync waits out of its
    /// time before the median.
    #[test]
    fn w1_without_its_sync_waits() {
        let w1 = |seconds: f64, waited_ms: f64| Sample {
            seconds,
            extra: [(crate::batpak_engine::SYNC_WAIT_MS.to_string(), waited_ms)].into(),
            ..Sample::default()
        };
        let rows = vec![
            Row::aggregate(
                "batpak",
                "W1",
                100_000,
                vec![w1(0.2, 100.0), w1(0.3, 250.0), w1(0.1, 0.0)],
                vec![],
            ),
            row("raw", "P2", 1_000_000, 1.0),
        ];
        // Busy times 0.1, 0.05 and 0.1 s: the median rate is 1M/s, P2's too.
        assert_eq!(
            diagnostics(&rows),
            vec!["W1/P2 without W1's waits for syncs (median 100.0 ms per repetition): 1.000"]
        );
        assert!(diagnostics(&rows[1..]).is_empty(), "no W1 row, no line");
    }

    #[test]
    fn ratios_are_judged_against_their_limits() {
        let rows = vec![
            row("batpak", "W1", 100_000, 0.1),
            row("sqlite", "W1", 100_000, 1.0),
            row("batpak", "W3", 100_000, 1.0),
            row("sqlite", "W3", 100_000, 1.0),
        ];
        let lines = evaluate(&rows);
        let find = |id: &str| lines.iter().find(|l| l.id == id).expect("line");
        assert_eq!(find("W1/sqlite").status, Status::Missed, "10x is below 15x");
        assert_eq!(find("W3/sqlite").status, Status::Missed);
        assert_eq!(find("W7/sqlite").status, Status::NotAvailable);
        let rows = vec![
            row("batpak", "W1", 100_000, 0.05),
            row("sqlite", "W1", 100_000, 1.0),
        ];
        let lines = evaluate(&rows);
        let w1 = lines.iter().find(|l| l.id == "W1/sqlite").expect("line");
        assert_eq!(w1.status, Status::Met);
        assert_eq!(w1.measured, Some(20.0));
    }

    /// Over several runs a performance budget takes the median of the runs'
    /// values, a durability budget the worst, and a value missing from any
    /// run makes the budget not available.
    #[test]
    fn budgets_over_runs_take_the_median_or_the_worst_run() {
        let run = |ratio: Option<f64>, early_receipts: f64| {
            vec![
                BudgetLine::new("W1/P2", "ratio", ratio, true, 0.30),
                BudgetLine::new("W2+W4/durable", "early", Some(early_receipts), false, 0.0)
                    .in_every_run(),
            ]
        };
        let runs = vec![
            run(Some(0.29), 0.0),
            run(Some(0.33), 2.0),
            run(Some(0.31), 0.0),
        ];
        let lines = over_runs(&runs);
        assert_eq!(lines.len(), 2);
        let ratio = &lines[0];
        assert_eq!(ratio.budget.measured, Some(0.31));
        assert_eq!(ratio.budget.status, Status::Met);
        assert_eq!(ratio.met_in, 2);
        assert_eq!(ratio.values, vec![Some(0.29), Some(0.33), Some(0.31)]);
        assert!(
            ratio
                .line()
                .ends_with("(met in 2 of 3 runs: 0.290 0.330 0.310)"),
            "{}",
            ratio.line()
        );
        let durable = &lines[1];
        assert_eq!(durable.budget.measured, Some(2.0), "the worst run");
        assert_eq!(durable.budget.status, Status::Missed);
        assert!(durable.budget.every_run);
        assert_eq!(durable.met_in, 2);

        let lines = over_runs(&[run(Some(0.40), 0.0), run(None, 0.0)]);
        assert_eq!(lines[0].budget.status, Status::NotAvailable);
        assert_eq!(lines[0].met_in, 1);
        assert!(over_runs(&[]).is_empty());
    }

    #[test]
    fn upper_bounds_are_met_below_the_limit() {
        let lines = evaluate(&[row("batpak", "W5-clean", 1, 0.050)]);
        let open = lines
            .iter()
            .find(|l| l.id == "W5/open-clean")
            .expect("line");
        assert_eq!(open.status, Status::Met);
        let lines = evaluate(&[row("batpak", "W5-clean", 1, 0.150)]);
        let open = lines
            .iter()
            .find(|l| l.id == "W5/open-clean")
            .expect("line");
        assert_eq!(open.status, Status::Missed);
    }
}
