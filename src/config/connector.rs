//! Connector files (`connectors/*.toml`): where a hub's files come from, how
//! they are parsed, which mapping applies and in which time zone.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::duration::Dur;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSpec {
    /// Defaults to the file's stem.
    pub name: Option<String>,
    /// The manufacturer program every record of this feed belongs to.
    pub program: Spanned<String>,
    /// The mapping's name: the stem of a file in the mappings folder.
    pub mapping: Spanned<String>,
    /// IANA zone of the hub's local dates and times.
    pub time_zone: Spanned<String>,
    #[serde(default)]
    pub dst_ambiguous: DstAmbiguous,
    #[serde(default)]
    pub dst_gap: DstGap,
    pub source: SourceSpec,
    pub format: FormatSpec,
    #[serde(default)]
    pub on_row_error: OnRowError,
    /// Stop the file (error folder) once more than this many records were rejected.
    pub max_rejects: Option<u64>,
    /// When this feed's file is due; a missed deadline is logged, stored and
    /// can be sent as a `feed.missing` event.
    pub expect: Option<ExpectSpec>,
    #[serde(default)]
    pub header: HeaderSpec,
}

/// `[expect]`: a daily deadline for the feed's file, in the connector's time zone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectSpec {
    /// Local time of day, `HH:MM` or `HH:MM:SS`: a file must have arrived in
    /// the 24 hours before it.
    pub daily_by: Spanned<String>,
    /// Weekdays the file is expected (`mon` … `sun`); empty means every day.
    #[serde(default)]
    pub days: Vec<Spanned<String>>,
}

/// `[expect]` checked: a daily deadline for a feed's file, in the
/// connector's time zone (setup parses it from [`ExpectSpec`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub daily_by: chrono::NaiveTime,
    /// Weekdays (of the deadline) the file is expected; empty means every day.
    pub days: Vec<chrono::Weekday>,
}

/// The header policy: what drift in a hub's columns means.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HeaderSpec {
    #[serde(default)]
    pub extra_columns: ExtraColumns,
}

/// A column in the file that the mapping does not declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExtraColumns {
    /// Hubs add columns all the time; the mapping reads only what it declares.
    Ignore,
    /// Log the new column names once per file.
    #[default]
    Warn,
    /// The contract is exact: refuse the file.
    Reject,
}

/// A local time that happens twice (the autumn change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DstAmbiguous {
    /// The first occurrence (daylight time): what a clerk typing the value most often meant.
    #[default]
    Earlier,
    Later,
    Reject,
}

/// A local time that never happens (the spring gap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DstGap {
    /// Move forward by the gap's length (02:30 becomes 03:30).
    #[default]
    ShiftForward,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnRowError {
    /// Quarantine the bad record and go on with the file.
    #[default]
    Quarantine,
    /// Stop at the first bad record; the file goes to the error folder.
    FailFile,
}

/// Kinds of source. `[source]` is one flat table whose `kind` says which
/// keys apply (a tagged enum would lose the spans diagnostics need).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Local,
    Sftp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub kind: Spanned<SourceKind>,
    /// local: the drop folder, relative to the main config file.
    /// sftp: the remote directory (absolute, or relative to the login directory).
    pub path: Spanned<PathBuf>,
    /// Glob on file names (not paths), e.g. `status_*.csv`.
    #[serde(default = "default_pattern")]
    pub pattern: Spanned<String>,
    /// How long size and mtime must stay unchanged before a file counts as complete.
    #[serde(default = "default_settle")]
    pub settle: Spanned<Dur>,
    /// A marker that says a file is complete, e.g. `{name}.done`; when set, the
    /// settle window is not used.
    pub done_marker: Option<Spanned<String>>,
    /// local: how often the folder is rescanned even without filesystem events.
    pub rescan: Option<Spanned<Dur>>,
    /// local: where processed files go; defaults to `<data_dir>/archive/<connector>`.
    pub archive: Option<Spanned<PathBuf>>,
    /// Where failed files go (a local folder, for both kinds); defaults to
    /// `<data_dir>/error/<connector>`.
    pub error: Option<PathBuf>,

    // ---- sftp only (see docs/sftp.md) ----
    /// sftp: server host name or address.
    pub host: Option<Spanned<String>>,
    /// sftp: server port; 22 by default.
    pub port: Option<Spanned<u16>>,
    /// sftp: login name.
    pub user: Option<Spanned<String>>,
    /// sftp: an OpenSSH ed25519 private key file, relative to the main config file.
    pub key_file: Option<Spanned<PathBuf>>,
    /// sftp: environment variable holding the key file's passphrase.
    pub key_passphrase_env: Option<Spanned<String>>,
    /// sftp: environment variable holding the password (instead of a key).
    pub password_env: Option<Spanned<String>>,
    /// sftp: the server's pinned host key, `SHA256:…` as `ssh-keygen -lf` prints it.
    pub host_key_fingerprint: Option<Spanned<String>>,
    /// sftp: an OpenSSH known_hosts file to check the host key against.
    pub known_hosts: Option<Spanned<PathBuf>>,
    /// sftp: also list subdirectories.
    pub recursive: Option<Spanned<bool>>,
    /// sftp: how often the remote directory is listed.
    pub poll_interval: Option<Spanned<Dur>>,
    /// sftp: what happens to the remote file once committed.
    pub after_commit: Option<Spanned<AfterCommit>>,
    /// sftp: the remote folder `after_commit = "archive"` moves files into;
    /// defaults to `<path>/archive`.
    pub remote_archive: Option<Spanned<String>>,
    /// sftp: how long one connection attempt or request may take.
    pub timeout: Option<Spanned<Dur>>,
    /// sftp, x12 with `acknowledgments = true`: the remote folder the TA1
    /// and 999 of every file are uploaded to (the hub's outbox).
    pub ack_outbox: Option<Spanned<String>>,
}

