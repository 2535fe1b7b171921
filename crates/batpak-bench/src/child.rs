//! Work done in child processes of the harness, so that what is measured
//! belongs to one process alone: the open of a big store (its time and its
//! resident memory), and a writer that is killed in the middle of appending
//! (the crash image).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{BenchError, BenchResult};

/// What a child that opened a big store reports on its stdout, as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenOutcome {
    /// Time to open the store.
    pub open_s: f64,
    /// Time to then read one entity's full history.
    pub read_s: f64,
    /// Events that read returned.
    pub events_read: u64,
    /// Peak resident set of the child right after open (`VmHWM`).
    pub rss_after_open_bytes: Option<u64>,
    /// Resident set of the child right after open (`VmRSS`).
    pub rss_now_after_open_bytes: Option<u64>,
    /// Peak resident set after the read.
    pub rss_after_read_bytes: Option<u64>,
    /// Events in the store, as the engine counts them.
    pub events: u64,
    /// Index memory the engine reports (batpak `stats().index_memory_bytes`).
    pub index_memory_bytes: Option<u64>,
    /// How the engine says it opened (batpak's open report), for the log.
    pub detail: String,
}

/// Which engine a child drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChildEngine {
    /// batpak.
    Batpak,
    /// The SQLite peer.
    Sqlite,
}

impl ChildEngine {
    fn arg(self) -> &'static str {
        match self {
            ChildEngine::Batpak => "batpak",
            ChildEngine::Sqlite => "sqlite",
        }
    }
}

/// Prints the outcome where the parent reads it.
pub fn print_outcome(outcome: &OpenOutcome) -> BenchResult<()> {
    let line = serde_json::to_string(outcome)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|e| BenchError::Child(format!("cannot print the outcome: {e}")))
}

/// Tells the parent that the crash child is appending.
pub fn signal_ready() -> BenchResult<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready")
        .and_then(|()| stdout.flush())
        .map_err(|e| BenchError::Child(format!("cannot signal readiness: {e}")))
}

fn own_binary() -> BenchResult<std::path::PathBuf> {
    std::env::current_exe().map_err(|e| BenchError::Child(format!("cannot find own binary: {e}")))
}

/// Runs `--child-open` on `path` in a new process and returns its outcome.
pub fn run_open(engine: ChildEngine, path: &Path, entity: &str) -> BenchResult<OpenOutcome> {
    let output = Command::new(own_binary()?)
        .arg("--child-open")
        .arg(path)
        .args(["--child-engine", engine.arg(), "--child-entity", entity])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| BenchError::Child(format!("cannot start the open child: {e}")))?;
    if !output.status.success() {
        return Err(BenchError::Child(format!(
            "open child on {} exited with {}",
            path.display(),
            output.status
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .ok_or_else(|| BenchError::Child(format!("open child printed no outcome: {text:?}")))?;
    Ok(serde_json::from_str(line)?)
}

/// Makes a crash image: runs `--child-crash` on `path`, waits until it has
/// appended a few events, lets it append for `delay` more, then SIGKILLs it.
pub fn run_crash(engine: ChildEngine, path: &Path, delay: Duration) -> BenchResult<()> {
    let mut child = Command::new(own_binary()?)
        .arg("--child-crash")
        .arg(path)
        .args(["--child-engine", engine.arg()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| BenchError::Child(format!("cannot start the crash child: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| BenchError::Child("crash child has no stdout".into()))?;
    let mut line = String::new();
    let read = BufReader::new(stdout).read_line(&mut line);
    if read.is_err() || line.trim() != "ready" {
        let _ = child.kill();
        let status = child.wait();
        return Err(BenchError::Child(format!(
            "crash child did not get ready (said {line:?}, {status:?})"
        )));
    }
    std::thread::sleep(delay);
    // Child::kill sends SIGKILL: no destructor, no close, no flush.
    child
        .kill()
        .map_err(|e| BenchError::Child(format!("cannot kill the crash child: {e}")))?;
    let status = child
        .wait()
        .map_err(|e| BenchError::Child(format!("cannot reap the crash child: {e}")))?;
    if status.success() {
        return Err(BenchError::Child(
            "crash child exited normally before it was killed".into(),
        ));
    }
    Ok(())
}
