//! The command line: every subcommand, argument and help text.

use std::path::PathBuf;

use batpak::{EventId, EventKind};
use clap::{Args, Parser, Subcommand};

use crate::filter::{parse_category, parse_kind, parse_time_us};

const EXAMPLES: &str = "\
Examples:
  batpak --store ./data info                      counts, sizes, durability frontier
  batpak --store ./data events --entity player:alice
  batpak --store ./data tail --prefix order:      follow new events as they are written
  batpak --store ./data export -o backup.jsonl
  BATPAK_STORE=./data batpak verify

Exit codes: 0 ok, 1 damage found or check failed, 2 usage error, 3 operation failed.";

/// Inspect, follow, check, export and import a batpak event store.
///
/// Read-only commands (info, entities, events, show, tail, verify, export)
/// open the store read-only, so they work beside a running writer.
#[derive(Debug, Parser)]
#[command(name = "batpak", version, after_help = EXAMPLES)]
pub struct Cli {
    /// The store directory.
    #[arg(
        long,
        short = 's',
        global = true,
        env = "BATPAK_STORE",
        value_name = "DIR",
        help_heading = "Global options"
    )]
    pub store: Option<PathBuf>,

    /// Print machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,

    /// Never draw progress bars (they are only drawn when stderr is a terminal).
    #[arg(long, global = true, help_heading = "Global options")]
    pub no_progress: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Counts, sizes, segments, durability frontier and how open restored the store.
    #[command(
        visible_alias = "stats",
        after_help = "\
Examples:
  batpak --store ./data info
  batpak --store ./data stats --json | jq .events"
    )]
    Info,

    /// List entities with their event counts and clocks.
    #[command(after_help = "\
Examples:
  batpak --store ./data entities
  batpak --store ./data entities --prefix player: --limit 20
  batpak --store ./data entities --after player:m     the page after player:m")]
    Entities(EntitiesArgs),

    /// List events, filtered and paged.
    #[command(after_help = "\
Examples:
  batpak --store ./data events --entity player:alice
  batpak --store ./data events --prefix order: --kind F:001 --since 2026-01-01T00:00:00Z
  batpak --store ./data events --category 0xF --since 1h     the last hour
  batpak --store ./data events --after 99 --limit 100        the page after sequence 99
  batpak --store ./data events --json | jq '.events[].payload'")]
    Events(EventsArgs),

    /// Show one event in full, by event id or by sequence number.
    #[command(after_help = "\
Examples:
  batpak --store ./data show 0193b2c4-7e1f-7a00-8000-000000000001
  batpak --store ./data show 42          the event with sequence 42")]
    Show(ShowArgs),

    /// Print the latest events, then follow new ones as a writer adds them (like tail -f).
    #[command(after_help = "\
Examples:
  batpak --store ./data tail                      last 10 events, then follow
  batpak --store ./data tail -n 0 --prefix order: only new order events
  batpak --store ./data tail -n 0 --json --max-events 1   wait for the next event, print it as JSON

Stop it with Ctrl-C. The writer may be another process: tail re-reads the
log every --interval-ms to see its events.")]
    Tail(TailArgs),

    /// Check the whole store: frames, checksums, hash chains. Exit code 1 on damage.
    #[command(after_help = "\
Examples:
  batpak --store ./data verify
  batpak --store ./data verify --json > report.json || echo damaged")]
    Verify(VerifyArgs),

    /// Write events as JSON Lines, one object per event, streaming.
    #[command(after_help = "\
Examples:
  batpak --store ./data export > all.jsonl
  batpak --store ./data export --prefix order: -o orders.jsonl

Each line is an event as the library serializes it: {\"coordinate\":{...},
\"header\":{...},\"payload\":...,\"hash\":\"...\"}. `batpak import` reads it back.")]
    Export(ExportArgs),

    /// Append events from JSON Lines (the export format), in atomic batches.
    #[command(after_help = "\
Examples:
  batpak --store ./copy import all.jsonl
  batpak --store ./copy import - < all.jsonl

Importing is idempotent: each batch carries a key derived from its content,
so an interrupted import can be rerun with the same file and --batch-size and
nothing is written twice. The store assigns new event ids, sequences and
timestamps; causation and correlation links between imported events are
carried over to the new ids.")]
    Import(ImportArgs),

    /// Write a consistent copy of the store to DEST, which opens as a store.
    #[command(after_help = "\
Examples:
  batpak --store ./data snapshot ./backup-2026-11-26

Needs the store's writer lock: run it while no other process writes the
store (a running program calls Store::snapshot itself for online backups).")]
    Snapshot(SnapshotArgs),

    /// Reclaim space: remove or redact events under a retention policy.
    #[command(after_help = "\
Examples:
  batpak --store ./data compact --drop-entity user:alice --yes
  batpak --store ./data compact --older-than 90d
  batpak --store ./data compact --before-sequence 1000000
  batpak --store ./data compact --redact-entity user:bob --redact-event 0190...

Removed events are gone for good; redacted events keep their header and hash
chain but lose their payload. Kept events, hash chains, idempotency keys and
cursor positions stay valid. Needs the store's writer lock: a running program
calls Store::compact itself.")]
    Compact(CompactArgs),

    /// Cut the log at the first damaged frame, dropping everything after it.
    #[command(after_help = "\
Examples:
  batpak --store ./data repair --dry-run     only report what would be dropped
  batpak --store ./data repair               report, then ask before changing anything
  batpak --store ./data repair --yes         no question (scripts)

Repair is explicit data loss. Make a copy of the directory first if the
dropped events may matter. A writer must not be running.")]
    Repair(RepairArgs),
}