/// What happens to a remote file after its last chunk is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AfterCommit {
    /// Rename into the remote archive folder (needs write access).
    #[default]
    Archive,
    /// Remove it (needs write access).
    Delete,
    /// Leave it; the remote-file ledger keeps it from being processed again.
    /// The choice for read-only accounts.
    Leave,
}

fn default_pattern() -> Spanned<String> {
    Spanned::new(0..0, "*".to_string())
}
fn default_settle() -> Spanned<Dur> {
    Spanned::new(0..0, Dur::secs(2))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormatKind {
    Csv,
    /// xlsx, xlsm, xlsb, xls and ods workbooks.
    Excel,
    X12,
    Xml,
}

impl FormatKind {
    pub fn name(self) -> &'static str {
        match self {
            FormatKind::Csv => "csv",
            FormatKind::Excel => "excel",
            FormatKind::X12 => "x12",
            FormatKind::Xml => "xml",
        }
    }
}

/// `[format]`: one flat table; `kind` says which keys apply, and
/// `load_connector` reports a key given to the wrong kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatSpec {
    pub kind: Spanned<FormatKind>,
    // -- excel
    /// Worksheets to read, each with its own mapping; default: the first sheet.
    pub sheets: Option<Spanned<Vec<SheetSpec>>>,
    /// Rows above the header row (title rows), for sheets that do not set their own.
    pub skip_rows: Option<Spanned<u32>>,
    /// Find the header row by the mapping's column names (within the first 50 rows).
    pub find_header: Option<Spanned<bool>>,
    /// Read hidden and very hidden sheets the rules select (default: skip
    /// them, with a warning naming them).
    pub include_hidden_sheets: Option<Spanned<bool>>,
    /// Headers whose vertically merged ranges are carried down to every row
    /// of the range, for sheets that do not set their own.
    pub fill_merged: Option<Spanned<Vec<String>>>,
    // -- x12
    /// ISA11 == ISA16: `reject` (default), `repetition` or `component`.
    pub separator_collision: Option<Spanned<SeparatorCollision>>,
    /// Accept an ISA whose elements are not at their fixed widths.
    pub lenient_isa_width: Option<Spanned<bool>>,
    /// HL03 levels that start a record (default: 278 EV; others 22 and 23).
    pub record_levels: Option<Spanned<Vec<String>>>,
    /// ST01 transaction sets accepted (default: the mapping's `transaction`).
    pub transaction_sets: Option<Spanned<Vec<String>>>,
    /// Purpose codes accepted (BHT02; BPT01 for an 867), e.g. `["11"]`.
    pub purposes: Option<Spanned<Vec<String>>>,
    /// Write a TA1 and a 999 beside every archived X12 file.
    pub acknowledgments: Option<Spanned<bool>>,
    // -- xml
    /// Path of the record element from the root, e.g. `Export/Cases/Case`.
    pub record: Option<Spanned<String>>,
    /// A document in which no element matches the record path's parent
    /// (structure drift): `refuse` (default) or `warn`.
    pub no_records: Option<Spanned<NoRecords>>,
    // -- csv (absent: `,`, `"`, utf-8, 0; given to another kind: an error)
    pub delimiter: Option<Spanned<String>>,
    pub quote: Option<Spanned<String>>,
    pub encoding: Option<Spanned<Encoding>>,
    /// Lines to skip before the header row (title rows some hubs add).
    pub skip_lines: Option<Spanned<u64>>,
}

/// What to do when ISA11 (repetition separator) equals ISA16 (component
/// separator): X12 has no escape, so a partner that does this must be
/// accepted knowingly, per connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeparatorCollision {
    /// The interchange is refused (the default).
    Reject,
    /// The shared byte separates repetitions; elements have no components.
    Repetition,
    /// The shared byte separates components; elements have no repetitions.
    Component,
}

/// An XML document whose structure does not lead to the record element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NoRecords {
    /// Refuse the file: an extra wrapper or a dropped namespace is not an
    /// empty export.
    #[default]
    Refuse,
    /// Take it as done with zero records, and say so: `status` shows the
    /// warning.
    Warn,
}

/// One worksheet rule of an Excel connector: which sheets (exactly one of
/// `name`, `glob`, `index`), which mapping, where the header is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SheetSpec {
    pub name: Option<Spanned<String>>,
    pub glob: Option<Spanned<String>>,
    /// 0-based position in the workbook.
    pub index: Option<Spanned<usize>>,
    /// Defaults to the connector's mapping.
    pub mapping: Option<Spanned<String>>,
    pub skip_rows: Option<Spanned<u32>>,
    pub find_header: Option<Spanned<bool>>,
    /// Replaces the connector's `fill_merged` for this rule.
    pub fill_merged: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum Encoding {
    /// UTF-8, with or without a byte-order mark.
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "windows-1252")]
    Windows1252,
}
