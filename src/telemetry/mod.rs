//! Logging, and the typed events the daemon reports.
//!
//! Events are structs named `<Noun><Verb>` with an `emit` method, so every
//! log line of a kind has the same fields, and it is visible in one place
//! what each carries. None carries a patient identifier, a name, or a raw
//! field value: only counts, locators, column names and redacted shapes.

use crate::store::Counts;

/// Installs the global subscriber. `RUST_LOG` overrides `level`.
pub fn init(json: bool, level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.unwrap_or("info")));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr closed: `2>&1 | head`)
        // is lost, nothing more: reporting it would `eprintln!`, which
        // panics on that same closed pipe, inside whatever task logged.
        .log_internal_errors(false);
    // A second init (tests) is harmless.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// A file was fully processed.
pub struct FileProcessed<'a> {
    pub connector: &'a str,
    pub file: &'a str,
    pub counts: &'a Counts,
    pub millis: u128,
}

impl FileProcessed<'_> {
    pub fn emit(&self) {
        let c = self.counts;
        tracing::info!(
            connector = self.connector,
            file = self.file,
            read = c.read,
            emitted = c.emitted,
            unchanged = c.unchanged,
            rejected = c.rejected,
            filtered = c.filtered,
            deltas = c.deltas,
            reconciles = c.reconciles(),
            ms = self.millis as u64,
            "file processed"
        );
    }
}

/// A file was quarantined as a whole.
pub struct FileFailed<'a> {
    pub connector: &'a str,
    pub file: &'a str,
    pub reason: &'a str,
}

impl FileFailed<'_> {
    pub fn emit(&self) {
        tracing::warn!(
            connector = self.connector,
            file = self.file,
            reason = self.reason,
            "file moved to the error folder"
        );
    }
}

/// A file seen before (same sha256) was dropped again.
pub struct FileDuplicateSkipped<'a> {
    pub connector: &'a str,
    pub file: &'a str,
}

impl FileDuplicateSkipped<'_> {
    pub fn emit(&self) {
        tracing::info!(
            connector = self.connector,
            file = self.file,
            "file already processed (same sha256); archived without sending"
        );
    }
}

/// A file in a watched folder matches no connector's pattern: it will never
/// be processed. Reported once per file while it stays. The file name is
/// the partner's, not a record's content.
pub struct FileUnmatched<'a> {
    pub folder: &'a std::path::Path,
    pub file: &'a str,
    /// The file patterns of the connectors watching the folder.
    pub patterns: &'a [&'a str],
}

impl FileUnmatched<'_> {
    pub fn emit(&self) {
        tracing::warn!(
            folder = %self.folder.display(),
            file = self.file,
            patterns = ?self.patterns,
            "file matches no connector's pattern in this folder; it will not be processed"
        );
    }
}