/// Which events: shared by `events`, `tail` and `export`.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only this entity.
    #[arg(long, short = 'e', value_name = "ENTITY", conflicts_with = "prefix")]
    pub entity: Option<String>,

    /// Only entities whose names start with PREFIX.
    #[arg(long, short = 'p', value_name = "PREFIX")]
    pub prefix: Option<String>,

    /// Only this scope (exact).
    #[arg(long, value_name = "SCOPE")]
    pub scope: Option<String>,

    /// Only this kind: CATEGORY:TYPE in hex (F:001), or the 16-bit number (61441, 0xF001).
    #[arg(long, short = 'k', value_name = "KIND", value_parser = parse_kind, conflicts_with = "category")]
    pub kind: Option<EventKind>,

    /// Only kinds of this category: 0-15, or hex (0xF, or a single digit A-F).
    #[arg(long, value_name = "CATEGORY", value_parser = parse_category)]
    pub category: Option<u8>,

    /// Only events at or after TIME: RFC 3339 (2026-11-26T07:00:00Z),
    /// microseconds since the Unix epoch, or a duration ago (90s, 10m, 2h, 1day).
    #[arg(long, value_name = "TIME", value_parser = parse_time_us)]
    pub since: Option<i64>,

    /// Only events before TIME (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time_us)]
    pub until: Option<i64>,

    /// Only sequences at or above N.
    #[arg(long, value_name = "N")]
    pub from_seq: Option<u64>,

    /// Only sequences at or below N.
    #[arg(long, value_name = "N")]
    pub to_seq: Option<u64>,

    /// Only events with this correlation id.
    #[arg(long, value_name = "EVENT_ID")]
    pub correlation: Option<EventId>,

    /// Only events directly caused by this event.
    #[arg(long, value_name = "EVENT_ID")]
    pub causation: Option<EventId>,
}

/// `entities`.
#[derive(Debug, Args)]
pub struct EntitiesArgs {
    /// Only entities whose names start with PREFIX.
    #[arg(long, short = 'p', default_value = "", value_name = "PREFIX")]
    pub prefix: String,

    /// Start after this entity name (paging: pass the last name of the previous page).
    #[arg(long, value_name = "ENTITY")]
    pub after: Option<String>,

    /// At most N entities.
    #[arg(
        long,
        short = 'l',
        default_value_t = 100,
        value_name = "N",
        conflicts_with = "all"
    )]
    pub limit: usize,

    /// Every entity, no limit.
    #[arg(long)]
    pub all: bool,
}

/// `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Which events.
    #[command(flatten)]
    pub filter: FilterArgs,

    /// Start after this sequence (paging: pass the `next_after` of the previous page).
    #[arg(long, value_name = "SEQ")]
    pub after: Option<u64>,

    /// At most N events.
    #[arg(long, short = 'l', default_value_t = 100, value_name = "N", conflicts_with = "all", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,

    /// Every matching event, no limit (for large results prefer `export`).
    #[arg(long)]
    pub all: bool,
}

/// `show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// An event id (UUID) or a sequence number.
    #[arg(value_name = "EVENT")]
    pub event: String,
}

/// `tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Which events.
    #[command(flatten)]
    pub filter: FilterArgs,

    /// Print the last N matching events before following.
    #[arg(long, short = 'n', default_value_t = 10, value_name = "N")]
    pub lines: u64,

    /// Exit once N events have been printed (those printed by -n count).
    #[arg(long, value_name = "N")]
    pub max_events: Option<u64>,

    /// Print the last events and exit, without following.
    #[arg(long)]
    pub no_follow: bool,

    /// How often to look for new events, in milliseconds.
    #[arg(long, default_value_t = 250, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub interval_ms: u64,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {}

/// `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Which events.
    #[command(flatten)]
    pub filter: FilterArgs,

    /// Write to FILE instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// JSON Lines file to read; `-` or nothing reads stdin.
    #[arg(value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// Events per atomic batch. A rerun must use the same value to be idempotent.
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch_size: u64,

    /// Skip events of the store-reserved kind categories (0x0 and 0xD) instead of failing.
    #[arg(long)]
    pub skip_reserved: bool,

    /// Largest payload accepted, in bytes (the store's default is 1 MiB; at most 64 MiB).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1..=67_108_864))]
    pub payload_max_bytes: Option<u32>,
}

/// `snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Where to write the copy (must not exist yet, or be an empty directory).
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
}

/// `compact`.
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Remove every event of this entity (repeatable).
    #[arg(long, value_name = "ENTITY")]
    pub drop_entity: Vec<String>,

    /// Remove every event with a sequence below N.
    #[arg(long, value_name = "N")]
    pub before_sequence: Option<u64>,

    /// Remove every event older than this age: a number with s, m, h or d (e.g. 90d).
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub older_than: Option<std::time::Duration>,

    /// Redact the payload of every event of this entity (repeatable).
    #[arg(long, value_name = "ENTITY")]
    pub redact_entity: Vec<String>,

    /// Redact the payload of one event, by id (repeatable).
    #[arg(long, value_name = "EVENT_ID")]
    pub redact_event: Vec<batpak::EventId>,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Parses `90d`, `12h`, `30m`, `45s`.
fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text.len().saturating_sub(1);
    let (number, unit) = text.split_at(split);
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "`{text}`: expected a number followed by s, m, h or d"
            ))
        }
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a number followed by s, m, h or d"))?;
    number
        .checked_mul(seconds_per)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("`{text}`: too large"))
}

/// `repair`.
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// Do not ask for confirmation.
    #[arg(long, short = 'y', conflicts_with = "dry_run")]
    pub yes: bool,

    /// Only report what repair would drop; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}
