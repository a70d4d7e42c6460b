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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub kind: Spanned<SourceKind>,
    /// The drop folder, relative to the main config file.
    pub path: PathBuf,
    /// Glob on file names (not paths), e.g. `status_*.csv`.
    #[serde(default = "default_pattern")]
    pub pattern: Spanned<String>,
    /// How long size and mtime must stay unchanged before a file counts as complete.
    #[serde(default = "default_settle")]
    pub settle: Dur,
    /// A marker that says a file is complete, e.g. `{name}.done`; when set, the
    /// settle window is not used.
    pub done_marker: Option<Spanned<String>>,
    /// How often the folder is rescanned even without filesystem events.
    #[serde(default = "default_rescan")]
    pub rescan: Dur,
    /// Where processed files go; defaults to `<data_dir>/archive/<connector>`.
    pub archive: Option<PathBuf>,
    /// Where failed files go; defaults to `<data_dir>/error/<connector>`.
    pub error: Option<PathBuf>,
}

fn default_pattern() -> Spanned<String> {
    Spanned::new(0..0, "*".to_string())
}
fn default_settle() -> Dur {
    Dur::secs(2)
}
fn default_rescan() -> Dur {
    Dur::secs(5)
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
    // -- x12
    /// ISA11 == ISA16: `reject` (default), `repetition` or `component`.
    pub separator_collision: Option<Spanned<crate::parse::x12::SeparatorCollision>>,
    /// Accept an ISA whose elements are not at their fixed widths.
    pub lenient_isa_width: Option<Spanned<bool>>,
    /// HL03 levels that start a record (default: 278 EV; others 22 and 23).
    pub record_levels: Option<Spanned<Vec<String>>>,
    // -- xml
    /// Path of the record element from the root, e.g. `Export/Cases/Case`.
    pub record: Option<Spanned<String>>,
    // -- csv
    #[serde(default = "comma")]
    pub delimiter: Spanned<String>,
    #[serde(default = "dquote")]
    pub quote: Spanned<String>,
    #[serde(default)]
    pub encoding: Encoding,
    /// Lines to skip before the header row (title rows some hubs add).
    #[serde(default)]
    pub skip_lines: u64,
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
}

fn comma() -> Spanned<String> {
    Spanned::new(0..0, ",".into())
}
fn dquote() -> Spanned<String> {
    Spanned::new(0..0, "\"".into())
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
