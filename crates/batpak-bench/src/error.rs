//! The harness's error type.

use std::path::PathBuf;

/// Everything that can stop one benchmark sample.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// batpak returned an error.
    #[error("batpak: {0}")]
    Store(#[from] batpak::StoreError),
    /// A coordinate was rejected while building the fixture.
    #[error("coordinate: {0}")]
    Coordinate(#[from] batpak::CoordinateError),
    /// SQLite returned an error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A SQLite column did not hold the type the peer wrote.
    #[error("sqlite column: {0}")]
    SqliteColumn(#[from] rusqlite::types::FromSqlError),
    /// A file operation of the harness itself failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What the harness was doing.
        operation: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Encoding or decoding JSON (payloads, results, child output) failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A child process of the harness failed or printed something unexpected.
    #[error("child process: {0}")]
    Child(String),
    /// The engine panicked (for example a `todo!` while the engine is not there yet).
    #[error("engine panicked: {0}")]
    Panicked(String),
    /// A result did not have the shape the workload guarantees (wrong count, ...).
    #[error("check failed: {0}")]
    Check(String),
}

/// Shorthand for results of the harness.
pub type BenchResult<T> = Result<T, BenchError>;

/// Builds a closure that wraps an `io::Error` with what and where.
pub fn io_err(
    operation: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> BenchError {
    let path = path.into();
    move |source| BenchError::Io {
        operation,
        path,
        source,
    }
}
